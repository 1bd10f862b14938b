"""Publishing to the Hub and pulling back, against the in-repo Hub emulator (no network)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import datasets
import huggingface_hub
import pytest
from click.testing import CliRunner
from hub_emulator import HubServer

from pb_build.build import SourceJob, build_release
from pb_build.builders import quickdraw
from pb_build.cli import main
from pb_build.errors import PbBuildError
from pb_build.hub.publish import push
from pb_build.hub.pull import pull
from pb_build.manifests.manifest import read_dict as read_manifest
from pb_build.manifests.provenance import read_sums
from pb_build.verify import verify_release

TOKEN = "hf_test_write"
REPO = "tester/pb-demo"


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[HubServer]:
    server = HubServer({TOKEN})
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    c = huggingface_hub.constants
    monkeypatch.setattr(c, "ENDPOINT", server.url)
    monkeypatch.setattr(c, "HUGGINGFACE_CO_URL_TEMPLATE", server.url + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(c, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setattr(c, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    monkeypatch.setattr(c, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets.config, "HF_ENDPOINT", server.url)
    monkeypatch.setattr(datasets.config, "HUB_DATASETS_URL",
                        server.url + "/datasets/{repo_id}/resolve/{revision}/{path}")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "ds-cache")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    yield server
    server.shutdown()
    server.server_close()  # closing twice is harmless


def build(small_raw: Path, out: Path, per_class: int, seed: int = 0) -> Path:
    job = SourceJob(quickdraw, quickdraw.Config(per_class=per_class, pool=6, seed=seed), small_raw)
    build_release(out, [job], progress=False)
    return out


def test_push_tag_newer_push_and_old_tag_still_loads(hub: HubServer, small_raw: Path, tmp_path: Path) -> None:
    v1 = build(small_raw, tmp_path / "v1", per_class=2)
    plan = push(v1, REPO, "1.0.0", echo=lambda _: None)
    assert "README.md" in plan.additions and plan.deletions == []
    repo = hub.state.repos[REPO]
    assert repo.tags["v1.0.0"] == repo.branches["main"]
    v2 = build(small_raw, tmp_path / "v2", per_class=3, seed=1)
    push(v2, REPO, "1.1.0", echo=lambda _: None)
    assert repo.tags["v1.1.0"] == repo.branches["main"] != repo.tags["v1.0.0"]
    old = datasets.load_dataset(REPO, "quickdraw", split="test", revision="v1.0.0")
    new = datasets.load_dataset(REPO, "quickdraw", split="test", revision="v1.1.0")
    assert len(old) == 4 and len(new) == 6
    assert old["key"] == read_manifest(v1)["sources"][0]["keys"]
    changelog = hub.file(REPO, "main", "CHANGELOG.md").decode()
    assert changelog.index("## v1.1.0") < changelog.index("## v1.0.0")
    card = hub.file(REPO, "v1.1.0", "README.md").decode()
    assert 'revision="v1.1.0"' in card and "`v1.0.0`" in card and "CC BY 4.0" in card


def test_pull_gives_a_folder_that_verifies_offline(hub: HubServer, small_raw: Path, tmp_path: Path) -> None:
    push(build(small_raw, tmp_path / "rel", per_class=2), REPO, "1.0.0", echo=lambda _: None)
    out = pull(REPO, "1.0.0", tmp_path / "pulled")
    assert verify_release(out).problems == []
    assert not (out / ".cache").exists()
    assert read_sums(out)["test/QuickDraw_preprocessed.jsonl"] == read_sums(tmp_path / "rel")[
        "test/QuickDraw_preprocessed.jsonl"]
    with pytest.raises(PbBuildError, match="no version v9.9.9"):
        pull(REPO, "9.9.9", tmp_path / "nope")
    assert not (tmp_path / "nope").exists()


def test_existing_version_is_refused_before_uploading(hub: HubServer, small_raw: Path, tmp_path: Path) -> None:
    rel = build(small_raw, tmp_path / "rel", per_class=2)
    push(rel, REPO, "1.0.0", echo=lambda _: None)
    head = hub.state.repos[REPO].branches["main"]
    n_uploads = sum(1 for m, p in hub.state.requests if p.startswith("/lfs-upload") or "/commit/" in p)
    with pytest.raises(PbBuildError, match="version v1.0.0 already exists"):
        push(build(small_raw, tmp_path / "other", per_class=3), REPO, "1.0.0", echo=lambda _: None)
    assert hub.state.repos[REPO].branches["main"] == head
    assert sum(1 for m, p in hub.state.requests if p.startswith("/lfs-upload") or "/commit/" in p) == n_uploads


def test_stale_parent_is_retried_from_a_fresh_diff(hub: HubServer, small_raw: Path, tmp_path: Path) -> None:
    push(build(small_raw, tmp_path / "v1", per_class=2), REPO, "1.0.0", echo=lambda _: None)
    hub.state.concurrent_commits = 1
    messages: list[str] = []
    push(build(small_raw, tmp_path / "v2", per_class=3), REPO, "1.1.0", echo=messages.append)
    assert any("moved while publishing" in m for m in messages)
    repo = hub.state.repos[REPO]
    assert repo.tags["v1.1.0"] == repo.branches["main"]
    assert hub.file(REPO, "v1.1.0", "other.txt") == b"other"  # the concurrent commit is kept, not overwritten
    commits = [c for c in repo.commits.values() if c.title.startswith("Release")]
    assert len(commits) == 2


def test_failure_mid_upload_leaves_no_tag(hub: HubServer, small_raw: Path, tmp_path: Path) -> None:
    hub.state.fail_lfs_uploads = True
    with pytest.raises(PbBuildError):
        push(build(small_raw, tmp_path / "rel", per_class=2), REPO, "1.0.0", echo=lambda _: None)
    assert hub.state.repos[REPO].tags == {}


def test_bad_token_and_no_token(hub: HubServer, small_raw: Path, tmp_path: Path,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    rel = build(small_raw, tmp_path / "rel", per_class=2)
    result = CliRunner().invoke(main, ["push", str(rel), "--repo", REPO, "--version", "1.0.0", "--token",
                                       "hf_wrong_secret"])
    assert result.exit_code == 1
    assert "authentication failed" in result.output and "hf_wrong_secret" not in result.output
    assert "Traceback" not in result.output and REPO not in hub.state.repos
    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    result = CliRunner().invoke(main, ["push", str(rel), "--repo", REPO, "--version", "1.0.0"])
    assert result.exit_code == 1 and "no Hugging Face token" in result.output


def test_dry_run_writes_nothing(hub: HubServer, small_raw: Path, tmp_path: Path) -> None:
    rel = build(small_raw, tmp_path / "rel", per_class=2)
    result = CliRunner().invoke(main, ["push", str(rel), "--repo", REPO, "--version", "1.0.0", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "would create dataset repo" in result.output and "would tag the commit v1.0.0" in result.output
    # counts and bytes per folder, not one line per file
    frames = [p for p in read_sums(rel) if p.startswith("test/QuickDraw/")]
    assert len(frames) > 5
    assert f"  + test/QuickDraw/{' ' * 17} {len(frames):6d} file(s)" in result.output
    assert "0000.png" not in result.output and len(result.output.splitlines()) < 10
    verbose = CliRunner().invoke(main, ["push", str(rel), "--repo", REPO, "--version", "1.0.0", "--dry-run",
                                        "--verbose"])
    assert "  + quickdraw/test-00000-of-00001.parquet" in verbose.output
    assert sum(line.startswith("  + test/QuickDraw/") for line in verbose.output.splitlines()) == len(frames)
    assert REPO not in hub.state.repos
    assert not any(m != "GET" for m, _ in hub.state.requests)


def test_dry_run_json_summarises_per_folder(hub: HubServer, small_raw: Path, tmp_path: Path) -> None:
    rel = build(small_raw, tmp_path / "rel", per_class=2)
    result = CliRunner().invoke(main, ["push", str(rel), "--repo", REPO, "--version", "v1.0.0", "--dry-run",
                                       "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    sums = read_sums(rel)
    folders = summary["upload"]["folders"]
    assert summary["tag"] == "v1.0.0" and summary["version"] == "1.0.0" and summary["create_repo"] is True
    assert summary["dry_run"] is True and summary["commit"] is None
    assert folders["test/QuickDraw/"]["files"] == sum(p.startswith("test/QuickDraw/") for p in sums)
    # every file of SHA256SUMS, plus SHA256SUMS itself and the CHANGELOG.md a push adds
    assert summary["upload"]["files"] == sum(f["files"] for f in folders.values()) == len(sums) + 2
    assert summary["upload"]["bytes"] == sum(f["bytes"] for f in folders.values()) > 0
    assert REPO not in hub.state.repos


def test_push_shows_one_overall_bar_and_quiet_shows_none(hub: HubServer, small_raw: Path, tmp_path: Path) -> None:
    rel = build(small_raw, tmp_path / "rel", per_class=2)
    result = CliRunner().invoke(main, ["push", str(rel), "--repo", REPO, "--version", "v1.0.0"])
    assert result.exit_code == 0, result.output
    bars = {line.split(":")[0] for line in result.stderr.replace("\r", "\n").splitlines() if "%" in line}
    assert bars == {f"push {REPO}"}, result.stderr
    assert "100%" in result.stderr
    assert hub.state.repos[REPO].tags.keys() == {"v1.0.0"}  # vX.Y.Z accepted and normalised
    assert 'load_dataset("tester/pb-demo", "quickdraw", revision="v1.0.0")' in result.stdout
    rel2 = build(small_raw, tmp_path / "rel2", per_class=3)
    quiet = CliRunner().invoke(main, ["push", str(rel2), "--repo", REPO, "--version", "1.1.0", "--quiet", "--json"])
    assert quiet.exit_code == 0, quiet.output
    assert "%" not in quiet.stderr
    summary = json.loads(quiet.stdout)
    assert summary["commit"] == hub.state.repos[REPO].tags["v1.1.0"] and summary["verified"] > 0
    pulled = CliRunner().invoke(main, ["pull", "--repo", REPO, "--version", "v1.1.0", "--out",
                                       str(tmp_path / "pulled"), "--quiet"])
    assert pulled.exit_code == 0, pulled.output
    assert "%" not in pulled.stderr and f"pulled {REPO} v1.1.0 to" in pulled.stdout


def test_repo_grows_source_by_source_and_stale_shards_are_deleted(hub: HubServer, small_raw: Path,
                                                                  tmp_path: Path) -> None:
    rel = build(small_raw, tmp_path / "rel", per_class=2)
    push(rel, REPO, "1.0.0", echo=lambda _: None)
    # A file of a source that is not in the next release is kept; a stale shard of a rebuilt source goes.
    repo = hub.state.repos[REPO]
    head = repo.commits[repo.branches["main"]]
    from hub_emulator import Entry

    head.files["quickdraw/test-00001-of-00002.parquet"] = Entry(3, data=b"old")
    head.files["LICENSE"] = Entry(2, data=b"ok")
    plan = push(build(small_raw, tmp_path / "rel2", per_class=3), REPO, "1.1.0", echo=lambda _: None)
    assert plan.deletions == ["quickdraw/test-00001-of-00002.parquet"]
    assert hub.file(REPO, "v1.1.0", "LICENSE") == b"ok"
    manifest = json.loads(hub.file(REPO, "v1.1.0", "manifest.json"))
    assert manifest["release"]["version"] == "1.1.0" and manifest["release"]["repo"] == REPO


def test_user_errors_are_one_line(hub: HubServer, small_raw: Path, tmp_path: Path) -> None:
    rel = build(small_raw, tmp_path / "rel", per_class=2)
    for args, fragment, code in [  # a bad value is a usage error (2), a failure is 1
        (["push", str(rel), "--repo", "no-namespace", "--version", "1.0.0"], "expected NAMESPACE/NAME", 2),
        (["push", str(rel), "--repo", REPO, "--version", "1.0"], "expected MAJOR.MINOR.PATCH", 2),
        (["pull", "--repo", "tester/missing", "--version", "1.0.0", "--out", str(tmp_path / "p")], "not found", 1),
    ]:
        result = CliRunner().invoke(main, args)
        assert result.exit_code == code and fragment in result.output and "Traceback" not in result.output

def test_no_network_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    result = CliRunner().invoke(main, ["pull", "--repo", REPO, "--version", "1.0.0", "--out", str(tmp_path / "p")])
    assert result.exit_code == 1 and "cannot reach the Hub" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "p").exists()
