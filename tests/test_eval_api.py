"""The OpenAI-compatible backend against a local server, and resumable multi-source multi-model runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from pb_build.cli import main
from pb_build.eval import data
from pb_build.eval.api import ApiError, OpenAIBackend
from pb_build.eval.runner import Query, run_mcqa

try:
    from api_server import ApiServer, letter_answer
    from test_eval_support import build_sample_release
except ImportError:  # tests/ imported as a package
    from tests.api_server import ApiServer, letter_answer
    from tests.test_eval_support import build_sample_release

KEY = "sk-test-DO-NOT-LEAK-4242"


def _cli(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> Path:
    return build_sample_release(tmp_path_factory.mktemp("qd") / "release")


@pytest.fixture(scope="module")
def two_sources(tmp_path_factory) -> Path:
    """A release holding QuickDraw (bundled sample) and ROD (the ROD tests' fake raw tree)."""
    from pb_build.build import SourceJob, build_release
    from pb_build.builders import REGISTRY

    try:
        from test_rod import make_tree
    except ImportError:
        from tests.test_rod import make_tree
    base = tmp_path_factory.mktemp("two")
    qd, rod = REGISTRY["quickdraw"], REGISTRY["rod"]
    jobs = [SourceJob(qd, qd.Config(), qd.sample_dir(), True), SourceJob(rod, rod.Config(), make_tree(base / "raw"))]
    build_release(base / "release", jobs, workers=1, progress=False)
    return base / "release"


def _backend(server: ApiServer, model: str = "first", **kw) -> OpenAIBackend:
    kw = {"retries": 4, "backoff": 0.01, "timeout": 0.5, "concurrency": 4, **kw}
    return OpenAIBackend(server.url, model, key_env="PB_TEST_KEY", **kw)


def test_api_outcomes_equal_a_local_decider_with_the_same_answers(release: Path, monkeypatch):
    monkeypatch.setenv("PB_TEST_KEY", KEY)
    items = data.load(release, "quickdraw", limit=10).items
    with ApiServer() as server:
        api = _backend(server, price_input=2.0, price_output=8.0)
        via_api = run_mcqa(items, api, batch_size=4)
    local = run_mcqa(items, lambda qs: [letter_answer("first", q.prompt) for q in qs], batch_size=4)
    assert sorted(via_api, key=lambda r: r["id"]) == sorted(local, key=lambda r: r["id"])
    turns = sum(r["num_turns"] for r in local)
    assert api.usage() == {"prompt_tokens": 100 * turns, "completion_tokens": 2 * turns, "requests": turns,
                           "retries": 0, "failures": 0, "cost": round((200 * turns + 16 * turns) / 1e6, 6)}
    assert set(server.auth) == {f"Bearer {KEY}"}


def test_api_retries_429_500_slow_and_malformed_then_answers(release: Path, monkeypatch):
    monkeypatch.setenv("PB_TEST_KEY", KEY)
    item = data.load(release, "quickdraw", limit=1).items[0]
    ep = item.episode
    query = Query(0, ep, ep.states[ep.initial_state].frame, "Pick. Options:\nA. x\nB. y\n")
    with ApiServer(slow=1.0) as server:
        server.script = [429, 500, "slow", "garbage"]
        api = _backend(server)
        assert api([query]) == ["A."]
        assert api.usage()["retries"] == 4 and api.usage()["requests"] == 5
        server.script = [400]  # a client error is not retried
        [answer] = api([query])
        assert isinstance(answer, ApiError) and "HTTP 400" in str(answer) and KEY not in str(answer)
        server.script = ["empty"]
        [answer] = api([query])
        assert isinstance(answer, ApiError) and "no choices" in str(answer)


def test_garbage_server_fails_episodes_not_the_run_and_never_leaks_the_key(release: Path, tmp_path: Path,
                                                                             monkeypatch):
    monkeypatch.setenv("PB_TEST_KEY", KEY)
    out = tmp_path / "run"
    with ApiServer() as server:
        server.always = "garbage"
        result = _cli("eval", release, "--source", "QD", "--model", "first", "--api-base", server.url,
                      "--api-key-env", "PB_TEST_KEY", "--api-retries", "1", "--limit", "4", "--out", out, "--quiet")
    assert result.exit_code == 0, result.output
    assert "4 episode(s) failed" in result.output
    recs = [json.loads(line) for line in (out / "trajectories.jsonl").read_text().splitlines()]
    assert len(recs) == 4 and all(r["status"] == "failed" and "malformed JSON" in r["error"] for r in recs)
    for path in out.iterdir():
        assert KEY not in path.read_text()
    assert KEY not in result.output
    assert json.loads((out / "run.json").read_text())["api_key_env"] == "PB_TEST_KEY"


def test_interrupted_multi_source_multi_model_run_resumes_to_the_same_result(two_sources: Path, tmp_path: Path,
                                                                               monkeypatch):
    monkeypatch.setenv("PB_TEST_KEY", KEY)
    calls = {"n": 0, "stop_at": None}
    original = OpenAIBackend.__call__

    def flaky(self, queries):
        calls["n"] += 1
        if calls["stop_at"] is not None and calls["n"] >= calls["stop_at"]:
            raise KeyboardInterrupt("power cut")
        return original(self, queries)

    monkeypatch.setattr(OpenAIBackend, "__call__", flaky)
    with ApiServer() as server:
        args = ["eval", two_sources, "--source", "all", "--model", "first", "--model", "last", "--api-base",
                server.url, "--api-key-env", "PB_TEST_KEY", "--batch-size", "3", "--quiet"]
        whole = _cli(*args, "--out", tmp_path / "whole")
        assert whole.exit_code == 0, whole.output
        total_calls = calls["n"]
        calls.update(n=0, stop_at=total_calls // 2)
        cut = _cli(*args, "--out", tmp_path / "cut")
        assert cut.exit_code != 0
        partial = sorted((tmp_path / "cut").rglob("trajectories.jsonl"))
        assert partial and not (tmp_path / "cut" / "index.json").exists()
        with open(partial[-1], "a", encoding="utf-8") as handle:
            handle.write('{"id": 1, "half-writ')  # the line being written when the power went
        calls.update(n=0, stop_at=None)
        requests_before = len(server.requests)
        resumed = _cli(*args, "--out", tmp_path / "cut")
        assert resumed.exit_code == 0, resumed.output
        assert len(server.requests) - requests_before < requests_before  # finished episodes were not redone
        mismatch = _cli(*args, "--hint", "--out", tmp_path / "cut")
    assert mismatch.exit_code == 1 and "holds a run with another hint" in mismatch.output
    assert len(mismatch.output.strip().splitlines()) == 2  # the evaluation-set line and the error
    runs = sorted(p.relative_to(tmp_path / "whole") for p in (tmp_path / "whole").rglob("trajectories.jsonl"))
    assert len(runs) == 4  # 2 models x 2 sources
    for rel in runs:
        for name in ("trajectories.jsonl", "summary.json"):
            assert (tmp_path / "whole" / rel.parent / name).read_text() == (tmp_path / "cut" / rel.parent /
                                                                              name).read_text(), rel
        run = json.loads((tmp_path / "cut" / rel.parent / "run.json").read_text())
        assert run["identity"] == json.loads((tmp_path / "whole" / rel.parent / "run.json").read_text())["identity"]
    index = json.loads((tmp_path / "cut" / "index.json").read_text())
    assert {(r["model"], r["source"]) for r in index} == {(m, s) for m in ("first", "last") for s in ("quickdraw",
                                                                                                    "rod")}
