"""An eighth source registered through the ``pb_build.sources`` entry-point group, with no edit to pb_build/.

The source (``tests/third_party/pb_upright.py``) exists only in the test tree. A temporary distribution
(``<name>.dist-info`` with ``METADATA`` and ``entry_points.txt``) on ``sys.path`` registers it, in this process and,
through ``PYTHONPATH``, in the ``pb-build`` subprocesses; it then builds, verifies, loads with ``load_dataset``,
round-trips through the official layout and scores 100% under ``pb-build eval --policy oracle``. Sources that
break the contract are reported with their name and the cause.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from datasets import load_dataset

from pb_build import builders
from pb_build.build import SourceJob, build_release
from pb_build.errors import BadRecord
from pb_build.manifests.manifest import read_dict as read_manifest
from pb_build.verify import verify_release
from pb_build.writers.native import from_row, read_rows

REPO = Path(__file__).resolve().parent.parent
THIRD_PARTY = Path(__file__).resolve().parent / "third_party"
sys.path.insert(0, str(THIRD_PARTY))
import pb_upright  # noqa: E402  (lives beside the tests, not in pb_build)


def write_distribution(site: Path, dist: str, entry_points: dict[str, str]) -> Path:
    """A minimal installed distribution in ``site`` whose entry points register sources."""
    info = site / f"{dist.replace('-', '_')}-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1.0\n", encoding="utf-8")
    lines = [f"[{builders.GROUP}]", *(f"{name} = {target}" for name, target in entry_points.items())]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return site


@pytest.fixture
def registered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Install ``entry_points`` (name -> target) as a distribution; yields the environment for subprocesses."""

    def install(entry_points: dict[str, str], dist: str = "pb-upright") -> dict[str, str]:
        site = write_distribution(tmp_path / f"site-{dist}", dist, entry_points)
        monkeypatch.syspath_prepend(str(site))
        monkeypatch.setattr(builders, "REGISTRY", builders.Registry())
        path = os.pathsep.join([str(REPO), str(THIRD_PARTY), str(site)])
        return {**os.environ, "PYTHONPATH": path}

    return install


def pb_build(env: dict[str, str], *args: str | Path) -> subprocess.CompletedProcess:
    command = [sys.executable, "-c", "from pb_build.cli import main; main()", *map(str, args)]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)


def native_episodes(release: Path) -> dict[int, object]:
    entry = read_manifest(release)["sources"][0]
    return {row["id"]: from_row(row) for row in read_rows([release / p for p in entry["files"]["native"]])}


def test_entry_point_source_builds_verifies_loads_round_trips_and_scores_100(registered, tmp_path: Path) -> None:
    env = registered({"upright": "pb_upright:SOURCE"})
    source = builders.get_builder("upright")
    assert source.origin == "pb-upright" and isinstance(source, pb_upright.UprightSource)

    listed = pb_build(env, "list")
    assert listed.returncode == 0, listed.stderr
    line = next(x for x in listed.stdout.splitlines() if x.startswith("upright "))
    assert "Upright" in line and "pb-upright" in line
    assert any(x.startswith("quickdraw ") and "built-in" in x for x in listed.stdout.splitlines())

    raw = pb_upright.make_raw(tmp_path / "raw")
    one, two = tmp_path / "one", tmp_path / "two"
    for out, workers in ((one, 1), (two, 2)):
        done = pb_build(env, "upright", "--raw", raw, "--out", out, "--workers", workers, "--quiet", "--size", 24)
        assert done.returncode == 0, done.stderr
    assert (one / "SHA256SUMS").read_bytes() == (two / "SHA256SUMS").read_bytes()
    assert verify_release(one).problems == []
    checked = pb_build(env, "verify", one, "--quiet")
    assert checked.returncode == 0, checked.stdout + checked.stderr

    ds = load_dataset(str(one), "upright", split="test")
    assert len(ds) == 10 and [len(r["frames"]) for r in ds] == [3] * 10

    # official export -> import gives the episode back (provenance aside), read from the files on disk
    test_dir = one / "test"
    records = [json.loads(x) for x in (test_dir / "Upright_preprocessed.jsonl").read_text().splitlines()]
    natives = native_episodes(one)
    for record in records:
        imported = source.import_record(record, test_dir)
        native = natives[record["id"]]
        assert [f.data for f in imported.official.files] == list(native.frames)
        bare = dataclasses.replace(imported, official=dataclasses.replace(imported.official, files=()))
        expected = dataclasses.replace(native, official=dataclasses.replace(native.official, files=()),
                                       meta={"spec": native.meta["spec"]})
        assert bare == expected
    assert natives[0].spec.reference_prompt == "Which shape is this?" and natives[0].spec.alias == "UP"

    official_only = tmp_path / "official"
    shutil.copytree(test_dir, official_only / "test")
    for folder, name in ((one, "upright"), (official_only, "UP")):
        run = tmp_path / f"run-{folder.name}"
        done = pb_build(env, "eval", folder, "--source", name, "--policy", "oracle", "--out", run, "--quiet")
        assert done.returncode == 0, done.stderr
        summary = json.loads((run / "summary.json").read_text())
        assert summary["sources"]["UP"] == {**summary["sources"]["UP"], "acc": 100.0, "n": 10, "failed": 0}


