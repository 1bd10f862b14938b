"""The command line: the README commands, summaries, and one-line errors without tracebacks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from pb_build.cli import main


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def test_sample_build_then_verify(tmp_path: Path) -> None:
    out = tmp_path / "release"
    code, output = run("quickdraw", "--sample", "--out", str(out), "--quiet", "--workers", "1")
    assert code == 0, output
    assert "built quickdraw (QuickDraw): 40 samples" in output
    code, output = run("verify", str(out), "--quiet")
    assert code == 0, output
    assert "100.0%" in output and "verified" in output
    card = (out / "README.md").read_text()
    assert "Synthetic demo data" in card


def test_console_script_is_installed() -> None:
    exe = Path(sys.executable).parent / "pb-build"
    proc = subprocess.run([str(exe), "list"], capture_output=True, text=True, check=True)
    assert "quickdraw" in proc.stdout and "QuickDraw" in proc.stdout


def assert_one_line_error(code: int, output: str, *fragments: str) -> None:
    assert code != 0
    assert "Traceback" not in output
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), output
    for fragment in fragments:
        assert fragment in lines[0]


def test_malformed_line_is_one_clear_error(small_raw: Path, tmp_path: Path) -> None:
    cat = small_raw / "cat.ndjson"
    cat.write_text(cat.read_text() + '{"word": "cat"\n')
    out = tmp_path / "rel"
    code, output = run("quickdraw", "--raw", str(small_raw), "--out", str(out), "--quiet", "--workers", "1")
    assert_one_line_error(code, output, f"{cat}:7", "malformed JSON")
    assert not out.exists()


def test_skip_bad_lists_skips_in_the_summary(small_raw: Path, tmp_path: Path) -> None:
    cat = small_raw / "cat.ndjson"
    cat.write_text(cat.read_text() + '{"word": "cat"\n')
    code, output = run("quickdraw", "--raw", str(small_raw), "--out", str(tmp_path / "rel"), "--quiet",
                       "--workers", "1", "--skip-bad")
    assert code == 0, output
    assert "skipped 1 bad record(s)" in output and "cat.ndjson:7: malformed JSON" in output


def test_user_errors(tmp_path: Path, small_raw: Path) -> None:
    code, output = run("quickdraw", "--raw", str(tmp_path / "missing"), "--out", str(tmp_path / "o"), "--quiet")
    assert_one_line_error(code, output, "missing", "does not exist")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "x.txt").write_text("x")
    code, output = run("quickdraw", "--raw", str(small_raw), "--out", str(foreign), "--quiet")
    assert_one_line_error(code, output, "not a pb-build release")
    code, output = run("quickdraw", "--raw", str(small_raw), "--out", str(tmp_path / "o"), "--categories", "dog")
    assert_one_line_error(code, output, "no raw file for category 'dog'")
    code, output = run("quickdraw", "--sample", "--out", str(tmp_path / "o"), "--per-class", "0")
    assert_one_line_error(code, output, "--per-class")
    code, output = run("verify", str(foreign))
    assert_one_line_error(code, output, "not a pb-build release")
    unknown = small_raw / "catt.ndjson"
    unknown.write_text("")
    code, output = run("quickdraw", "--raw", str(small_raw), "--out", str(tmp_path / "o"), "--quiet")
    assert_one_line_error(code, output, "catt.ndjson", "unknown category 'catt'")
    assert not (tmp_path / "o").exists()


def test_verify_fails_on_a_tampered_release(tmp_path: Path) -> None:
    out = tmp_path / "release"
    assert run("quickdraw", "--sample", "--out", str(out), "--quiet", "--workers", "1")[0] == 0
    (out / "README.md").write_text("changed")
    code, output = run("verify", str(out), "--quiet")
    assert code == 1
    assert "README.md: checksum does not match SHA256SUMS" in output


def test_every_registered_source_has_a_command_with_its_parameters() -> None:
    import dataclasses

    from pb_build.builders import REGISTRY

    assert sorted(REGISTRY) == ["changeit", "coco", "imagenet-c", "mvp-n", "quickdraw", "rod", "vsod"]
    code, output = run("list")
    assert code == 0
    for name, builder in REGISTRY.items():
        assert name in output and builder.info.official_name in output
        code, help_text = run(name, "--help")
        assert code == 0, help_text
        for f in dataclasses.fields(builder.Config):
            assert f"--{f.name.replace('_', '-')}" in help_text


def test_sources_without_a_bundled_sample_say_so(tmp_path: Path) -> None:
    from pb_build.builders import REGISTRY

    for name, builder in REGISTRY.items():
        if builder.sample_dir() is not None:
            continue
        code, output = run(name, "--sample", "--out", str(tmp_path / name), "--quiet")
        assert_one_line_error(code, output, f"{name} has no bundled sample")
        assert not (tmp_path / name).exists()


def test_dash_h_is_help_everywhere() -> None:
    code, output = run("-h")
    assert code == 0 and "Usage: main [OPTIONS] COMMAND" in output
    for name in main.commands:
        code, output = run(name, "-h")
        assert code == 0 and f"Usage: main {name}" in output and "-h, --help" in output, name


def test_exit_status_is_0_ok_1_failure_2_usage(tmp_path: Path, small_raw: Path) -> None:
    out = str(tmp_path / "o")
    assert run("list")[0] == 0
    assert run("quickdraw", "--sample", "--out", out, "--no-such-option")[0] == 2  # click's usage error
    assert run("quickdraw", "--sample", "--out", out, "--workers", "0")[0] == 2  # click's bad value
    for args in (("--per-class", "0"), ("--format", "svg")):  # a bad value pb-build checks: usage too
        code, output = run("quickdraw", "--sample", "--out", out, "--quiet", *args)
        assert code == 2 and output.startswith(f"error: {args[0]}"), output
    code, output = run("build", "sample", "--out", out, "--raw", "quickdraw")
    assert code == 2 and "expected SOURCE=DIR" in output
    code, output = run("quickdraw", "--raw", str(tmp_path / "missing"), "--out", out, "--quiet")
    assert code == 1 and "does not exist" in output  # a failure, not a usage error
    assert not Path(out).exists()


def test_list_json() -> None:
    import json

    from pb_build.builders import REGISTRY

    code, output = run("list", "--json")
    assert code == 0, output
    listed = json.loads(output)
    assert [s["name"] for s in listed] == sorted(REGISTRY)
    qd = next(s for s in listed if s["name"] == "quickdraw")
    assert qd == {"name": "quickdraw", "official_name": "QuickDraw", "alias": "QD", "origin": "built-in",
                  "version": REGISTRY["quickdraw"].VERSION, "licence": REGISTRY["quickdraw"].info.licence}


def test_verify_json(tmp_path: Path) -> None:
    import json

    out = tmp_path / "release"
    assert run("quickdraw", "--sample", "--out", str(out), "--quiet", "--workers", "1")[0] == 0
    result = CliRunner().invoke(main, ["verify", str(out), "--quiet", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["ok"] is True and report["problems"] == [] and report["checked_files"] > 0
    [source] = report["sources"]
    assert source["source"] == "quickdraw" and source["rows"] == 40 and source["oracle_accuracy"] == 1.0
    (out / "README.md").write_text("changed")
    result = CliRunner().invoke(main, ["verify", str(out), "--quiet", "--json"])
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["ok"] is False and "README.md: checksum does not match SHA256SUMS" in report["problems"]
