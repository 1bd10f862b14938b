"""Scale (issue 11): shards built by workers, any worker count, parts merged, resume, Ray, faults."""

from __future__ import annotations

import dataclasses
import errno
import json
import multiprocessing
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from pb_build import inventory
from pb_build.build import Sharding, SourceJob, build_release, work_folder
from pb_build.builders import get_builder
from pb_build.builders.base import KeyDigests
from pb_build.cli import main
from pb_build.errors import Ineligible, PbBuildError
from pb_build.manifests import manifest as manifests
from pb_build.manifests.provenance import read_sums, release_files, sha256_file
from pb_build.parts import merge
from pb_build.shards import DONE, auto_shard_size
from pb_build.verify import verify_release

try:
    import test_imagenet_c
    import test_mvp_n
    import test_rod
    import test_vsod
    from changeit_raw import make_raw as changeit_raw
    from coco_raw import varied_tree
except ImportError:  # tests/ imported as a package
    from tests import test_imagenet_c, test_mvp_n, test_rod, test_vsod
    from tests.changeit_raw import make_raw as changeit_raw
    from tests.coco_raw import varied_tree

qd = get_builder("quickdraw")


def _quickdraw(base: Path) -> list[SourceJob]:
    return [SourceJob(qd, qd.Config(), qd.sample_dir(), sample=True)]


def _vsod(base: Path) -> list[SourceJob]:
    raw_dir, labels = test_vsod.make_tree(base)
    return [SourceJob(get_builder("vsod"), get_builder("vsod").Config(labels=str(labels)), raw_dir)]


def _rod(base: Path) -> list[SourceJob]:
    return [SourceJob(get_builder("rod"), get_builder("rod").Config(), test_rod.make_tree(base / "rod"))]


def _mvp_n(base: Path) -> list[SourceJob]:
    root = test_mvp_n.make_tree(base / "mvpn")
    names = test_mvp_n.write_names(base / "names.csv")
    return [SourceJob(get_builder("mvp-n"), get_builder("mvp-n").Config(names=str(names)), root)]


def _imagenet_c(base: Path) -> list[SourceJob]:
    root = test_imagenet_c.make_tree(base / "inc", per_class=2)
    return [SourceJob(get_builder("imagenet-c"), get_builder("imagenet-c").Config(), root)]


def _coco(base: Path) -> list[SourceJob]:
    tree = varied_tree(base / "coco", 12)
    tree.write()
    return [SourceJob(get_builder("coco"), get_builder("coco").Config(), tree.root)]


def _changeit(base: Path) -> list[SourceJob]:
    return [SourceJob(get_builder("changeit"), get_builder("changeit").Config(), changeit_raw(base / "cit"))]


SOURCES: dict[str, Callable[[Path], list[SourceJob]]] = {
    "quickdraw": _quickdraw, "vsod": _vsod, "rod": _rod, "mvp-n": _mvp_n, "imagenet-c": _imagenet_c,
    "coco": _coco, "changeit": _changeit,
}


def _sums(root: Path) -> str:
    return (root / "SHA256SUMS").read_text()


def _build(out: Path, jobs: list[SourceJob], **kw) -> Path:
    build_release(out, jobs, progress=False, **kw)
    return out


