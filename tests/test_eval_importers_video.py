"""Official-layout importers of ROD, VSOD and ChangeIt: round trip, oracle, loader, failures, official agreement.

For each source a small release is built from the fake raw trees of the source's own tests
(``test_eval_support.build_source_release``; ChangeIt with the real annotation samples of ``tests/data``). Every
official record is imported and must equal the release's native episode (``meta`` aside; the official files by
path and by the bytes on disk); the oracle replays the imported episodes to 100%; a bare copy of ``test/`` loads
through ``pb_build.eval.data.load`` and scores like the release; a missing frame fails its record only. The
official environments (``tests/official.py``) and the imported episodes play the same scripted jobs.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pb_build.builders import REGISTRY
from pb_build.builders import rod as rod_builder
from pb_build.episode import Episode, OfficialFile
from pb_build.eval import data
from pb_build.eval.importers import IMPORTERS, ImportFailure, import_record
from pb_build.eval.policies import get_policy
from pb_build.eval.runner import policy_decider, run_mcqa
from pb_build.eval.sources import alias
from pb_build.replay import Replay, oracle, play

try:
    from official import replay_job, requires_official, run_official_report
    from test_eval_support import build_source_release, release_episodes, release_records
except ImportError:  # tests/ imported as a package
    from tests.official import replay_job, requires_official, run_official_report
    from tests.test_eval_support import build_source_release, release_episodes, release_records

SOURCES = ["rod", "vsod", "changeit"]


@dataclass
class Imported:
    source: str
    name: str
    release: Path
    records: dict[int, dict[str, Any]]
    native: dict[int, Episode]
    episodes: dict[int, Episode]

    @property
    def test_dir(self) -> Path:
        return self.release / "test"


@pytest.fixture(scope="module", params=SOURCES)
def imported(request, tmp_path_factory) -> Imported:
    source = request.param
    release = build_source_release(tmp_path_factory.mktemp(f"imp-{source}"), source)
    name = REGISTRY[source].info.official_name
    records = release_records(release, source)
    episodes = {sid: import_record(name, rec, release / "test") for sid, rec in records.items()}
    return Imported(source, name, release, records, release_episodes(release, source), episodes)


def _without_bytes(ep: Episode) -> Episode:
    assert ep.official is not None
    files = tuple(OfficialFile(f.path, b"") for f in ep.official.files)
    return dataclasses.replace(ep, official=dataclasses.replace(ep.official, files=files))


def test_importers_are_registered():
    for source in SOURCES:
        assert REGISTRY[source].info.official_name in IMPORTERS


def test_round_trip_equals_native_episodes(imported: Imported):
    """import(export(episode)) == the native episode, meta aside; official files match the files on disk."""
    assert imported.records and set(imported.records) == set(imported.native)
    for sid, ep in imported.episodes.items():
        assert ep.official is not None and ep.official.name == imported.name
        for f in ep.official.files:
            assert f.data == (imported.test_dir / f.path).read_bytes(), (sid, f.path)
        native = imported.native[sid]
        assert _without_bytes(ep) == dataclasses.replace(native, meta={"spec": native.meta["spec"]}), sid


def test_oracle_replays_imported_episodes_to_100_percent(imported: Imported):
    assert all(play(ep, oracle).correct for ep in imported.episodes.values())
    items = [data.Item(sid, ep) for sid, ep in imported.episodes.items()]
    results = run_mcqa(items, policy_decider(get_policy("oracle")), batch_size=4)
    assert len(results) == len(items) and all(r["correct"] for r in results)


def _sorted(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(results, key=lambda r: r["id"])


def test_official_layout_folder_runs_like_the_release(imported: Imported, tmp_path: Path):
    """A copy of ``test/`` alone (no manifest, no parquet) loads and scores exactly like the release."""
    official = tmp_path / "official"
    shutil.copytree(imported.test_dir, official / "test")
    from_release = data.load(imported.release, imported.source)
    from_official = data.load(official, alias(imported.name))
    assert from_official.kind == "official" and from_release.kind == "release"
    assert not from_official.failures and not from_release.failures
    assert from_official.fingerprint == from_release.fingerprint
    assert from_official.dropped == from_release.dropped
    assert [i.sample_id for i in from_official.items] == [i.sample_id for i in from_release.items]
    for a, b in zip(from_release.items, from_official.items, strict=True):
        a_spec_only = dataclasses.replace(a.episode, meta={"spec": a.episode.meta["spec"]}, official=None)
        assert a_spec_only == dataclasses.replace(b.episode, official=None)
    for policy in ("oracle", "proactive"):
        ours = [run_mcqa(d.items, policy_decider(get_policy(policy)), batch_size=5) for d in (from_release,
                                                                                            from_official)]
        assert _sorted(ours[0]) == _sorted(ours[1]), policy
    assert len(data.load(official / "test", imported.name).items) == len(from_official.items)


def _frame_files(ep: Episode) -> list[str]:
    assert ep.official is not None
    return [f.path for f in ep.official.files]


def test_missing_frame_fails_its_record_only(imported: Imported, tmp_path: Path):
    test_dir = tmp_path / "test"
    shutil.copytree(imported.test_dir, test_dir)
    sid = sorted(imported.records)[-1]
    ep = imported.episodes[sid]
    shared = {p for other, e in imported.episodes.items() if other != sid for p in _frame_files(e)}
    own = [p for p in _frame_files(ep) if p not in shared]
    victim = own[0] if own else _frame_files(ep)[ep.reference_frame]
    (test_dir / victim).unlink()
    with pytest.raises(ImportFailure, match=f"{imported.name} record {sid}:.*{re.escape(Path(victim).name)}"):
        import_record(imported.name, imported.records[sid], test_dir)
    loaded = data.load(test_dir, imported.name)
    assert sid in [f.sample_id for f in loaded.failures]
    if own:  # no other record uses the file: only this record fails
        assert [f.sample_id for f in loaded.failures] == [sid]
        assert len(loaded.items) + 1 + sum(loaded.dropped.values()) == len(imported.records)


def test_bad_records_name_the_record(imported: Imported):
    sid = min(imported.records)
    rec = dict(imported.records[sid])
    rec["options"] = [o for o in rec["options"] if "cannot" in o.lower() or "do not" in o.lower()] * 3
    with pytest.raises(ImportFailure, match=f"{imported.name} record {sid}: needs exactly one abstain option"):
        import_record(imported.name, rec, imported.test_dir)
    rec = {k: v for k, v in imported.records[sid].items() if k != "num_images"}
    with pytest.raises(ImportFailure, match=f"{imported.name} record {sid}: field 'num_images' missing"):
        import_record(imported.name, rec, imported.test_dir)


# ---------------------------------------------------------------- source-specific details


@pytest.mark.parametrize("imported", ["rod"], indirect=True)
def test_rod_rewrite_and_first_turn(imported: Imported, tmp_path: Path):
    """The banana sweep imports with the official s6 rewrite, also without its s6 file (as the authors publish it)."""
    imp = imported
    banana = [sid for sid, rec in imp.records.items()
              if rod_builder.REWRITE_MARK in rec["image_template"].format(image=6)]
    assert banana, "the fake ROD tree has the banana sweep"
    sid = banana[0]
    ep = imp.episodes[sid]
    assert ep.key == "rod/natural_bluebl_greenr-banana"
    assert ep.initial_state == 0 and not ep.states[0].answer_valid and ep.states[0].frame == 7
    assert all(st.answer_valid for st in ep.states[1:])
    assert {st.frame for st in ep.states} == set(range(14)) - {6}
    assert len(ep.states) == 1 + 14 + 1  # the first turn, then two states at position 6 (arrived by LEFT, RIGHT)
    test_dir = tmp_path / "test"
    shutil.copytree(imp.test_dir, test_dir)
    s6 = imp.records[sid]["image_template"].format(image=6)
    (test_dir / s6).unlink()
    without = import_record(imp.name, imp.records[sid], test_dir)
    assert s6 not in _frame_files(without) and len(without.official.files) == 13
    assert dataclasses.replace(without, official=None) == dataclasses.replace(ep, official=None)


@pytest.mark.parametrize("imported", ["rod"], indirect=True)
def test_rod_generic_records(imported: Imported, tmp_path: Path):
    """Other sweep lengths and first frames follow the official environment's arithmetic."""
    imp = imported
    sid = next(s for s, rec in imp.records.items() if rod_builder.REWRITE_MARK not in
               rec["image_template"].format(image=6))
    rec = {**imp.records[sid], "num_images": 10, "first_image": 3, "reference_image": 9}
    ep = import_record(imp.name, rec, imp.test_dir)
    assert len(ep.frames) == 10 and ep.max_steps == 10 and ep.states[0].frame == 3 and ep.reference_frame == 9
    rep = play(ep, oracle)
    assert rep.correct and [t.frame for t in rep.turns] == [3, 2, 1, 0, 9]


