"""Prompt assembly exactly as the official package does it (benchmark.md §8.1, §10.1).

The MCQA prompt is ``apply_multi_choice_template(question, options, short_answer=True)`` of
``proactivebench.data_utils``; the question is the record's prompt with the episode's pre-prompt in front and,
in hinted runs, its hint behind, each joined by one space (``BaseEnvironment.get_state``).
"""

from __future__ import annotations

from pb_build.episode import Episode
from pb_build.replay import Replay

#: Appended with one space in the OEG-with-hint experiments (``tests/oeg.py``); no ``Hint:`` prefix.
OEG_HINT = "If you cannot answer this question, please tell me what I should do to help you."


def multi_choice(question: str, options: list[str], short_answer: bool = True) -> str:
    """``apply_multi_choice_template``: the question, lettered options, and the short-answer instruction."""
    prompt = question + " Choose from the following options. Options:\n"
    prompt += "".join(f"{chr(65 + i)}. {option}\n" for i, option in enumerate(options))
    if short_answer:
        prompt += "Please only return one of the options without any other words."
    return prompt


def official_name(ep: Episode) -> str:
    """The official source name of an episode ('' when it has no official export)."""
    return ep.official.name if ep.official is not None else ""


def reference_prompt(ep: Episode) -> str:
    """The question reference mode asks: the source's (``Episode.spec``), else the record's prompt."""
    spec = ep.spec
    return spec.reference_prompt if spec is not None and spec.reference_prompt else ep.prompt


def question(ep: Episode, hint: bool = False, reference: bool = False) -> str:
    """The question of a state: [pre-prompt + ' '] + prompt (or the reference prompt) [+ ' ' + hint]."""
    text = reference_prompt(ep) if reference else ep.prompt
    if ep.pre_prompt:
        text = f"{ep.pre_prompt} {text}"
    if hint:
        text = f"{text} {ep.hint}"
    return text


def mcqa_prompt(rep: Replay, hint: bool = False) -> str:
    """The full MCQA prompt for the replay's current state."""
    return multi_choice(question(rep.episode, hint, rep.reference), rep.shown_texts(), short_answer=True)


def oeg_prompt(ep: Episode, hint: bool = False) -> str:
    """The open-ended prompt: the question without options or source hint, the generic hint when asked."""
    text = question(ep)
    return f"{text} {OEG_HINT}" if hint else text
