"""verify covers the whole release: files, hashes, records, rows, exported frames, manifest and card."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import drawing_record, square_strokes, write_ndjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pb_build.build import SourceJob, build_release
from pb_build.builders import quickdraw
from pb_build.cli import main
from pb_build.errors import PbBuildError
from pb_build.frames import encode_png
from pb_build.manifests.provenance import SUMS, write_sums
from pb_build.verify import verify_release


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("verify")
    raw = root / "raw"
    raw.mkdir()
    for c, word in enumerate(("cat", "The Eiffel Tower")):
        drawings = [drawing_record(word, str(7_000 + 100 * c + i), square_strokes(2 + i % 4, i)) for i in range(4)]
        write_ndjson(raw / f"{word}.ndjson", drawings)
    out = root / "rel"
    build_release(out, [SourceJob(quickdraw, quickdraw.Config(per_class=3), raw)], workers=1, progress=False)
    return out


@pytest.fixture
def release(built: Path, tmp_path: Path) -> Path:
    out = tmp_path / "rel"
    shutil.copytree(built, out)
    return out


def problems(release: Path) -> str:
    result = verify_release(release)
    assert result.to_json(release)["ok"] is (not result.problems)
    return "\n".join(result.problems)


def first_frame(release: Path, record: int = 0, k: int = 0) -> Path:
    line = (release / "test" / "QuickDraw_preprocessed.jsonl").read_text().splitlines()[record]
    return release / "test" / json.loads(line)["image_template"].format(image=f"{k:04d}")


def test_a_clean_release_has_no_problem(release: Path) -> None:
    assert problems(release) == ""


def test_truncated_parquet_is_a_problem_not_a_traceback(release: Path) -> None:
    shard = next((release / "quickdraw").glob("*.parquet"))
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    write_sums(release)
    found = problems(release)
    assert f"quickdraw/{shard.name}: unreadable parquet" in found
    assert "manifest says 6 samples, found 6 records and 0 rows" in found


def test_frame_swapped_for_another_valid_image_is_caught(release: Path) -> None:
    frame = first_frame(release)
    frame.write_bytes(encode_png(__import__("numpy").full((64, 64, 3), 128, "uint8")))
    write_sums(release)  # the checksums alone no longer catch it
    found = problems(release)
    assert "quickdraw row 0: exported file test/QuickDraw/" in found
    assert "differs from the frame the native row embeds" in found


def test_frames_swapped_within_a_sample_are_caught(release: Path) -> None:
    a, b = first_frame(release, 1, 0), first_frame(release, 1, 1)
    data_a, data_b = a.read_bytes(), b.read_bytes()
    a.write_bytes(data_b)
    b.write_bytes(data_a)
    write_sums(release)
    assert problems(release).count("quickdraw row 1: exported file") == 2


def test_manifest_edit_is_caught(release: Path) -> None:
    manifest = json.loads((release / "manifest.json").read_text())
    manifest["sources"][0]["counts"]["frames"] += 1
    manifest["sources"][0]["keys"][2] = "quickdraw/cat/forged"
    (release / "manifest.json").write_text(json.dumps(manifest, indent=2))
    write_sums(release)
    found = problems(release)
    assert "quickdraw: manifest says" in found and "frames, the native rows hold" in found
    assert "quickdraw row 2: key" in found and "is not the manifest's key for this id" in found


def test_card_edit_is_caught(release: Path) -> None:
    card = release / "README.md"
    card.write_text(card.read_text().replace("num_examples: 6", "num_examples: 60"))
    write_sums(release)
    assert "README.md: the dataset card does not match the manifest" in problems(release)


def test_extra_and_missing_files_are_caught(release: Path) -> None:
    (release / "notes.txt").write_text("extra")
    first_frame(release, 2, 1).unlink()
    found = problems(release)
    assert "notes.txt: not listed in SHA256SUMS" in found
    assert "notes.txt: not part of any source of the manifest" in found
    assert "listed in SHA256SUMS but missing" in found


def test_sums_lines_that_do_not_parse_are_problems(release: Path) -> None:
    sums = release / SUMS
    lines = sums.read_text().splitlines()
    digest, rel = lines[0].split("  ", 1)
    # a path split by a newline, and a line that is not '<sha256>  <path>'
    sums.write_text("\n".join([f"{digest}  {rel[:3]}", rel[3:], "garbage", *lines[1:]]) + "\n")
    found = problems(release)
    assert "SHA256SUMS:2: not a '<sha256>  <path>' line" in found
    assert "SHA256SUMS:3: not a '<sha256>  <path>' line" in found
    assert f"{rel}: not listed in SHA256SUMS" in found


def test_bad_json_and_a_corrupt_png_are_problems(release: Path) -> None:
    first_frame(release, 3, 0).write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    jsonl = release / "test" / "QuickDraw_preprocessed.jsonl"
    jsonl.write_bytes(jsonl.read_bytes() + b"\xff{not json\n")
    found = problems(release)
    assert "QuickDraw_preprocessed.jsonl:7: not JSON" in found
    assert "does not decode" in found


def test_unreadable_manifest_is_one_problem_in_json(release: Path) -> None:
    (release / "manifest.json").write_bytes(b"{\x80")
    run = CliRunner().invoke(main, ["verify", str(release), "--json"])
    body = json.loads(run.output)
    assert run.exit_code == 1 and not body["ok"]
    assert body["problems"] == [f"{release / 'manifest.json'}: not a pb-build manifest (not UTF-8 text: invalid "
                                "start byte at byte 1)"]


def test_verify_json_on_the_command_line(release: Path) -> None:
    ok = CliRunner().invoke(main, ["verify", str(release), "--json"])
    assert ok.exit_code == 0 and json.loads(ok.output)["ok"] is True
    first_frame(release).write_bytes(b"x")
    bad = CliRunner().invoke(main, ["verify", str(release), "--json"])
    body = json.loads(bad.output)
    assert bad.exit_code == 1 and body["ok"] is False
    assert any("checksum does not match" in p for p in body["problems"])
    assert body["sources"][0]["source"] == "quickdraw"


KINDS = ("manifest.json", "SHA256SUMS", "README.md", "test/QuickDraw_preprocessed.jsonl", "quickdraw/",
         "test/QuickDraw/")


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(KINDS), cut=st.floats(min_value=0, max_value=1), junk=st.binary(max_size=40),
       resum=st.booleans())
def test_any_damaged_file_is_a_problem_never_a_traceback(built: Path, tmp_path_factory: pytest.TempPathFactory,
                                                         kind: str, cut: float, junk: bytes, resum: bool) -> None:
    out = tmp_path_factory.mktemp("fuzz") / "rel"
    shutil.copytree(built, out)
    target = next(p for p in sorted(out.rglob("*")) if p.is_file() and p.relative_to(out).as_posix().startswith(kind))
    data = target.read_bytes()
    target.write_bytes(data[: int(len(data) * cut)] + junk)
    if resum and kind != "SHA256SUMS":
        write_sums(out)  # only the content checks can tell now
    try:
        result = verify_release(out)
    except PbBuildError as err:  # a release whose manifest cannot be read is one error
        assert "\n" not in str(err)
        return
    if target.read_bytes() != data and kind != "manifest.json":  # a manifest may change in layout only
        assert result.problems, target
