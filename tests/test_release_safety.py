"""A release is never replaced by a worse one, never lost, and interrupted builds leave nothing for long."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, drawing_record, square_strokes, write_ndjson

from pb_build import release_folder
from pb_build.build import SourceJob, build_release
from pb_build.builders import quickdraw
from pb_build.errors import PbBuildError


def build(raw: Path, out: Path, overwrite: bool = False, **kwargs) -> list:
    job = SourceJob(quickdraw, quickdraw.Config(per_class=kwargs.pop("per_class", 2)), raw)
    return build_release(out, [job], workers=1, progress=False, overwrite=overwrite, **kwargs)


def one_stroke_raw(tmp_path: Path) -> Path:
    """Valid QuickDraw files whose drawings are all ineligible (one stroke): a build yields 0 samples."""
    raw = tmp_path / "one-stroke"
    raw.mkdir()
    write_ndjson(raw / "cat.ndjson", [drawing_record("cat", str(100 + i), square_strokes(1, i)) for i in range(3)])
    return raw


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_an_empty_build_never_replaces_a_release(small_raw: Path, tmp_path: Path) -> None:
    out = tmp_path / "rel"
    build(small_raw, out)
    before = snapshot(out)
    with pytest.raises(PbBuildError, match=r"quickdraw: 0 sample\(s\) built from .*, fewer than --min-samples 1 "
                                           r".*nothing was written at"):
        build(one_stroke_raw(tmp_path), out, overwrite=True)
    assert snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one-stroke", "raw", "rel"]


def test_min_samples_is_a_floor_per_source(small_raw: Path, tmp_path: Path) -> None:
    with pytest.raises(PbBuildError, match="4 sample\\(s\\) built .* fewer than --min-samples 5"):
        build(small_raw, tmp_path / "rel", min_samples=5)
    assert not (tmp_path / "rel").exists()
    [report] = build(small_raw, tmp_path / "rel", min_samples=4)
    assert report.samples == 4


def test_min_samples_on_the_command_line(small_raw: Path, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from pb_build.cli import main

    run = CliRunner().invoke(main, ["quickdraw", "--raw", str(small_raw), "--out", str(tmp_path / "rel"),
                                    "--per-class", "1", "--min-samples", "3", "--quiet", "--workers", "1"])
    assert run.exit_code == 1
    assert "error: quickdraw: 2 sample(s) built" in run.output and "Traceback" not in run.output


def test_overwrite_refuses_a_folder_that_is_not_a_release(small_raw: Path, tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "manifest.json").write_text("{}")
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(PbBuildError, match=r"mine: output folder exists and is not a pb-build release \(its "
                                           r"manifest.json is not a pb-build manifest .*missing key 'sources'"):
        build(small_raw, mine, overwrite=True)
    assert (mine / "notes.txt").read_text() == "keep me"


def test_overwrite_refuses_a_release_with_files_it_does_not_list(small_raw: Path, tmp_path: Path) -> None:
    out = tmp_path / "rel"
    build(small_raw, out)
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(PbBuildError, match=r"1 file\(s\) not in SHA256SUMS, e.g. notes.txt"):
        build(small_raw, out, overwrite=True)
    (out / "notes.txt").unlink()
    (out / "SHA256SUMS").unlink()
    with pytest.raises(PbBuildError, match="no SHA256SUMS"):
        build(small_raw, out, overwrite=True)
    assert (out / "manifest.json").is_file()


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _leave(folder: Path, pid: int | None, host: str | None = None) -> Path:
    folder.mkdir()
    (folder / "half.parquet").write_bytes(b"half")
    if pid is not None:
        marker = folder.with_name(folder.name + ".owner")
        marker.write_text(json.dumps({"pid": pid, "host": host or socket.gethostname()}))
    return folder


def test_stale_temporary_folders_are_removed_by_the_next_build(small_raw: Path, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture) -> None:
    dead = _leave(tmp_path / ".other.pb-build-tmp", _dead_pid())
    staging = _leave(tmp_path / "filtered", None) / ".pb-build-staging"
    _leave(staging, _dead_pid())
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) as alive_proc:
        alive = _leave(tmp_path / ".busy.pb-build-tmp", alive_proc.pid)
        foreign = _leave(tmp_path / ".far.pb-build-tmp", 1, host="another-host")
        build(small_raw, tmp_path / "rel")
        alive_proc.kill()
    err = capsys.readouterr().err
    assert not dead.exists() and not dead.with_name(dead.name + ".owner").exists()
    assert not staging.exists() and (tmp_path / "filtered" / "half.parquet").exists()
    assert alive.exists() and foreign.exists()  # in use, or not known to be dead: left alone, and named
    assert f"note: removed {dead}" in err and f"note: {foreign}: left by an interrupted pb-build run" in err
    assert str(alive) not in err


def test_a_release_moved_aside_by_a_killed_swap_is_restored(small_raw: Path, tmp_path: Path) -> None:
    out = tmp_path / "rel"
    build(small_raw, out)
    before = snapshot(out)
    old = tmp_path / ".rel.pb-build-old"
    out.rename(old)
    old.with_name(old.name + ".owner").write_text(json.dumps({"pid": _dead_pid(), "host": socket.gethostname()}))
    build(small_raw, tmp_path / "other")
    assert snapshot(out) == before and not old.exists()


def test_a_removal_error_names_the_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(path, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(Path(path) / "locked.bin"))

    monkeypatch.setattr(release_folder.shutil, "rmtree", refuse)
    with pytest.raises(PbBuildError, match=r"stale/locked.bin: cannot remove \(Permission denied\) while cleaning "
                                           r"up .*stale$"):
        release_folder.remove_tree(tmp_path / "stale")


SLOW_BUILD = """
import sys, time
from pb_build.builders import quickdraw
real = quickdraw.build
def slow(unit, config):
    time.sleep(0.5)
    return real(unit, config)
quickdraw.build = slow
from pb_build.cli import main
sys.argv = ["pb-build", "quickdraw", "--raw", sys.argv[1], "--out", sys.argv[2], "--workers", "1", "--quiet"]
main()
"""


def test_sigterm_cleans_up_like_ctrl_c(small_raw: Path, tmp_path: Path) -> None:
    out = tmp_path / "rel"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", SLOW_BUILD, str(small_raw), str(out)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # Workers build shards in a work folder beside the target (the release's temporary folder comes after them).
    shards = tmp_path / ".rel.pb-build-shards"
    deadline = time.monotonic() + 60
    while not any(shards.glob("*/*.partial")) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert any(shards.glob("*/*.partial"))
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143
    assert err.strip().splitlines()[-1] == "terminated; nothing was written at the target"
    assert "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw"]


def test_a_killed_filter_staging_inside_the_release_does_not_block_overwrite(small_raw: Path, tmp_path: Path) -> None:
    out = tmp_path / "rel"
    build(small_raw, out)
    staging = _leave(out / ".pb-build-staging", _dead_pid())
    build(small_raw, out, overwrite=True, per_class=3)
    assert not staging.exists() and not (out / ".pb-build-staging.owner").exists()
    assert len((out / "test" / "QuickDraw_preprocessed.jsonl").read_text().splitlines()) == 6
