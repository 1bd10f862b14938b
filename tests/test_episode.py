"""The episode state machine, the official matching rules and the QuickDraw string pools."""

from __future__ import annotations

import dataclasses

import pytest

from pb_build.builders import quickdraw
from pb_build.episode import Episode, OfficialExport, OfficialFile, State
from pb_build.errors import InvalidEpisode
from pb_build.matching import judge, normalise_text
from pb_build.official import ACTION_KEYS
from pb_build.replay import POLICIES, Replay, play
from pb_build.writers.official import OfficialWriter


def three_frame_episode(**changes) -> Episode:
    ep = Episode(
        source="toy", key="toy/1", prompt="What is it?",
        options=("I cannot tell.", "Add more details."),
        categories=("Cat.", "Dog.", "Banana.", "The eiffel tower."), answer="Banana.",
        frames=(b"a", b"b", b"c"),
        states=(State(0, (0, 1), (1,), (1,)), State(1, (0, 1), (1,), (2,)), State(2, (0, 1))),
        reference_frame=2, max_steps=3, abstain=(0,),
    )
    return dataclasses.replace(ep, **changes)


def test_valid_episode_passes() -> None:
    assert three_frame_episode().validate()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"answer": "Horse."}, "not one of the categories"),
        ({"categories": ("Cat.", "Dog.", "Banana.")}, "needs 4 categories"),
        ({"reference_frame": 3}, "reference frame 3 out of range"),
        ({"states": (State(5, (0, 1)),)}, "frame 5 out of range"),
        ({"states": (State(0, (1, 0)),)}, "stored order"),
        ({"states": (State(0, (0,), (1,), (0,)),)}, "valid option is not shown"),
        ({"states": (State(0, (0, 1), (1,), ()),)}, "needs a target state"),
        ({"states": (State(0, (0, 1), (0,), (0,)),)}, "abstain option cannot be valid"),
        ({"categories": ("Cat.", "Dog.", "Banana.", "cat.")}, "capitalised"),
        ({"categories": ("Cat, dog.", "Dog.", "Banana.", "Cow.")}, "comma"),
        ({"options": ("I cannot tell.", "Add more details")}, "does not end with"),
        ({"options": ("I cannot tell.", "Draw it with a B. please.")}, "upper-case letter before"),
        ({"options": ("I cannot tell.", "I do not see details.")}, "must not contain"),
        ({"options": ("Maybe.", "Add more details.")}, "must contain"),
        ({"categories": ("Cat.", "Dog.", "Banana.", "Add more details.")}, "distinct"),
        ({"max_steps": 2}, "not reachable within 2 turns"),
    ],
)
def test_invalid_episodes_are_rejected(changes: dict, message: str) -> None:
    with pytest.raises(InvalidEpisode, match=message):
        three_frame_episode(**changes).validate()


@pytest.mark.parametrize(
    ("answer", "verdict", "index"),
    [
        ("B", "correct", 1), ("b.", "correct", 1), ("B. Banana.", "correct", 1), ("Banana.", "correct", 1),
        ("banana .", "correct", 1), ("Banana", "mismatch", -1), ("Answer: B", "mismatch", -1), ("A", "wrong", 0),
        ("Cat.", "wrong", 0), ("E", "mismatch", -1), ("", "mismatch", -1),
    ],
)
def test_official_matching(answer: str, verdict: str, index: int) -> None:
    assert judge(answer, ["Banana."], ["Cat.", "Banana.", "Dog.", "Cow."], 0) == (verdict, index)


def test_letters_are_shifted_past_the_shown_options() -> None:
    assert judge("C", ["Banana."], ["Cat.", "Banana."], 1) == ("correct", 1)
    assert judge("A", ["Banana."], ["Cat.", "Banana."], 1) == ("mismatch", -1)


def test_normalisation_cuts_up_to_the_last_capital_before_a_period() -> None:
    assert normalise_text("A. The eiffel tower.") == "theeiffeltower."


