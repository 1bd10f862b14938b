"""Shared fixtures: isolated caches, the real raw samples in ``tests/data``, and raw-file makers."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

try:
    from provision import provide_imagecorruptions
except ImportError:  # tests/ imported as a package
    from tests.provision import provide_imagecorruptions

REPO = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"  # small real raw samples; origin and licences in data/ORIGIN.md
QD_FIXTURES = DATA / "quickdraw"

# The ImageNet-C corruption tests need imagecorruptions, which no extra can install (see provision.py).
IMAGECORRUPTIONS_PROBLEM = provide_imagecorruptions()

# Evaluator tests need torch, which the test extra leaves out: on Linux, PyPI's torch brings GBs of CUDA wheels.
EVAL_HINT = ("install a CPU torch first: pip install torch --index-url https://download.pytorch.org/whl/cpu "
             "(the test extra brings transformers)")

# With PB_FAIL_ON_SKIP=1 (set by .ci/run) a skip fails the session unless the test is marked slow or needs a GPU.
ALLOWED_SKIP = re.compile(r"\b(GPU|CUDA)\b", re.IGNORECASE)
_unexpected_skips: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if not report.skipped or hasattr(report, "wasxfail"):
        return
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    if "slow" not in report.keywords and not ALLOWED_SKIP.search(reason):
        _unexpected_skips.append(f"{report.nodeid}: {reason}")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if os.environ.get("PB_FAIL_ON_SKIP") == "1" and _unexpected_skips:
        terminalreporter.section("skips that PB_FAIL_ON_SKIP=1 does not allow (only slow or GPU tests may skip)")
        for line in _unexpected_skips:
            terminalreporter.write_line(line)


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if os.environ.get("PB_FAIL_ON_SKIP") == "1" and _unexpected_skips and exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """No network, no user caches, no tokens."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(home / "hf"))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(home / "hf" / "datasets"))
    monkeypatch.setenv("PB_BUILD_CACHE", str(home / "pb-build"))
    monkeypatch.delenv("HF_TOKEN", raising=False)


def drawing_record(word: str, key_id: str, strokes: list, recognized: bool = True) -> dict:
    """A record in the QuickDraw simplified ndjson format."""
    return {"word": word, "countrycode": "ZZ", "timestamp": "2017-03-01 10:00:00.1234 UTC",
            "recognized": recognized, "key_id": key_id, "drawing": strokes}


def square_strokes(n: int, offset: int = 0) -> list:
    """``n`` small distinct strokes with integer coordinates in 0..255."""
    return [[[10 + 20 * i + offset, 25 + 20 * i + offset], [10 + 7 * i, 200 - 9 * i]] for i in range(n)]


def write_ndjson(path: Path, records: list[dict], trailing_newline: bool = True) -> Path:
    """Write records one per line, the way the real files are laid out."""
    text = "\n".join(json.dumps(r, separators=(",", ":")) for r in records)
    path.write_text(text + ("\n" if trailing_newline else ""), encoding="utf-8")
    return path


@pytest.fixture
def small_raw(tmp_path: Path) -> Path:
    """A raw folder with two categories of 6 recognised multi-stroke drawings each."""
    raw = tmp_path / "raw"
    raw.mkdir()
    for c_idx, word in enumerate(("cat", "The Eiffel Tower")):
        records = [drawing_record(word, str(5_000_000_000_000_000 + c_idx * 100 + i), square_strokes(2 + i % 5, i))
                   for i in range(6)]
        write_ndjson(raw / f"{word}.ndjson", records)
    return raw