def _count_builds(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The keys of the samples built from now on (QuickDraw's build() is wrapped)."""
    real_build, calls = qd.build, []
    monkeypatch.setattr(qd, "build", lambda u, c: (calls.append(u.key), real_build(u, c))[1])
    return calls


# ------------------------------------------------------------------------------------- workers write shards


def test_any_worker_count_gives_the_same_release(tmp_path: Path):
    jobs = _quickdraw(tmp_path)
    releases = [_build(tmp_path / f"w{w}", jobs, workers=w, shard_size=3) for w in (1, 2, 3)]
    assert _sums(releases[0]) == _sums(releases[1]) == _sums(releases[2])
    rel = releases[1]
    assert len(list((rel / "quickdraw").glob("test-*.parquet"))) == 14  # 40 samples, 3 per shard
    # SHA256SUMS covers every file, each digest true; nothing of the shards is left beside the release.
    sums = read_sums(rel)
    assert sorted(sums) == release_files(rel)
    assert all(sha256_file(rel / p) == d for p, d in sums.items())
    assert not work_folder(rel).exists()
    assert verify_release(rel, progress=False).problems == []
    entry = manifests.read(rel).entry("quickdraw")
    assert len(entry.keys) == entry.counts.samples == 40 and entry.keys[0].startswith("quickdraw/")
    lines = (rel / entry.files.official).read_text().splitlines()
    assert [json.loads(line)["id"] for line in lines] == list(range(40))


def test_workers_read_the_environment_of_their_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Local workers fork from a server that an earlier build started; they still see this build's environment
    (here the image size limit, which workers check as they decode)."""
    jobs = _imagenet_c(tmp_path)
    _build(tmp_path / "first", jobs, workers=2, shard_size=2)
    monkeypatch.setenv("PB_BUILD_MAX_PIXELS", "16")
    with pytest.raises(PbBuildError, match=r"over the limit of 16 pixels"):
        _build(tmp_path / "second", jobs, workers=2, shard_size=2)
    assert not (tmp_path / "second").exists()


def test_default_shard_size_comes_from_the_plan(tmp_path: Path):
    """About 16 shards, of 64 to 256 samples each: a small release is one parquet file."""
    rel = _build(tmp_path / "rel", _quickdraw(tmp_path))
    assert [p.name for p in (rel / "quickdraw").iterdir()] == ["test-00000-of-00001.parquet"]
    assert manifests.read(rel).writer == {"shard_size": "auto"}
    sizes = [auto_shard_size(n) for n in (None, 0, 1, 1024, 1025, 4096, 4097, 10**6)]
    assert sizes == [256, 64, 64, 64, 65, 256, 256, 256]


@pytest.fixture(scope="module", params=list(SOURCES))
def single(request, tmp_path_factory) -> tuple[list[SourceJob], Path]:
    base = tmp_path_factory.mktemp(request.param)
    jobs = SOURCES[request.param](base)
    return jobs, _build(base / "single", jobs, shard_size=2)


@pytest.mark.parametrize("parts", [1, 2, 5])
def test_parts_merged_equal_a_single_build(single, parts: int, tmp_path: Path):
    jobs, reference = single
    folders = [_build(tmp_path / f"part{i}", jobs, shard_size=2, sharding=Sharding(parts, i)) for i in range(parts)]
    assert all((f / "part.json").is_file() and not (f / "manifest.json").exists() for f in folders)
    merge(list(reversed(folders)), tmp_path / "merged")  # the order parts are given in does not matter
    assert _sums(tmp_path / "merged") == _sums(reference)


def test_ineligible_items_are_counted_and_ids_stay_dense(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    real_build = qd.build

    def some_ineligible(unit, config):
        if zlib.crc32(unit.key.encode()) % 4 == 0:
            raise Ineligible(unit.key, "test rule", "excluded by the test")
        return real_build(unit, config)

    monkeypatch.setattr(qd, "build", some_ineligible)  # workers=1 builds in this process
    jobs = _quickdraw(tmp_path)
    rel = _build(tmp_path / "rel", jobs, shard_size=4, workers=1)
    entry = manifests.read(rel).entry("quickdraw")
    excluded = entry.ineligible["test rule"]
    assert 0 < excluded < 40 and len(entry.ineligible_items) == excluded
    assert entry.counts.samples == len(entry.keys) == 40 - excluded
    lines = (rel / entry.files.official).read_text().splitlines()
    assert [json.loads(line)["id"] for line in lines] == list(range(40 - excluded))  # renumbered, no gaps
    assert verify_release(rel, progress=False).problems == []
    parts = [_build(tmp_path / f"p{i}", jobs, shard_size=4, workers=1, sharding=Sharding(2, i)) for i in range(2)]
    merge(parts, tmp_path / "merged")
    assert _sums(tmp_path / "merged") == _sums(rel)  # the same card, previews, manifest and counts
    with pytest.raises(PbBuildError, match=f"fewer than --min-samples 40 \\({excluded} excluded\\)"):
        _build(tmp_path / "few", jobs, shard_size=4, workers=1, min_samples=40)
    with pytest.raises(PbBuildError, match="fewer than --min-samples 40"):
        merge(parts, tmp_path / "few-merged", min_samples=40)
    with pytest.raises(PbBuildError, match="an ineligible item; without --strict"):
        _build(tmp_path / "strict", jobs, shard_size=4, workers=1, strict=True)
    assert not (tmp_path / "few").exists() and not (tmp_path / "few-merged").exists()
    assert not (tmp_path / "strict").exists()


# ------------------------------------------------------------------------------------------------ merge checks


@pytest.fixture(scope="module")
def three_parts(tmp_path_factory) -> list[Path]:
    base = tmp_path_factory.mktemp("parts")
    return [_build(base / f"p{i}", _quickdraw(base), shard_size=5, sharding=Sharding(3, i)) for i in range(3)]


def _merge_error(parts: list[Path], out: Path) -> str:
    with pytest.raises(PbBuildError) as err:
        merge(parts, out)
    assert not out.exists()
    return str(err.value)


def test_merge_names_a_missing_duplicated_or_corrupted_part(three_parts: list[Path], tmp_path: Path):
    p0, p1, p2 = three_parts
    assert "part(s) 1 of 3 are missing" in _merge_error([p0, p2], tmp_path / "out")
    assert f"{p2}: part 2 of 3 is given twice" in _merge_error([p0, p1, p2, p2], tmp_path / "out")
    broken = shutil.copytree(p1, tmp_path / "broken")
    frame = next((broken / "shards" / "quickdraw").rglob("*.png"))
    frame.write_bytes(frame.read_bytes()[:-1])
    message = _merge_error([p0, broken, p2], tmp_path / "out")
    assert message.startswith(f"{broken}: shard") and "corrupted" in message
    assert "not a pb-build part" in _merge_error([p0, p1, tmp_path], tmp_path / "out")


@pytest.mark.parametrize("change, cause", [
    (lambda c: dataclasses.replace(c, seed=1), "different seed"),
    (lambda c: dataclasses.replace(c, frames=3), "different parameters"),
])
def test_merge_refuses_parts_of_another_build(three_parts: list[Path], tmp_path: Path, change, cause: str):
    job = _quickdraw(tmp_path)[0]
    other = _build(tmp_path / "other", [dataclasses.replace(job, config=change(job.config))], shard_size=5,
                   sharding=Sharding(3, 1))
    message = _merge_error([three_parts[0], other, three_parts[2]], tmp_path / "out")
    assert message.startswith(f"{other}: not a part of the same build") and cause in message


def test_merge_refuses_other_raw_inputs_and_tool_versions(three_parts: list[Path], tmp_path: Path):
    raw = shutil.copytree(qd.sample_dir(), tmp_path / "raw")
    first = next(raw.glob("*.ndjson"))
    first.write_text(first.read_text() + "\n")
    other = _build(tmp_path / "other", [SourceJob(qd, qd.Config(), raw, sample=True)], shard_size=5,
                   sharding=Sharding(3, 1))
    assert "different raw inputs" in _merge_error([three_parts[0], other, three_parts[2]], tmp_path / "out")
    newer = shutil.copytree(three_parts[1], tmp_path / "newer")
    body = json.loads((newer / "part.json").read_text())
    (newer / "part.json").write_text(json.dumps({**body, "pb_build": "99.0"}))
    assert "pb-build version" in _merge_error([three_parts[0], newer, three_parts[2]], tmp_path / "out")


def test_cli_builds_parts_and_merges_them(tmp_path: Path):
    run = CliRunner().invoke
    for i in range(2):
        result = run(main, ["quickdraw", "--sample", "--out", str(tmp_path / f"p{i}"), "--quiet", "--workers", "1",
                            "--shard-size", "8", "--num-shards", "2", "--shard-index", str(i)])
        assert result.exit_code == 0 and "part written to" in result.output, result.output
    result = run(main, ["merge", str(tmp_path / "p0"), str(tmp_path / "p1"), "--out", str(tmp_path / "m")])
    assert result.exit_code == 0, result.output
    result = run(main, ["quickdraw", "--sample", "--out", str(tmp_path / "one"), "--quiet", "--workers", "1",
                        "--shard-size", "8"])
    assert result.exit_code == 0 and _sums(tmp_path / "m") == _sums(tmp_path / "one")
    result = run(main, ["merge", str(tmp_path / "p0"), "--out", str(tmp_path / "m2")])
    assert result.exit_code == 1 and result.output.strip().splitlines() == [
        "error: part(s) 1 of 2 are missing (build them with --num-shards 2 --shard-index I)"]
    result = run(main, ["quickdraw", "--sample", "--out", str(tmp_path / "x"), "--num-shards", "2",
                        "--shard-index", "2"])
    assert result.exit_code == 2 and "--shard-index must be in 0..1" in result.output


def test_the_planned_keys_are_held_as_sorted_digests_and_duplicates_found_on_both_sides():
    """The parent's duplicate check keeps 8 bytes a key once they are merged into the sorted array; a key seen
    before the last merge and one seen after it are both refused."""
    seen = KeyDigests()
    keys = [f"quickdraw/cat/{i:08d}" for i in range(10_000)]
    assert all(seen.add(k) for k in keys)
    assert seen.sorted.size >= 8192 and seen.sorted.size + len(seen.latest) == len(keys)
    assert seen.sorted.nbytes == 8 * seen.sorted.size and list(seen.sorted) == sorted(seen.sorted)
    merged_early, latest = keys[3], keys[-1]
    assert not seen.add(merged_early) and not seen.add(latest) and seen.add("quickdraw/cat/new")


# ------------------------------------------------------------------------------------------------------ resume


def test_interrupted_build_resumes_from_finished_shards(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    reference = _build(tmp_path / "ref", _quickdraw(tmp_path), shard_size=4)
    real_build, calls = qd.build, []

    def counting(unit, config, stop_at: int | None = None):
        calls.append(unit.key)
        if stop_at is not None and len(calls) == stop_at:
            raise KeyboardInterrupt
        return real_build(unit, config)

    out = tmp_path / "rel"
    monkeypatch.setattr(qd, "build", lambda u, c: counting(u, c, stop_at=23))
    with pytest.raises(KeyboardInterrupt):
        _build(out, _quickdraw(tmp_path), shard_size=4)
    assert not out.exists()
    finished = sorted(p.parent.name for p in work_folder(out).glob(f"*/*/{DONE}"))
    assert finished == [f"{i:05d}" for i in range(5)]  # units 0..19 are in finished shards; 20..22 are lost
    # Damage one finished shard: it is rebuilt, the others are reused.
    frame = next((work_folder(out) / "quickdraw" / "00001").rglob("*.png"))
    frame.write_bytes(b"not the frame")
    calls.clear()
    monkeypatch.setattr(qd, "build", counting)
    _build(out, _quickdraw(tmp_path), shard_size=4)
    assert len(calls) == 40 - 16  # shards 0, 2, 3 and 4 reused
    assert _sums(out) == _sums(reference)
    assert not work_folder(out).exists()


def test_a_build_interrupted_while_assembling_keeps_its_shards(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The parent moves the shards' files into the release; an interrupt then puts them back, so the rerun
    builds nothing and gives the uninterrupted release."""
    reference = _build(tmp_path / "ref", _quickdraw(tmp_path), shard_size=4)
    import pb_build.assemble as assemble_module

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(assemble_module, "write_card_assets", interrupted)  # after every shard has been moved
    out = tmp_path / "rel"
    with pytest.raises(KeyboardInterrupt):
        _build(out, _quickdraw(tmp_path), shard_size=4)
    assert not out.exists() and len(list(work_folder(out).glob(f"*/*/{DONE}"))) == 10
    monkeypatch.undo()
    calls = _count_builds(monkeypatch)
    _build(out, _quickdraw(tmp_path), shard_size=4)
    assert calls == [] and _sums(out) == _sums(reference)


def test_shards_of_a_running_build_are_not_shared(tmp_path: Path):
    out = tmp_path / "rel"
    work = work_folder(out)
    work.mkdir()
    owner = {"pid": os.getppid(), "host": socket.gethostname()}  # a process that still runs
    work.with_name(work.name + ".owner").write_text(json.dumps(owner))
    with pytest.raises(PbBuildError, match="another pb-build run is building .*rel"):
        _build(out, _quickdraw(tmp_path))
    assert work.is_dir() and not out.exists()


def test_no_resume_rebuilds_everything_and_other_inputs_are_not_reused(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch):
    out = tmp_path / "rel"
    work = work_folder(out)
    real_build, calls = qd.build, []

    def interrupted(unit, config):
        calls.append(unit.key)
        if len(calls) == 20:
            raise KeyboardInterrupt
        return real_build(unit, config)

    monkeypatch.setattr(qd, "build", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _build(out, _quickdraw(tmp_path), shard_size=8)
    assert len(list(work.glob(f"*/*/{DONE}"))) == 2
    monkeypatch.undo()
    calls = _count_builds(monkeypatch)
    job = _quickdraw(tmp_path)[0]
    other_seed = [dataclasses.replace(job, config=dataclasses.replace(job.config, seed=5))]
    _build(out, other_seed, shard_size=8, resume=True)  # finished shards of seed 0 do not match seed 5
    assert len(calls) == 40
    calls.clear()
    _build(out, other_seed, shard_size=8, overwrite=True, resume=False)
    assert len(calls) == 40


def _copied_sample(base: Path) -> list[SourceJob]:
    """The QuickDraw job over a copy of the bundled sample (the tests below change its raw files)."""
    raw = shutil.copytree(qd.sample_dir(), base / "raw-copy")
    return [SourceJob(qd, qd.Config(), raw)]


def _interrupt_after_hashing(out: Path, jobs: list[SourceJob], monkeypatch: pytest.MonkeyPatch) -> dict:
    """Build ``out`` in shards of 8 and interrupt it on the 20th sample, once the raw inventory is recorded;
    return that record (two finished shards are left)."""
    record = work_folder(out) / "quickdraw" / inventory.RECORD
    real_build, calls = qd.build, []

    def interrupted(unit, config):
        calls.append(unit.key)
        if len(calls) == 20:
            for _ in range(600):  # the child process hashing the raw files finishes in milliseconds here
                if json.loads(record.read_text()).get("sha256"):
                    break
                time.sleep(0.05)
            raise KeyboardInterrupt
        return real_build(unit, config)

    monkeypatch.setattr(qd, "build", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _build(out, jobs, shard_size=8)
    monkeypatch.undo()
    assert len(list(work_folder(out).glob(f"*/*/{DONE}"))) == 2
    return json.loads(record.read_text())


def _rewrite_keeping_size_and_time(file: Path) -> None:
    """Change one coordinate of the first drawing, keeping the file's size and modification time."""
    before = file.stat()
    text = file.read_text()
    at = text.index('"drawing"')
    at = next(i for i in range(at, len(text)) if text[i].isdigit())
    text = text[:at] + ("8" if text[at] == "9" else str(int(text[at]) + 1)) + text[at + 1:]
    file.write_text(text)
    os.utime(file, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert file.stat().st_size == before.st_size


def test_resume_rebuilds_the_shards_of_changed_raw_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Shard fingerprints no longer hold the raw digests (the raw files are hashed while the shards build):
    a rerun checks the recorded inventory digest instead, so a raw file changed with its size and time kept
    is noticed."""
    jobs = _copied_sample(tmp_path)
    out = tmp_path / "rel"
    recorded = _interrupt_after_hashing(out, jobs, monkeypatch)
    assert recorded["sha256"] and recorded["quick"]
    _rewrite_keeping_size_and_time(next(jobs[0].raw.glob("*.ndjson")))
    calls = _count_builds(monkeypatch)
    _build(out, jobs, shard_size=8)
    assert len(calls) == 40  # nothing reused
    monkeypatch.undo()
    fresh = _build(tmp_path / "fresh", jobs, shard_size=8)
    assert _sums(out) == _sums(fresh)
    assert manifests.read(out).entry("quickdraw").raw == manifests.read(fresh).entry("quickdraw").raw


def test_shards_of_a_build_stopped_before_its_hashing_ended_are_checked_by_size_and_time(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    jobs = _copied_sample(tmp_path)
    reference = _build(tmp_path / "ref", jobs, shard_size=8)
    out = tmp_path / "rel"
    record = work_folder(out) / "quickdraw" / inventory.RECORD
    # As if interrupted before the raw files were hashed: only the quick fingerprint is recorded.
    inventory.write_record(record, _interrupt_after_hashing(out, jobs, monkeypatch)["quick"], None)
    calls = _count_builds(monkeypatch)
    _build(out, jobs, shard_size=8)
    assert len(calls) == 40 - 16 and _sums(out) == _sums(reference)  # same files: both shards reused
    monkeypatch.undo()
    again = tmp_path / "again"
    record = work_folder(again) / "quickdraw" / inventory.RECORD
    inventory.write_record(record, _interrupt_after_hashing(again, jobs, monkeypatch)["quick"], None)
    raw_file = next(jobs[0].raw.glob("*.ndjson"))
    os.utime(raw_file, ns=(raw_file.stat().st_atime_ns, raw_file.stat().st_mtime_ns + 10**9))  # touched
    calls = _count_builds(monkeypatch)
    _build(again, jobs, shard_size=8)
    assert len(calls) == 40 and _sums(again) == _sums(reference)


def test_a_raw_file_that_cannot_be_hashed_is_an_error_naming_it(tmp_path: Path):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "a.ndjson").write_text("{}\n")
    with pytest.raises(OSError) as err:  # found missing before hashing starts
        inventory.hash_inventory(tmp_path / "work", raw, [raw / "a.ndjson", raw / "gone.ndjson"], False)
    assert err.value.errno == errno.ENOENT and err.value.filename == str(raw / "gone.ndjson")
    (raw / "b.ndjson").mkdir()  # found by the hashing process: it cannot be read
    hashing = inventory.hash_inventory(tmp_path / "work", raw, [raw / "a.ndjson", raw / "b.ndjson"], False)
    with pytest.raises(OSError) as err:
        hashing.result()
    assert err.value.errno == errno.EISDIR and err.value.filename == str(raw / "b.ndjson")
    ok = inventory.hash_inventory(tmp_path / "work2", raw, [raw / "a.ndjson"], False).result()
    assert ok == [{"path": "a.ndjson", "size": 3, "sha256": sha256_file(raw / "a.ndjson")}]


# --------------------------------------------------------------------------------------------------------- Ray


@pytest.mark.slow  # starts a Ray instance; needs the optional ray extra
def test_ray_distributor_gives_the_same_release(tmp_path: Path):
    ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'pb-build[ray]')")
    local = _build(tmp_path / "local", _quickdraw(tmp_path), shard_size=6, workers=1)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        on_ray = _build(tmp_path / "ray", _quickdraw(tmp_path), shard_size=6, workers=2, distributor="ray")
    finally:
        ray.shutdown()
    assert _sums(on_ray) == _sums(local)


# ------------------------------------------------------------------------------------------------------ faults


@dataclasses.dataclass(frozen=True)
class DyingConfig(qd.Config):
    """A QuickDraw config whose worker process kills itself (as the OOM killer would) on its third sample."""

    def __getattribute__(self, name: str):
        if name == "seed" and multiprocessing.parent_process() is not None:
            count = int(os.environ.get("PB_TEST_SEEDS", "0")) + 1
            os.environ["PB_TEST_SEEDS"] = str(count)
            if count == 3:
                os.kill(os.getpid(), signal.SIGKILL)
        return object.__getattribute__(self, name)


def test_a_killed_worker_fails_the_build_naming_the_sample(tmp_path: Path):
    out = tmp_path / "rel"
    job = SourceJob(qd, DyingConfig(), qd.sample_dir(), sample=True)
    with pytest.raises(PbBuildError) as err:
        _build(out, [job], workers=2, shard_size=10)
    message = str(err.value)
    assert message.startswith("quickdraw: the worker building sample quickdraw/") and "SIGKILL" in message
    assert "out of memory" in message and not out.exists()
    key = message.split("sample ", 1)[1].split(" died")[0]
    order = [u.key for u in qd.plan(qd.sample_dir(), qd.Config(), None).units]
    assert order.index(key) % 10 == 2  # the third sample of a shard: where that worker killed itself


def test_workers_that_cannot_start_fail_the_build_with_one_clear_error(tmp_path: Path):
    """A script read from standard input: each worker tries to re-import the main script from '<stdin>' and dies
    before its first task, which the pool may report at a later submit rather than from a task's result."""
    out = tmp_path / "rel"
    script = ("import sys\nfrom pathlib import Path\nfrom pb_build.build import SourceJob, build_release\n"
              "from pb_build.builders import get_builder\nfrom pb_build.errors import PbBuildError\n"
              "qd = get_builder('quickdraw')\n"
              "try:\n"
              f"    build_release(Path({str(out)!r}), [SourceJob(qd, qd.Config(), qd.sample_dir(), sample=True)],\n"
              "                  workers=2, shard_size=5, progress=False)\n"
              "except PbBuildError as err:\n"
              "    print('ERROR:', err)\n"
              "    sys.exit(3)\n")
    result = subprocess.run([sys.executable, "-"], input=script, capture_output=True, text=True, cwd=tmp_path,
                            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert result.returncode == 3, result.stderr[-2000:]
    assert result.stdout.startswith("ERROR: ") and "died (exited with status " in result.stdout
    assert "nothing was written at the target" in result.stdout and not out.exists()


def test_full_disk_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    def full(path, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr("pb_build.writers.official._store", full)
    out = tmp_path / "rel"
    with pytest.raises(PbBuildError, match="No space left on device") as err:
        _build(out, _quickdraw(tmp_path), workers=1)
    assert str(err.value).startswith(str(tmp_path)) and "quickdraw shard 0" in str(err.value)
    assert not out.exists() and not work_folder(out).exists()


def test_unwritable_target_is_one_line(tmp_path: Path):
    (tmp_path / "file").write_text("x")
    result = CliRunner().invoke(main, ["quickdraw", "--sample", "--out", str(tmp_path / "file" / "rel"),
                                       "--quiet", "--workers", "1"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1 and str(tmp_path / "file") in result.output


# -------------------------------------------------------------------------------------------- QuickDraw at scale


def test_quickdraw_reads_a_category_file_only_until_its_pool_is_full(tmp_path: Path):
    """A category file far bigger than the pool: reading stops once the pool is filled, so a broken tail (standing
    in for hundreds of MB more) is never parsed."""
    from conftest import drawing_record, square_strokes, write_ndjson

    raw = tmp_path / "raw"
    raw.mkdir()
    write_ndjson(raw / "cat.ndjson", [drawing_record("cat", str(i), square_strokes(3)) for i in range(30)])
    with open(raw / "cat.ndjson", "a") as handle:
        handle.write("{not json\n" * 1000)
    job = SourceJob(qd, qd.Config(per_class=5, pool=30), raw)
    [report] = build_release(tmp_path / "rel", [job], progress=False)
    assert report.samples == 5 and not report.skipped
