"""Prompt assembly exactly as the official proactivebench package does it, for MCQA and open-ended turns.

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


# --- The paper's prompt variants (§4.3): CoT, in-context examples, conversation history ------------------------
# Hints are ``mcqa_prompt(rep, hint=True)`` above. The variants below build on the same single-turn prompt.

def cot_prompt(ep: Episode) -> str | None:
    """The source's chain-of-thought lead-in (carried by the episode's spec), or None for a source without one."""
    return (ep.spec.cot_prompt if ep.spec is not None else "") or None


def cot_answer(ep: Episode, letter_index: int, option: str) -> str:
    """A proactive answer with the CoT lead-in, as the official ICL examples write it: ``<cot> B. <option>``."""
    lead = cot_prompt(ep)
    if lead is None:
        raise ValueError(f"{official_name(ep) or ep.source}: no chain-of-thought prompt (its source defines none)")
    return f"{lead} {chr(65 + letter_index)}. {option}"


def icl_example(ep: Episode, hint: bool = False, cot: bool = False) -> list[dict[str, object]]:
    """An in-context example: the episode played as the official ``get_icl_example`` does.

    Each step is ``{"frame", "prompt", "answer"}``. At a state where the category is not yet acceptable, or where
    a valid proactive move is left, the first valid option is chosen (with the CoT lead-in when ``cot``); the
    category is answered as soon as it becomes acceptable after a move (ROD: after one move) or when no valid
    move is left (MVP-N, QuickDraw: at the last view).
    """
    rep = Replay(ep)
    steps: list[dict[str, object]] = []
    accepted_before = rep.current.answer_valid
    while not rep.done:
        st = rep.current
        became_acceptable = st.answer_valid and not accepted_before and rep.num_turns > 0
        if not st.valid or became_acceptable:
            answer = ep.answer
        else:
            option = st.valid[0]
            answer = ep.options[option]
            if cot:
                answer = cot_answer(ep, list(st.shown).index(option), answer)
        steps.append({"frame": rep.frame, "prompt": mcqa_prompt(rep, hint), "answer": answer})
        accepted_before = st.answer_valid
        rep.answer(answer)
    return steps


def turn_messages(image: object, prompt: str, answer: str | None = None) -> list[dict[str, object]]:
    """One user turn (the image, then the text) and, when given, the assistant's answer."""
    out: list[dict[str, object]] = [{"role": "user", "content": [{"type": "image", "image": image},
                                                                 {"type": "text", "text": prompt}]}]
    if answer is not None:
        out.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
    return out


def history_conversation(past: list[tuple[object, str, str]], image: object, prompt: str) -> list[dict[str, object]]:
    """The conversation-history variant: every earlier (image, prompt, answer) turn, then the current state.

    ``past`` is the episode's own earlier turns (conversation history) or in-context example steps, oldest first.
    """
    messages: list[dict[str, object]] = []
    for past_image, past_prompt, past_answer in past:
        messages += turn_messages(past_image, past_prompt, past_answer)
    return messages + turn_messages(image, prompt)
