"""The ``eval``, ``filter`` and ``train-split`` commands with scripted policies (no model needed)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from datasets import load_dataset

from pb_build.cli import main
from pb_build.eval.train_split import choose_states, reachable_states
from pb_build.verify import verify_release

try:
    from test_eval_support import build_sample_release, release_episodes
except ImportError:  # tests/ imported as a package
    from tests.test_eval_support import build_sample_release, release_episodes



def _cli(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture
def release(tmp_path_factory) -> Path:
    return build_sample_release(tmp_path_factory.mktemp("qd") / "release")


def _probe(release: Path, policy: str, out: Path, *extra: object) -> Path:
    result = _cli("eval", release, "--source", "QD", "--policy", policy, "--out", out, "--quiet", *extra)
    assert result.exit_code == 0, result.output
    return out


def test_eval_with_policies(release: Path, tmp_path: Path):
    result = _cli("eval", release, "--source", "QuickDraw", "--policy", "oracle", "--out", tmp_path / "o", "--quiet")
    assert result.exit_code == 0, result.output
    assert "100.0" in result.output
    result = _cli("eval", release / "test", "--source", "qd", "--policy", "first", "--limit", "3", "--out",
                  tmp_path / "f", "--quiet")  # the official layout
    assert result.exit_code == 0, result.output
    assert len((tmp_path / "f" / "trajectories.jsonl").read_text().splitlines()) == 3


@pytest.mark.parametrize("args, message", [
    (("--source", "COCO", "--policy", "oracle"), "source 'COCO' is not in this folder"),
    (("--source", "QD"), "pass exactly one of --model (repeatable) and --policy"),
    (("--source", "QD", "--policy", "oracle", "--model", "m"), "pass exactly one of --model (repeatable) and --policy"),
    (("--source", "QD", "--policy", "oracle", "--mode", "oeg"), "OEG needs a model"),
    (("--source", "QD", "--policy", "oracle", "--filtered"), "run `pb-build filter` first"),
])
def test_eval_errors(release: Path, tmp_path: Path, args, message: str):
    result = _cli("eval", release, *args, "--out", tmp_path / "run")
    assert result.exit_code == 1
    assert message in result.output


def test_filter_records_kept_ids(release: Path, tmp_path: Path):
    """One of four probes correct at turn 1 (25 %) drops a sample; kept ids reach the release and the manifest."""
    runs = [_probe(release, "first", tmp_path / "first")]
    runs += [_probe(release, "abstain", tmp_path / f"abstain{i}") for i in range(3)]
    runs.append(_probe(release, "random", tmp_path / "random", "--seed", "5"))
    trajectories = [json.loads(x) for x in (runs[-1] / "trajectories.jsonl").read_text().splitlines()]
    random_correct = {t["id"] for t in trajectories if t["turns"][0]["category_verdict"] == "correct"}
    n = len(release_episodes(release, "quickdraw"))
    assert 0 < len(random_correct) < n

    result = _cli("filter", release, "--source", "QD", *[x for r in runs[1:] for x in ("--run", r)])
    assert result.exit_code == 0, result.output  # 1 of 4 correct = 25 %: the random probe's hits are dropped
    kept = json.loads((release / "test" / "QuickDraw_filter.json").read_text())
    assert kept == sorted(set(range(n)) - random_correct)
    manifest = json.loads((release / "manifest.json").read_text())
    flt = manifest["sources"][0]["filter"]
    assert flt["models"] == ["policy:abstain"] * 3 + ["policy:random"] and flt["threshold"] == 0.25
    assert flt["kept_ids"] == kept and flt["counts"] == {"before": n, "kept": len(kept)}
    assert not verify_release(release).problems
    filtered = load_dataset(str(release), "quickdraw_filtered", split="test")
    assert sorted(filtered["id"]) == kept

    result = _cli("filter", release, "--source", "QD", *[x for r in runs for x in ("--run", r)])
    assert result.exit_code == 1 and "already filtered" in result.output
    result = _cli("filter", release, "--source", "QD", "--overwrite", *[x for r in runs[:3] for x in ("--run", r)])
    assert result.exit_code == 0, result.output  # the always-correct probe is 1 of 3: every sample is dropped
    assert json.loads((release / "test" / "QuickDraw_filter.json").read_text()) == []

    result = _cli("filter", release, "--source", "QD", "--overwrite", "--threshold", "0.5", "--run", runs[-1],
                  "--run", runs[1])
    assert result.exit_code == 0
    ev = _cli("eval", release, "--source", "QD", "--policy", "oracle", "--filtered", "--out", tmp_path / "fr",
              "--quiet")
    assert ev.exit_code == 0, ev.output
    got = {json.loads(x)["id"] for x in (tmp_path / "fr" / "trajectories.jsonl").read_text().splitlines()}
    assert got == set(range(n)) - random_correct


def test_filter_refuses_unsuitable_runs(release: Path, tmp_path: Path):
    hinted = _probe(release, "first", tmp_path / "hinted", "--hint")
    limited = _probe(release, "first", tmp_path / "limited", "--limit", "3")
    result = _cli("filter", release, "--source", "QD", "--run", hinted)
    assert result.exit_code == 1 and "a hinted run" in result.output
    result = _cli("filter", release, "--source", "QD", "--run", limited)
    assert result.exit_code == 1 and "must cover the whole source" in result.output
    other = build_sample_release(tmp_path / "other", seed=7)
    result = _cli("filter", other, "--source", "QD", "--run", _probe(release, "first", tmp_path / "p"))
    assert result.exit_code == 1 and "another release" in result.output


def test_train_split(release: Path, tmp_path: Path):
    episodes = release_episodes(release, "quickdraw")
    n_states = sum(len(reachable_states(ep)) for ep in episodes.values())
    out = tmp_path / "train"
    result = _cli("train-split", release, "--source", "QD", "--out", out)
    assert result.exit_code == 0, result.output
    ds = load_dataset(str(out), split="train")
    assert len(ds) == n_states
    assert set(ds.column_names) == {"prompt", "ground_truth", "proactive_actions", "options", "images"}
    row = ds[0]
    assert row["prompt"][0]["role"] == "user"
    assert [c["type"] for c in row["prompt"][0]["content"]] == ["image", "text"]
    assert row["prompt"][0]["content"][1]["text"].endswith("Please only return one of the options without any other "
                                                           "words.")
    assert row["ground_truth"] in row["options"] and len(row["images"]) == 1
    ambiguous = sum(bool(r) for r in ds["proactive_actions"])
    assert ambiguous == n_states - len(episodes)  # every state but the last frame of each drawing asks for more
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["rows"] == n_states and len(manifest["rows"]) == n_states

    result = _cli("train-split", release, "--source", "QD", "--out", out, "--per-episode", "2")
    assert result.exit_code == 1 and "--overwrite" in result.output
    result = _cli("train-split", release, "--source", "QD", "--out", out, "--per-episode", "2", "--overwrite")
    assert result.exit_code == 0, result.output
    assert json.loads((out / "manifest.json").read_text())["counts"]["rows"] == 2 * len(episodes)
    out2 = tmp_path / "train2"
    assert _cli("train-split", release, "--source", "QD", "--out", out2, "--per-episode", "2").exit_code == 0
    ds = load_dataset(str(out2), split="train")
    assert len(ds) == 2 * len(episodes)
    assert sum(bool(r) for r in ds["proactive_actions"]) == len(episodes)  # one ambiguous, one informative each

    copy = tmp_path / "copy"
    shutil.copytree(release, copy)
    result = _cli("train-split", release, "--source", "QD", "--out", tmp_path / "none", "--exclude", copy)
    # every episode is excluded: 0 rows is a failure with one clear line, and nothing is written
    assert result.exit_code == 1 and "0 rows" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "none").exists() and not list(tmp_path.glob(".none*"))


def test_choose_states_is_seeded(release: Path):
    ep = next(iter(release_episodes(release, "quickdraw").values()))
    assert choose_states(ep, 0, 0) == reachable_states(ep)
    assert choose_states(ep, 2, 1) == choose_states(ep, 2, 1)
    picked = choose_states(ep, 2, 1)
    assert any(ep.states[s].valid for s in picked) and any(not ep.states[s].valid for s in picked)
