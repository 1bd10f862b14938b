"""The official string rules for options and categories: strings that the official answer matching, action
map and open-ended judge would mis-score are rejected (each problem message says which rule it breaks)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from pb_build.matching import normalise_text

if TYPE_CHECKING:
    from pb_build.episode import Episode

_UPPER_DOT = re.compile(r"[A-Z]\.")


def category_string(name: str) -> str:
    """An official category string: ``name.capitalize() + '.'`` (e.g. ``'The eiffel tower.'``)."""
    return name.strip().capitalize() + "."


def is_abstain(option: str) -> bool:
    """Whether the official environments treat ``option`` as the abstain option."""
    low = option.lower()
    return "cannot" in low or "do not" in low


def check_strings(ep: Episode) -> list[str]:
    """Problems with the option and category strings of ``ep``; empty when all rules hold."""
    out: list[str] = []
    for cat in ep.categories:
        if cat != category_string(cat[:-1]) or len(cat) < 3:
            out.append(f"category {cat!r} is not 'Name.' capitalised with at least 2 characters")
        if "," in cat:
            out.append(f"category {cat!r} contains a comma")
    for text in (*ep.options, *ep.categories):
        if not text.endswith("."):
            out.append(f"{text!r} does not end with '.'")
        if _UPPER_DOT.search(text):
            out.append(f"{text!r} has an upper-case letter before '.', which the matcher would cut")
        if "{" in text or "}" in text:
            out.append(f"{text!r} contains a brace")
    for i, opt in enumerate(ep.options):
        if (i in ep.abstain) != is_abstain(opt):
            kind = "abstain" if i in ep.abstain else "proactive"
            out.append(f"{kind} option {opt!r} must {'' if kind == 'abstain' else 'not '}contain 'cannot'/'do not'")
    normalised = [normalise_text(t) for t in (*ep.options, *ep.categories)]
    if len(set(normalised)) != len(normalised):
        out.append("options and categories are not distinct after normalisation")
    return out