@pytest.mark.parametrize("imported", ["vsod"], indirect=True)
def test_vsod_imports_any_strong_occlusions_value(imported: Imported, tmp_path: Path):
    imp = imported
    sid = min(imp.records)
    for value in (True, False):
        ep = import_record(imp.name, {**imp.records[sid], "strong_occlusions": value}, imp.test_dir)
        assert ep.official.record["strong_occlusions"] is value
        assert dataclasses.replace(ep, official=None) == dataclasses.replace(imp.episodes[sid], official=None)
    with pytest.raises(ImportFailure, match="field 'strong_occlusions' missing or not bool"):
        rec = {k: v for k, v in imp.records[sid].items() if k != "strong_occlusions"}
        import_record(imp.name, rec, imp.test_dir)
    # the loader, not the importer, drops the false rows
    test_dir = tmp_path / "test"
    shutil.copytree(imp.test_dir, test_dir)
    jsonl = test_dir / f"{imp.name}_preprocessed.jsonl"
    rows = [json.loads(line) for line in jsonl.read_text(encoding="utf-8").splitlines()]
    rows[0]["strong_occlusions"] = False
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    loaded = data.load(test_dir, "VSOD")
    assert loaded.dropped["strong_occlusions_false"] == sum(r["strong_occlusions"] is False for r in rows) >= 1