def test_replay_semantics() -> None:
    ep = three_frame_episode().validate()
    assert [t.frame for t in play(ep, POLICIES["oracle"]).turns] == [0, 1, 2]
    proactive = play(ep, POLICIES["proactive"])
    # The proactive option stays shown but is no longer valid on the last frame: choosing it there fails.
    assert (proactive.num_turns, proactive.correct, proactive.turns[-1].action_verdict) == (3, False, "wrong")
    abstain = play(ep, POLICIES["abstain"])
    assert (abstain.num_turns, abstain.correct) == (1, False)
    assert play(ep, POLICIES["first"]).correct
    rep = Replay(ep, reference=True)
    assert rep.frame == 2 and rep.shown_texts() == list(ep.categories)
    rep.answer("C")
    assert rep.done and rep.correct
    with pytest.raises(RuntimeError):
        rep.answer("C")


def test_category_not_accepted_in_a_state_that_forbids_it() -> None:
    states = (State(0, (0, 1), (1,), (1,), answer_valid=False), State(1, (0, 1)))
    rep = Replay(three_frame_episode(states=states, max_steps=2, reference_frame=1))
    rep.answer("Banana.")
    assert rep.done and not rep.correct and rep.turns[0].category_verdict == "wrong"


def _details_keys(text: str) -> list[str]:
    return [k for k, action in ACTION_KEYS.items() if action == "DETAILS" and k in text.lower()]


def test_quickdraw_pools_obey_the_official_string_rules() -> None:
    assert len(quickdraw.QUESTIONS) == len(set(quickdraw.QUESTIONS)) == 15
    assert len(quickdraw.PROACTIVE) == len(set(quickdraw.PROACTIVE)) == 13
    assert len(quickdraw.ABSTAIN) == 3
    for option in quickdraw.PROACTIVE:
        assert len(_details_keys(option)) == 1, option
        assert "cannot" not in option.lower() and "do not" not in option.lower()
        assert option.endswith(".")
    for option in quickdraw.ABSTAIN:
        assert "cannot" in option.lower() or "do not" in option.lower()


@pytest.mark.parametrize(("strokes", "frames", "groups"),
                         [(2, 5, [1, 2]), (5, 5, [1, 2, 3, 4, 5]), (9, 5, [1, 3, 5, 7, 9]), (12, 5, [1, 4, 7, 9, 12])])
def test_stroke_groups(strokes: int, frames: int, groups: list[int]) -> None:
    assert quickdraw.stroke_groups(strokes, frames) == groups


@pytest.mark.parametrize("paths, message", [
    (["../up.png"], "must stay inside test/"),
    (["Toy/../../up.png"], "must stay inside test/"),
    (["/abs/x.png"], "must stay inside test/"),
    (["Toy/a/x.png", "Toy/a/x.png"], "already written with different content"),
])
def test_official_writer_keeps_frames_inside_test_and_consistent(tmp_path, paths: list[str], message: str) -> None:
    files = tuple(OfficialFile(p, bytes([k])) for k, p in enumerate(paths))
    ep = three_frame_episode(official=OfficialExport("Toy", {}, files))
    writer = OfficialWriter(tmp_path / "test", "Toy")
    with pytest.raises(InvalidEpisode, match=message):
        writer.write(ep, 0)
    writer.close()
    assert not (tmp_path / "up.png").exists() and not (tmp_path.parent / "up.png").exists()


def test_official_writer_writes_each_shared_frame_once(tmp_path) -> None:
    files = (OfficialFile("Toy/a/0.png", b"x"), OfficialFile("Toy/a/0.png", b"x"), OfficialFile("Toy/1.png", b"y"))
    writer = OfficialWriter(tmp_path / "test", "Toy")
    writer._write_file(files[0].path, files[0].data, "k")
    for f in files:
        writer._write_file(f.path, f.data, "k")
    writer.close()
    assert writer.files == 2
    assert (tmp_path / "test/Toy/a/0.png").read_bytes() == b"x" and (tmp_path / "test/Toy/1.png").read_bytes() == b"y"
