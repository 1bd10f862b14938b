"""Answer matching exactly as the official environments do it (``_evaluate`` of the official proactivebench package)."""

from __future__ import annotations

import functools
import re
from typing import Literal

Verdict = Literal["correct", "wrong", "mismatch"]

_PREFIX = re.compile(r"^.*[A-Z]\.\s*")


@functools.lru_cache(maxsize=4096)  # builds and replays judge the same few option strings over and over
def normalise_text(answer: str) -> str:
    """Drop a letter prefix (up to the last 'X.'), lowercase, strip, delete spaces."""
    return _PREFIX.sub("", answer).lower().strip().replace(" ", "")


@functools.lru_cache(maxsize=4096)
def normalise_letter(answer: str) -> str:
    """The single letter before the first '.', lowercased; '#' when it is not one character."""
    head = answer.split(".")[0].lower().strip()
    return "#" if len(head) > 1 else head


def judge(answer: str, correct: list[str], candidates: list[str], shift: int) -> tuple[Verdict, int]:
    """Classify ``answer`` against ``candidates`` lettered from ``chr(65 + shift)``.

    Returns the verdict and the index of the chosen candidate (-1 for a mismatch).
    """
    full = normalise_text(answer)
    std_candidates = [normalise_text(c) for c in candidates]
    if full in {normalise_text(c) for c in correct}:
        return "correct", std_candidates.index(full)
    if full in std_candidates:
        return "wrong", std_candidates.index(full)
    letter = normalise_letter(answer)
    letters = [normalise_letter(chr(65 + i + shift)) for i in range(len(candidates))]
    correct_letters = {normalise_letter(chr(65 + candidates.index(c) + shift)) for c in correct}
    if letter in correct_letters:
        return "correct", letters.index(letter)
    if letter in letters:
        return "wrong", letters.index(letter)
    return "mismatch", -1
