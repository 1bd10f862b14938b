"""Release folders: layout, loading, verify, determinism, atomicity and bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import QD_FIXTURES, drawing_record, square_strokes, write_ndjson
from datasets import load_dataset

from pb_build.build import SourceJob, build_release
from pb_build.builders import quickdraw
from pb_build.errors import BadRecord, PbBuildError
from pb_build.manifests.manifest import read_dict as read_manifest
from pb_build.manifests.provenance import read_sums
from pb_build.verify import verify_release


def build(raw: Path, out: Path, workers: int = 1, **config) -> Path:
    job = SourceJob(quickdraw, quickdraw.Config(**config), raw)
    build_release(out, [job], workers=workers, progress=False, skip_bad=config.pop("skip_bad", False))
    return out


def records(release: Path) -> list[dict]:
    lines = (release / "test" / "QuickDraw_preprocessed.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_release_layout_verify_and_load(small_raw: Path, tmp_path: Path) -> None:
    out = build(small_raw, tmp_path / "rel", per_class=4, pool=6)
    names = sorted(p.relative_to(out).as_posix() for p in out.iterdir())
    assert names == ["README.md", "SHA256SUMS", "manifest.json", "previews", "quickdraw", "test"]
    recs = records(out)
    assert [r["id"] for r in recs] == list(range(8))
    for r in recs:
        for k in range(r["num_images"]):
            assert (out / "test" / r["image_template"].format(image=str(k).zfill(4))).is_file()
    result = verify_release(out)
    assert result.problems == []
    assert result.sources[0].oracle_correct == result.sources[0].rows == 8
    sums = read_sums(out)
    assert "manifest.json" in sums and "README.md" in sums and "SHA256SUMS" not in sums
    ds = load_dataset(str(out), "quickdraw", split="test")
    assert len(ds) == 8
    row = ds[0]
    assert row["frames"][0].size == (256, 256)
    assert row["official_record"] == json.dumps(recs[0], ensure_ascii=False)
    assert row["states"][-1]["valid"] == [] and row["states"][0]["targets"] == [1]
    manifest = read_manifest(out)
    entry = manifest["sources"][0]
    assert entry["parameters"]["per_class"] == 4 and entry["seed"] == 0
    assert entry["counts"]["samples"] == 8
    assert {f["path"] for f in entry["raw"]["files"]} == {"cat.ndjson", "The Eiffel Tower.ndjson"}
    card = (out / "README.md").read_text()
    assert "config_name: quickdraw" in card and "CC BY 4.0" in card and "num_examples: 8" in card


def test_same_seed_is_byte_identical_and_other_seed_differs(small_raw: Path, tmp_path: Path) -> None:
    a = build(small_raw, tmp_path / "a", per_class=3, pool=6)
    b = build(small_raw, tmp_path / "b", per_class=3, pool=6, seed=0)
    c = build(small_raw, tmp_path / "c", per_class=3, pool=6, seed=1)
    assert (a / "SHA256SUMS").read_bytes() == (b / "SHA256SUMS").read_bytes()
    assert (a / "SHA256SUMS").read_bytes() != (c / "SHA256SUMS").read_bytes()
    keys = lambda rel: read_manifest(rel)["sources"][0]["keys"]  # noqa: E731
    assert keys(a) != keys(c), "a new seed must resample the drawings"


def test_the_streamed_manifest_is_the_plain_json_text(small_raw: Path, tmp_path: Path) -> None:
    from pb_build.manifests import manifest as manifests

    out = build(small_raw, tmp_path / "rel", per_class=3, pool=6)
    manifest = manifests.read(out)
    assert (out / "manifest.json").read_text(encoding="utf-8") == manifests.dumps(manifest.to_dict())
    # Raw files the direct formatter takes and ones it hands to json (odd strings, a bool, another shape)
    entry = manifest.sources[0]
    entry.raw.files = [{"path": 'odd "näme"\\ \u2028.ndjson', "sha256": "ab", "size": 3},
                       {"path": "b", "sha256": "c", "size": True},
                       {"path": "c", "sha256": "d", "size": 1, "extra": [1, {"x": None, "y": 0.5}]},
                       *entry.raw.files]
    expected = manifests.dumps(manifest.to_dict())
    keys, entry.keys = entry.keys, []
    files = entry.raw.files
    (tmp_path / "again").mkdir()
    manifests.write_streaming(tmp_path / "again", manifest, {entry.source: lambda: iter(keys)})
    assert (tmp_path / "again" / "manifest.json").read_text(encoding="utf-8") == expected
    assert entry.raw.files is files


def test_any_number_of_workers_gives_the_same_bytes(small_raw: Path, tmp_path: Path) -> None:
    one = build(small_raw, tmp_path / "one", workers=1, per_class=5, pool=6)
    two = build(small_raw, tmp_path / "two", workers=2, per_class=5, pool=6)
    assert (one / "SHA256SUMS").read_bytes() == (two / "SHA256SUMS").read_bytes()


def test_a_sample_does_not_depend_on_its_neighbours(small_raw: Path, tmp_path: Path) -> None:
    before = build(small_raw, tmp_path / "before", per_class=6, pool=10)
    cat = small_raw / "cat.ndjson"
    lines = cat.read_text().splitlines()
    extra = json.dumps(drawing_record("cat", "5000000000000999", square_strokes(4, 3)), separators=(",", ":"))
    cat.write_text("\n".join([lines[0], extra, *lines[2:]]) + "\n")  # drop one drawing, add another
    after = build(small_raw, tmp_path / "after", per_class=6, pool=10)
    by_key = lambda rel: {r["image_template"]: {k: v for k, v in r.items() if k != "id"} for r in records(rel)}  # noqa: E731
    old, new = by_key(before), by_key(after)
    shared = set(old) & set(new)
    assert len(shared) == len(old) - 1
    assert all(old[k] == new[k] for k in shared)


def test_real_fixture_release_verifies_and_loads(tmp_path: Path) -> None:
    out = build(QD_FIXTURES / "simplified", tmp_path / "rel", per_class=10, pool=25)
    result = verify_release(out)
    assert result.problems == []
    ds = load_dataset(str(out), "quickdraw", split="test")
    assert len(ds) == 40 == result.sources[0].rows
    recs = records(out)
    assert {r["answer"] for r in recs} == {"Apple.", "Banana.", "Cat.", "The eiffel tower."}
    # Unrecognised and single-stroke drawings never enter the release.
    chosen = {r["image_template"].split("/")[2] for r in recs}
    for path in (QD_FIXTURES / "simplified").glob("*.ndjson"):
        for line in path.read_text().splitlines():
            d = json.loads(line)
            if d["key_id"] in chosen:
                assert d["recognized"] and len(d["drawing"]) >= 2
    assert all(2 <= r["num_images"] <= 5 and r["reference_image"] == r["num_images"] - 1 for r in recs)


def test_failed_build_leaves_nothing(small_raw: Path, tmp_path: Path) -> None:
    (small_raw / "cat.ndjson").write_text('{"word": "cat", oops\n')
    out = tmp_path / "rel"
    with pytest.raises(BadRecord, match=r"cat\.ndjson:1: malformed JSON"):
        build(small_raw, out)
    assert not out.exists()
    assert list(tmp_path.iterdir()) == [small_raw]


def test_interrupted_build_leaves_nothing(small_raw: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"n": 0}
    real_build = quickdraw.build

    def interrupted(unit, config):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real_build(unit, config)

    monkeypatch.setattr(quickdraw, "build", interrupted)
    with pytest.raises(KeyboardInterrupt):
        build(small_raw, tmp_path / "rel")
    assert list(tmp_path.iterdir()) == [small_raw]


def test_skip_bad_counts_and_records_bad_records(small_raw: Path, tmp_path: Path) -> None:
    cat = small_raw / "cat.ndjson"
    cat.write_text(cat.read_text() + '{"broken\n' + json.dumps(drawing_record("cat", "77", [])) + "\n")
    write_ndjson(small_raw / "catt.ndjson", [drawing_record("catt", "1", square_strokes(3))])
    job = SourceJob(quickdraw, quickdraw.Config(per_class=6, pool=10), small_raw)
    [report] = build_release(tmp_path / "rel", [job], progress=False, skip_bad=True)
    assert report.samples == 12
    causes = sorted((s["path"], s["line"], s["cause"].split(":")[0]) for s in report.skipped)
    assert causes == [("cat.ndjson", 7, "malformed JSON"), ("cat.ndjson", 8, "drawing has no strokes"),
                      ("catt.ndjson", None, "unknown category 'catt' (not one of the 345 QuickDraw categories)")]
    entry = read_manifest(tmp_path / "rel")["sources"][0]
    assert entry["counts"]["skipped"] == 3 and len(entry["skipped"]) == 3
    assert verify_release(tmp_path / "rel").problems == []


def test_existing_targets(small_raw: Path, tmp_path: Path) -> None:
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(PbBuildError, match="exists and is not a pb-build release"):
        build(small_raw, foreign)
    assert (foreign / "notes.txt").read_text() == "mine"
    out = build(small_raw, tmp_path / "rel", per_class=2)
    with pytest.raises(PbBuildError, match="pass --overwrite"):
        build(small_raw, out, per_class=3)
    job = SourceJob(quickdraw, quickdraw.Config(per_class=3), small_raw)
    build_release(out, [job], progress=False, overwrite=True)
    assert len(records(out)) == 6
    assert sorted(p.name for p in tmp_path.iterdir()) == ["foreign", "raw", "rel"]


def test_verify_reports_tampering(small_raw: Path, tmp_path: Path) -> None:
    out = build(small_raw, tmp_path / "rel", per_class=2)
    recs = records(out)
    frame = lambda i, k: out / "test" / recs[i]["image_template"].format(image=f"{k:04d}")  # noqa: E731
    frame(2, 1).write_bytes(b"not a png")
    shutil.rmtree(frame(3, 0).parent)
    jsonl = out / "test" / "QuickDraw_preprocessed.jsonl"
    lines = jsonl.read_text().splitlines()
    lines[1] = json.dumps({**recs[1], "answer": "Horse."})
    jsonl.write_text("\n".join(lines) + "\n")
    problems = "\n".join(verify_release(out).problems)
    assert "checksum does not match" in problems
    assert "does not decode" in problems
    assert "needs 4 categories including the answer" in problems
    assert "does not exist" in problems
    assert "listed in SHA256SUMS but missing" in problems


def test_raw_and_binary_formats_build_verified_releases(tmp_path: Path) -> None:
    from pb_build.raw.quickdraw import pack_binary, read_drawings

    raw_dir = tmp_path / "rawfmt"
    raw_dir.mkdir()
    shutil.copy(QD_FIXTURES / "raw" / "cat.first3.ndjson", raw_dir / "cat.ndjson")
    out = build(raw_dir, tmp_path / "raw-rel", per_class=3, pool=3)
    assert verify_release(out).problems == [] and len(records(out)) == 3
    assert read_manifest(out)["sources"][0]["parameters"]["format"] == "auto"

    bin_dir = tmp_path / "binfmt"
    bin_dir.mkdir()
    drawings = list(read_drawings(QD_FIXTURES / "simplified" / "banana.ndjson"))
    (bin_dir / "banana.bin").write_bytes(pack_binary(drawings))
    out = build(bin_dir, tmp_path / "bin-rel", per_class=5, pool=25)
    assert verify_release(out).problems == [] and len(records(out)) == 5
    # The same drawings from ndjson and from .bin give the same official records.
    nd_dir = tmp_path / "ndfmt"
    nd_dir.mkdir()
    shutil.copy(QD_FIXTURES / "simplified" / "banana.ndjson", nd_dir)
    assert records(build(nd_dir, tmp_path / "nd-rel", per_class=5, pool=25)) == records(out)