@pytest.mark.parametrize("imported", ["changeit"], indirect=True)
def test_changeit_reachable_frames_only(imported: Imported, tmp_path: Path):
    """Only ``first + k*step_size`` is read, un-padded; the rewind/wait hiding follows the official if/elif."""
    imp = imported
    for sid, ep in imp.episodes.items():
        rec = imp.records[sid]
        step, n = rec["step_size"], rec["num_images"]
        images = list(range(0, n, step))
        assert _frame_files(ep) == [rec["image_template"].format(image=i) for i in images]
        assert ep.states[0].shown == tuple(i for i in range(3) if rec["options"][i] != "Rewind the video.")
        last = ep.states[-1]
        assert [rec["options"][i] for i in last.shown if "Wait for the" in rec["options"][i]] == []
        assert ep.key.endswith(("/object", "/action"))
    # a record not starting at 0 and whose reference image is not reachable still imports
    sid = min(imp.records)
    rec = imp.records[sid]
    step, n = rec["step_size"], rec["num_images"]
    if step < 2:
        pytest.skip("needs step_size >= 2")
    test_dir = tmp_path / "test"
    shutil.copytree(imp.test_dir, test_dir)
    template = rec["image_template"]
    src = test_dir / template.format(image=0)
    for i in range(n):
        if not (test_dir / template.format(image=i)).exists():
            shutil.copy(src, test_dir / template.format(image=i))
    moved = {**rec, "first_image": step + 1, "reference_image": 1}
    ep = import_record(imp.name, moved, test_dir)
    images = list(range(1, n, step))
    assert _frame_files(ep) == [template.format(image=i) for i in images]
    assert ep.initial_state == 1 and ep.reference_frame == 0
    assert ep.states[0].shown == tuple(i for i in range(3) if rec["options"][i] != "Rewind the video.")
    moved = {**rec, "first_image": step + 1, "reference_image": 2}
    ep = import_record(imp.name, moved, test_dir)
    assert ep.reference_frame == len(images) and len(ep.frames) == len(images) + 1
    assert Replay(ep, reference=True).frame == len(images)


# ---------------------------------------------------------------- agreement with the official environments


def _driver_oracle(rep: Replay) -> str:
    """The official driver's 'oracle': the first correct option in stored order while there is one, else the answer."""
    st = rep.current
    valid = [i for i in st.shown if i in st.valid]
    return rep.episode.options[valid[0]] if valid and not rep.reference else rep.episode.answer


def _oracle_letters(ep: Episode) -> list[str]:
    """pb-build's oracle play of ``ep``, as the letters of the chosen texts."""
    rep = Replay(ep)
    letters = []
    while not rep.done:
        text = oracle(rep)
        letters.append(chr(65 + rep.shown_texts().index(text)))
        rep.answer(text)
    return letters


@requires_official
def test_official_environment_agrees_with_imported_episodes(imported: Imported):
    jobs: list[dict[str, Any]] = []
    for sid in sorted(imported.records):
        ep = imported.episodes[sid]
        jobs += [
            {"id": sid, "policy": "oracle"},
            {"id": sid, "policy": "letters", "answers": _oracle_letters(ep)},
            {"id": sid, "policy": "proactive"},
            {"id": sid, "policy": "abstain"},
            {"id": sid, "policy": "letters", "answers": [ep.answer]},  # 'first' (ROD's turn 1 takes no category)
            {"id": sid, "policy": "reference", "reference": True},
            {"id": sid, "policy": "letters", "answers": ["B", "A", "A", "B", "B", "A", "G"]},
        ]
    report = run_official_report(imported.name, imported.test_dir, jobs)
    bad = []
    keys = ("num_turns", "correct_prediction", "max_steps", "action_evaluations", "category_evaluations",
            "answers", "options")
    for job, off in zip(jobs, report["jobs"], strict=True):
        assert off["error"] is None and not off["image_errors"], (job, off["error"], off["image_errors"])
        ep = imported.episodes[job["id"]]
        ours = replay_job(ep, job, {"oracle": _driver_oracle})
        diff = {k: (off[k], ours[k]) for k in keys if off[k] != ours[k]}
        for rel, frame in zip(off["images"], ours["frames"], strict=True):
            if (imported.test_dir / rel).read_bytes() != ep.frames[frame]:
                diff.setdefault("frames", []).append((rel, frame))
        if diff:
            bad.append(f"{job}: (official, imported) {diff}")
        if job["policy"] == "letters" and job["answers"] == _oracle_letters(ep):
            assert off["correct_prediction"], job
    assert not bad, f"{len(bad)}/{len(jobs)} jobs disagree:\n" + "\n".join(bad[:10])
