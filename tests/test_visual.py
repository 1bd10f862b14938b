"""Seeing the data: contact sheets, the static gallery (opened in headless Chromium), card assets and reports.

Releases are built in the tests: the bundled QuickDraw sample, and one release holding every source whose
synthetic raw tree is available. Runs are made with ``pb-build eval``
and scripted policies.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import matplotlib  # noqa: E402,F401  (a dependency: the plots need it)
import pytest
from click.testing import CliRunner
from PIL import Image
from test_cli import assert_one_line_error
from test_eval_support import source_job

from pb_build.build import build_release
from pb_build.cli import main
from pb_build.episode import Episode, linear_states
from pb_build.visual import episodes
from pb_build.visual.card_assets import write_card_assets
from pb_build.visual.runs import classify
from pb_build.visual.sheet import Layout


def run(*args: object) -> tuple[int, str]:
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result.exit_code, result.output


def _sources() -> list[str]:
    return ["quickdraw", "rod", "vsod", "mvp-n", "imagenet-c", "coco", "changeit"]


@pytest.fixture(scope="module")
def qd_release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("qd") / "release"
    code, output = run("quickdraw", "--sample", "--out", out, "--quiet", "--workers", "1")
    assert code == 0, output
    return out


@pytest.fixture(scope="module")
def all_release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("all")
    out = base / "release"
    build_release(out, [source_job(base / s, s) for s in _sources()], workers=1, progress=False)
    return out


def _png(path: Path) -> Image.Image:
    with Image.open(path) as img:
        assert img.format == "PNG"
        img.load()
        return img


# --- contact sheets -------------------------------------------------------------------------------------------


def test_preview_of_the_sample_release(qd_release: Path, tmp_path: Path) -> None:
    layout = Layout()
    code, output = run("preview", qd_release, "--source", "QD", "-n", 5, "--out", tmp_path / "five.png", "--quiet")
    assert code == 0, output
    assert "5 episode(s), ids 0, 1, 2, 3, 4" in output
    code, output = run("preview", qd_release, "--source", "quickdraw", "-n", 2, "--out", tmp_path / "two.png",
                       "--quiet")
    assert code == 0, output
    five, two = _png(tmp_path / "five.png"), _png(tmp_path / "two.png")
    # QuickDraw episodes have at most 5 states, all shown: the width is the text panel plus 5 tiles.
    assert five.width == 2 * layout.pad + layout.text_width + layout.gap + 5 * (layout.tile + layout.gap)
    assert five.width == two.width
    # one row per episode: three more rows make the sheet taller by three row heights
    assert five.height > two.height + 3 * layout.tile
    assert five.getextrema() != ((255, 255),) * 3  # not blank


def test_preview_picks_ids_and_summarises_long_sequences(all_release: Path, tmp_path: Path) -> None:
    code, output = run("preview", all_release, "--source", "vsod", "--ids", "0,5", "--max-states", 4, "--tile", 64,
                       "--out", tmp_path / "vsod.png", "--quiet")
    assert code == 0, output
    assert "ids 0, 5" in output
    img = _png(tmp_path / "vsod.png")
    layout = Layout(tile=64, max_states=4)
    assert img.width <= 2 * layout.pad + layout.text_width + layout.gap + 4 * (layout.tile + layout.gap)


def test_preview_errors_are_one_line(all_release: Path, tmp_path: Path) -> None:
    code, output = run("preview", all_release, "--source", "vsod", "--ids", "3", "--out", tmp_path / "x.png")
    assert_one_line_error(code, output, "no sample id 3", "strong_occlusions=false")
    code, output = run("preview", all_release, "--source", "nope", "--out", tmp_path / "x.png")
    assert_one_line_error(code, output, "source 'nope' is not in this folder")
    (tmp_path / "x.png").write_bytes(b"")
    code, output = run("preview", all_release, "--source", "rod", "--out", tmp_path / "x.png")
    assert_one_line_error(code, output, "exists; pass --overwrite")


def _long_episode(n: int, initial: int = 0) -> Episode:
    return Episode(source="t", key="t/long", prompt="Who?", options=("Wait for it.", "I cannot tell."),
                   categories=("Aa.", "Bb.", "Cc.", "Dd."), answer="Aa.", frames=(b"",) * n,
                   states=linear_states(n, 2, (0,)), reference_frame=n - 1, max_steps=n, initial_state=initial,
                   abstain=(1,))


def test_long_sequences_show_evenly_spaced_states_with_the_initial_and_the_answerable_one() -> None:
    ep = _long_episode(230, initial=3)
    fx = episodes.Facts(0, tuple(range(3, 230)), ("Wait for it.",) * 226, True, (229, 0), (229,))
    picked = episodes.pick_states(ep, fx, 12)
    assert 3 in picked and 229 in picked and 0 in picked
    assert len(picked) <= 12 and picked == sorted(set(picked))
    gaps = [b - a for a, b in zip(picked, picked[1:], strict=False)]
    assert max(gaps) <= 230 // 8
    assert episodes.pick_states(ep, fx, 300) == list(range(230))


def test_facts_follow_the_oracle_path(all_release: Path) -> None:
    data = episodes.load(all_release, "rod", limit=1)
    item = data.items[0]
    fx = episodes.facts(item.sample_id, item.episode)
    assert fx.solved and fx.path[0] == item.episode.initial_state
    assert item.episode.states[fx.path[-1]].frame == item.episode.reference_frame
    assert fx.steps == len(fx.path) - 1 > 0
    assert episodes.compress_moves(("a", "a", "b")) == "a ×2, b"


# --- gallery --------------------------------------------------------------------------------------------------


def _img_sources(page: Path) -> list[str]:
    return re.findall(r'<img src="([^"]+)"', page.read_text(encoding="utf-8"))


def test_gallery_shows_every_source_and_episode(all_release: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    code, output = run("gallery", all_release, "--out", site, "--per-page", 4, "--quiet")
    assert code == 0, output
    manifest = json.loads((all_release / "manifest.json").read_text())
    index = (site / "index.html").read_text()
    for entry in manifest["sources"]:
        name = entry["source"]
        assert f'href="{name}/index.html"' in index
        pages = sorted((site / name).glob("page-*.html"))
        ids = {int(i) for p in pages for i in re.findall(r'id="ep-(\d+)"', p.read_text())}
        data = episodes.load(all_release, name)
        assert ids == {i.sample_id for i in data.items}, name
        assert len(pages) == -(-len(ids) // 4)
        assert len(list((site / name / "plots").glob("*.png"))) == 4
        for page in [site / name / "index.html", *pages]:  # every image the pages name exists
            for src in _img_sources(page):
                assert (page.parent / src).is_file(), (page, src)
    for thumb in site.rglob("thumbs/*"):
        with Image.open(thumb) as img:
            assert max(img.size) <= 96
    code, output = run("gallery", all_release, "--out", site, "--quiet")
    assert_one_line_error(code, output, "exists and is not empty")


def test_gallery_caps_episodes_per_source(qd_release: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    code, output = run("gallery", qd_release, "--out", site, "--max-episodes", 5, "--per-page", 2, "--thumb", 48,
                       "--quiet")
    assert code == 0, output
    assert "5 episode(s)" in output
    pages = sorted((site / "quickdraw").glob("page-*.html"))
    assert len(pages) == 3
    ids = [int(i) for p in pages for i in re.findall(r'id="ep-(\d+)"', p.read_text())]
    assert ids == [0, 10, 20, 29, 39]  # evenly spaced over the 40 episodes
    assert "40</td>" in (site / "quickdraw" / "index.html").read_text()  # statistics cover all 40
    for thumb in (site / "quickdraw" / "thumbs").iterdir():
        with Image.open(thumb) as img:
            assert max(img.size) <= 48


def test_gallery_opens_in_headless_chromium(all_release: Path, tmp_path: Path) -> None:
    from chromium import Browser, chromium_or_skip

    binary = chromium_or_skip()
    site = tmp_path / "site"
    code, output = run("gallery", all_release, "--out", site, "--quiet")
    assert code == 0, output
    (tmp_path / "broken.html").write_text('<!doctype html><link rel="icon" href="data:,"><img src="missing.png">'
                                          '<script>console.error("boom")</script>')
    names = [e["source"] for e in json.loads((all_release / "manifest.json").read_text())["sources"]]
    with Browser(binary) as browser:
        broken = browser.open((tmp_path / "broken.html").as_uri())
        assert any("boom" in e for e in broken.errors) and any("missing.png" in e for e in broken.errors)
        page = browser.open((site / "index.html").as_uri())
        assert page.errors == []
        for name in names:
            assert f">{name}</a>" in page.dom
            for url in (site / name / "index.html", site / name / "page-0001.html"):
                sub = browser.open(url.as_uri())
                assert sub.errors == [], (url, sub.errors)
                assert "episode" in sub.dom.lower() and name in sub.dom


# --- dataset card assets --------------------------------------------------------------------------------------


def test_card_assets_one_preview_per_source_and_the_statistics(all_release: Path, tmp_path: Path) -> None:
    release = shutil.copytree(all_release, tmp_path / "release")  # the shared release stays as built
    shutil.rmtree(release / "previews")
    text = write_card_assets(release)
    assert (release / "previews" / "card.md").read_text(encoding="utf-8") == text
    assert "## What the data looks like" in (all_release / "README.md").read_text(encoding="utf-8")  # every build
    manifest = json.loads((release / "manifest.json").read_text())
    table = [line for line in text.splitlines() if line.startswith("| ")]
    for entry in manifest["sources"]:
        name = entry["source"]
        png = release / "previews" / f"{name}.png"
        assert f"]({'previews'}/{name}.png)" in text
        img = _png(png)
        assert img.width <= 1400 and png.stat().st_size < 400_000
        row = next(line for line in table if line.startswith(f"| {name} |"))
        # The card describes every row of the release (the official loader's drops are the gallery's business).
        assert f"| {entry['counts']['samples']} |" in row
    assert any(line.startswith("| **total** |") for line in table)


# --- reports --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def runs(qd_release: Path, all_release: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("runs")
    made = {}
    for release, source in ((qd_release, "quickdraw"), (all_release, "rod")):
        for policy, extra in (("oracle", []), ("proactive", []), ("random", []), ("first", []),
                              ("random", ["--reference"]), ("random", ["--hint"])):
            name = f"{source}-{policy}{''.join(extra).replace('--', '-')}"
            code, output = run("eval", release, "--source", source, "--policy", policy, *extra,
                               "--out", base / name, "--quiet")
            assert code == 0, output
            made[name] = base / name
    return made


def test_report_tables_csv_and_plots(runs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "report"
    code, output = run("report", *runs.values(), "--out", out, "--quiet")
    assert code == 0, output
    md = (out / "report.md").read_text()
    assert "## Setting: zero-shot, unfiltered" in md and "## Setting: with hints, unfiltered" in md
    assert "| model | ROD | QD | avg |" in md  # the paper's column order
    assert "| policy:oracle | 100.0 / " in md
    assert "| policy:first | 0.0 / 0.00 | 100.0 / 0.00 | 50.0 / 0.00 |" in md  # ROD's first frame is occluded
    assert "acc (reference acc)" in md
    assert "The sources come from 2 different release folders" in md
    with open(out / "results.csv", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    zero = [r for r in rows if r["setting"] == "zero-shot, unfiltered"]
    assert {(r["model"], r["source"]) for r in zero} == {
        (m, s) for m in ("policy:oracle", "policy:proactive", "policy:random (seed 0)", "policy:first")
        for s in ("QD", "ROD")}
    oracle = next(r for r in zero if r["model"] == "policy:oracle" and r["source"] == "QD")
    assert float(oracle["acc"]) == 100.0 and int(oracle["abstain"]) == 0
    assert int(oracle["proactive"]) == int(oracle["turns"]) - int(oracle["n"])  # every turn but the last moves
    random_qd = next(r for r in zero if r["model"] == "policy:random (seed 0)" and r["source"] == "QD")
    summary = json.loads((runs["quickdraw-random-reference"] / "summary.json").read_text())
    assert float(random_qd["reference_acc"]) == pytest.approx(summary["sources"]["QD"]["acc"], abs=0.01)
    for png in out.glob("*.png"):
        img = _png(png)
        assert 300 <= img.width <= 2000 and 150 <= img.height <= 1500
    assert {p.name.split("-")[0] for p in out.glob("*.png")} == {"accuracy", "actions", "turns"}


def test_report_refuses_mixed_data_and_duplicate_cells(runs: dict[str, Path], qd_release: Path,
                                                       tmp_path: Path) -> None:
    code, output = run("report", runs["quickdraw-oracle"], runs["quickdraw-oracle"], "--out", tmp_path / "r",
                       "--quiet")
    assert_one_line_error(code, output, "both are runs of policy:oracle on QD")
    other = tmp_path / "other"
    code, output = run("quickdraw", "--sample", "--seed", 1, "--out", other, "--quiet", "--workers", 1)
    assert code == 0, output
    code, output = run("eval", other, "--source", "QD", "--policy", "oracle", "--out", tmp_path / "o", "--quiet")
    assert code == 0, output
    code, output = run("report", runs["quickdraw-random"], tmp_path / "o", "--out", tmp_path / "r", "--quiet")
    assert_one_line_error(code, output, "ran QD on different data", "report runs of different releases separately")
    code, output = run("report", tmp_path, "--out", tmp_path / "r", "--quiet")
    assert_one_line_error(code, output, "not a run folder")
    assert not (tmp_path / "r").exists()


def _judged_oeg_run(mcqa_run: Path, out: Path, bits: list[tuple[int, int]]) -> Path:
    """An OEG run folder as ``pb-build judge`` leaves it, on the same data as ``mcqa_run``: one judgement per
    (proactive suggestion, category prediction) pair."""
    from pb_build.eval import metrics

    out.mkdir()
    run = json.loads((mcqa_run / "run.json").read_text())
    run.update(mode="oeg", model="tiny/judged", policy=None, judge={"model": "judge"})
    (out / "run.json").write_text(json.dumps(run))
    judgements = [{"id": i, "source": "quickdraw", "official_name": "QuickDraw", "status": "ok", "parsed": True,
                   "proactive_suggestion": ps, "category_prediction": cc, "aggregate": int(ps or cc)}
                  for i, (ps, cc) in enumerate(bits)]
    (out / "judgements.jsonl").write_text("".join(json.dumps(j) + "\n" for j in judgements))
    (out / "summary.json").write_text(json.dumps(metrics.oeg_summary(judgements)))
    return out


def test_report_gives_judged_oeg_runs_their_own_table(runs: dict[str, Path], tmp_path: Path) -> None:
    oeg = _judged_oeg_run(runs["quickdraw-oracle"], tmp_path / "oeg", [(1, 0), (0, 1), (0, 0), (1, 1)])
    out = tmp_path / "report"
    code, output = run("report", runs["quickdraw-oracle"], oeg, "--out", out, "--quiet")
    assert code == 0, output
    md = (out / "report.md").read_text()
    assert "## Setting: OEG, zero-shot, unfiltered" in md
    assert "| tiny/judged | 50.0 / 50.0 / 75.0 | 50.0 / 50.0 / 75.0 |" in md
    with open(out / "results.csv", encoding="utf-8") as handle:
        row = next(r for r in csv.DictReader(handle) if r["model"] == "tiny/judged")
    assert (row["cc"], row["ps"], row["agg"], row["acc"]) == ("50.00", "50.00", "75.00", "")
    (oeg / "summary.json").unlink()
    code, output = run("report", oeg, "--out", tmp_path / "again", "--quiet")
    assert_one_line_error(code, output, "judge it first")


@pytest.mark.parametrize(("turn", "kind"), [
    ({"category_verdict": "correct", "action_verdict": "mismatch", "choice": "C. Cat."}, "predict"),
    ({"category_verdict": "wrong", "action_verdict": "mismatch", "choice": "D. Dog."}, "predict"),
    ({"category_verdict": "mismatch", "action_verdict": "correct", "choice": "A. Wait for it."}, "proactive"),
    ({"category_verdict": "mismatch", "action_verdict": "wrong", "choice": "B. Reduce brightness."}, "proactive"),
    ({"category_verdict": "mismatch", "action_verdict": "wrong", "choice": "B. I cannot tell."}, "abstain"),
    ({"category_verdict": "mismatch", "action_verdict": "mismatch", "choice": None}, "unparsed"),
])
def test_turns_are_classified_as_actions(turn: dict, kind: str) -> None:
    assert classify(turn) == kind