@pytest.mark.parametrize(("target", "name", "cause"), [
    ("pb_upright:Incomplete", "incomplete", "breaks the source contract: info must be a SourceInfo"),
    ("pb_upright:Clash", "quickdraw", "clashes with the built-in source of that name"),
    ("pb_no_such_module:SOURCE", "ghost", "failed to import: ModuleNotFoundError"),
    ("pb_upright:SHAPES", "shapes", "breaks the source contract: is a tuple"),
    ("pb_upright", "bare-module", "breaks the source contract: missing attribute(s) name, VERSION, RELEASE_NOTES"),
    ("pb_upright:SOURCE", "other-name", "is named 'upright'; the entry point must use the source's name"),
])
def test_registration_errors_name_the_source_and_the_cause(registered, target: str, name: str, cause: str) -> None:
    env = registered({name: target}, dist="pb-broken")
    assert cause in builders.REGISTRY.errors[name] and repr(name) in builders.REGISTRY.errors[name]
    assert "pb-broken" in builders.REGISTRY.errors[name]
    assert builders.get_builder("rod").origin == "built-in"  # the built-ins still work
    if name != "quickdraw":
        with pytest.raises(builders.PbBuildError, match=cause.split(":")[0]):
            builders.get_builder(name)
    listed = pb_build(env, "list")
    assert listed.returncode == 1
    assert [line for line in listed.stderr.splitlines() if cause in line and name in line], listed.stderr
    assert "Traceback" not in listed.stderr


def test_episode_that_does_not_validate_stops_the_build_naming_the_source(registered, tmp_path: Path) -> None:
    env = registered({"upright-bad": "pb_upright:BadEpisodes"})
    raw = pb_upright.make_raw(tmp_path / "raw", per_shape=1)
    done = pb_build(env, "upright-bad", "--raw", raw, "--out", tmp_path / "out", "--workers", 1, "--quiet")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "source upright-bad" in done.stderr and "needs 4 categories, has 3" in done.stderr
    assert not (tmp_path / "out").exists()


def test_a_module_shaped_like_a_builder_registers_and_builds(registered, tmp_path: Path) -> None:
    registered({"upright-module": "pb_upright_module"}, dist="pb-upright-module")
    source = builders.get_builder("upright-module")
    assert isinstance(source, builders.ModuleSource) and source.origin == "pb-upright-module"
    raw = pb_upright.make_raw(tmp_path / "raw", per_shape=1)
    out = tmp_path / "out"
    build_release(out, [SourceJob(source, source.Config(), raw)], workers=1, progress=False)
    assert verify_release(out).problems == []
    assert native_episodes(out)[0].spec.alias == "UP"


def test_a_plan_with_a_duplicate_key_fails_naming_it(tmp_path: Path) -> None:
    class Doubled(pb_upright.UprightSource):
        def plan(self, raw, config, on_bad):
            planned = super().plan(raw, config, on_bad)
            units = list(planned.units)
            return dataclasses.replace(planned, units=[*units, units[3]])

    source = Doubled()
    raw = pb_upright.make_raw(tmp_path / "raw", per_shape=1)
    with pytest.raises(BadRecord, match=rf"^{units_key(source, raw, 3)}: duplicate sample key$"):
        build_release(tmp_path / "out", [SourceJob(source, source.Config(), raw)], workers=1, progress=False)
    assert not (tmp_path / "out").exists()


def units_key(source, raw: Path, index: int) -> str:
    return list(pb_upright.UprightSource.plan(source, raw, source.Config(), None).units)[index].key
