"""Recipes: multi-source releases, the bundled recipes, rebuilds from a manifest, and malformed recipes."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import QD_FIXTURES
from datasets import load_dataset

from pb_build.cli import main
from pb_build.errors import PbBuildError
from pb_build.manifests.manifest import read_dict as read_manifest
from pb_build.manifests.provenance import read_sums
from pb_build.manifests.recipe import RECIPES_DIR, load_recipe
from pb_build.verify import verify_release


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def write_recipe(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    return path


def test_recipe_over_real_fixtures_builds_verifies_loads_and_rebuilds(tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path, f"""
release: fixture-release
version: 1.2.3
sources:
  quickdraw:
    raw: {QD_FIXTURES / "simplified"}
    seed: 7
    parameters: {{per_class: 5, pool: 25}}
""")
    out = tmp_path / "rel"
    code, output = run("build", str(recipe), "--out", str(out), "--quiet", "--workers", "1")
    assert code == 0, output
    assert verify_release(out).problems == []
    manifest = read_manifest(out)
    assert manifest["release"]["name"] == "fixture-release" and manifest["release"]["version"] == "1.2.3"
    assert manifest["sources"][0]["seed"] == 7
    for entry in manifest["sources"]:
        assert len(load_dataset(str(out), entry["source"], split="test")) == entry["counts"]["samples"] == 20
    assert "fixture-release v1.2.3" in (out / "README.md").read_text()
    # The manifest alone (plus the raw folder) rebuilds the same bytes.
    code, output = run("rebuild", str(out / "manifest.json"), "--out", str(tmp_path / "again"), "--quiet",
                       "--raw", f"quickdraw={QD_FIXTURES / 'simplified'}")
    assert code == 0, output
    assert "SHA256SUMS identical" in output
    assert (out / "SHA256SUMS").read_bytes() == (tmp_path / "again" / "SHA256SUMS").read_bytes()
    # A single-source build with the same parameters agrees byte for byte on the shared parts.
    code, output = run("quickdraw", "--raw", str(QD_FIXTURES / "simplified"), "--out", str(tmp_path / "single"),
                       "--per-class", "5", "--pool", "25", "--seed", "7", "--quiet")
    assert code == 0, output
    single, multi = read_sums(tmp_path / "single"), read_sums(out)
    shared = {p for p in single if p.startswith(("test/", "quickdraw/"))}
    assert shared and all(single[p] == multi[p] for p in shared)


def test_bundled_sample_recipe_and_rebuild_needs_the_same_raw(tmp_path: Path, small_raw: Path) -> None:
    out = tmp_path / "rel"
    code, output = run("build", "sample", "--out", str(out), "--quiet", "--workers", "1")
    assert code == 0, output
    code, output = run("rebuild", str(out / "manifest.json"), "--out", str(tmp_path / "again"), "--quiet")
    assert code == 0 and "identical" in output
    # A folder-built release cannot be rebuilt without its raw folder, nor from different raw files.
    code, _ = run("quickdraw", "--raw", str(small_raw), "--out", str(tmp_path / "local"), "--quiet")
    assert code == 0
    code, output = run("rebuild", str(tmp_path / "local" / "manifest.json"), "--out", str(tmp_path / "r2"))
    assert code == 1 and "pass --raw quickdraw=DIR" in output
    (small_raw / "cat.ndjson").write_text((small_raw / "cat.ndjson").read_text().replace('"ZZ"', '"ZY"'))
    code, output = run("rebuild", str(tmp_path / "local" / "manifest.json"), "--out", str(tmp_path / "r2"),
                       "--raw", f"quickdraw={small_raw}")
    assert code == 1 and "cat.ndjson: differs from the raw file the manifest recorded" in output
    assert not (tmp_path / "r2").exists()


def test_bundled_recipes_parse() -> None:
    names = sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))
    assert "sample" in names
    for name in names:
        recipe = load_recipe(name)
        assert recipe.sources and recipe.version.count(".") == 2


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("release: x\nversion: 1.0.0\nsources: [\n", "not valid YAML"),
        ("- a\n- b\n", "a recipe is a mapping"),
        ("release: x\nversion: 1.0\nsources: {quickdraw: {raw: sample}}\n", "MAJOR.MINOR.PATCH"),
        ("release: x\nversion: 1.0.0\nsources: {nope: {raw: sample}}\n", "sources.nope: unknown source 'nope'"),
        ("release: x\nversion: 1.0.0\nsources: {quickdraw: {raw: sample, parameters: {per_clas: 3}}}\n",
         "unknown parameter(s) per_clas"),
        ("release: x\nversion: 1.0.0\nsources: {quickdraw: {raw: sample, parameters: {per_class: ten}}}\n",
         "parameters.per_class: must be int"),
        ("release: x\nversion: 1.0.0\nsources: {quickdraw: {raw: sample, parameters: {per_class: 0}}}\n",
         "--per-class must be at least 1"),
        ("release: x\nversion: 1.0.0\nsources: {quickdraw: {raw: sample, seeds: 3}}\n", "unknown key(s) seeds"),
        ("version: 1.0.0\nsources: {quickdraw: {raw: sample}}\n", "'release' must be"),
        ('release: x\nversion: 1.0.0\nsources: {quickdraw: {raw: "a\\ud83db"}}\n', "unpaired UTF-16 surrogate"),
    ],
)
def test_malformed_recipes_are_one_line_errors(tmp_path: Path, text: str, message: str) -> None:
    path = write_recipe(tmp_path, text)
    with pytest.raises(PbBuildError, match=None) as info:
        load_recipe(str(path))
    assert message in str(info.value) and str(path) in str(info.value)
    code, output = run("build", str(path), "--out", str(tmp_path / "out"))
    assert code == 1 and message in output and "Traceback" not in output
    assert not (tmp_path / "out").exists()


def test_escaped_astral_characters_read_as_in_json(tmp_path: Path) -> None:
    # JSON is YAML, and json.dumps writes an emoji as a surrogate pair escape, which PyYAML keeps as two halves
    path = write_recipe(tmp_path, 'release: "x\\ud83d\\ude00"\nversion: 1.0.0\nsources: {quickdraw: {raw: sample}}\n')
    assert load_recipe(str(path)).release == "x\U0001F600"


def test_unknown_recipe_name_lists_bundled_ones(tmp_path: Path) -> None:
    code, output = run("build", "nonexistent", "--out", str(tmp_path / "o"))
    assert code == 1 and "bundled recipes:" in output and "sample" in output


def test_seven_source_recipe_builds_verifies_loads_and_rebuilds(tmp_path: Path) -> None:
    """One release of all seven sources: real fixture samples where they exist, raw trees in the original layouts
    (made by the source tests' own makers) for the others."""
    from changeit_raw import make_raw as changeit_raw
    from coco_raw import varied_tree
    from test_imagenet_c import make_tree as imagenet_c_tree
    from test_mvp_n import make_tree as mvp_n_tree
    from test_mvp_n import write_names
    from test_rod import make_tree as rod_tree
    from test_vsod import make_tree as vsod_tree

    coco = varied_tree(tmp_path / "coco", 6)
    coco.write()
    vsod_raw, labels = vsod_tree(tmp_path / "vsod")
    raws = {
        "quickdraw": QD_FIXTURES / "simplified",
        "coco": coco.root,
        "imagenet-c": imagenet_c_tree(tmp_path / "imagenet-c"),
        "mvp-n": mvp_n_tree(tmp_path / "mvp-n"),
        "rod": rod_tree(tmp_path / "rod"),
        "vsod": vsod_raw,
        "changeit": changeit_raw(tmp_path / "changeit"),
    }
    names = write_names(tmp_path / "names.csv")
    recipe = write_recipe(tmp_path, f"""
release: seven
version: 0.3.0
sources:
  quickdraw: {{raw: fetch, seed: 1, parameters: {{per_class: 3, pool: 25}}}}
  coco: {{raw: fetch, seed: 1}}
  imagenet-c: {{raw: fetch, seed: 1, parameters: {{per_class: 2}}}}
  mvp-n: {{raw: fetch, seed: 1, parameters: {{names: {names}}}}}
  rod: {{raw: fetch, seed: 1}}
  vsod: {{raw: fetch, seed: 1, parameters: {{labels: {labels}}}}}
  changeit: {{raw: fetch, seed: 1}}
""")
    overrides = [arg for source, raw in raws.items() for arg in ("--raw", f"{source}={raw}")]
    out = tmp_path / "rel"
    code, output = run("build", str(recipe), "--out", str(out), "--quiet", "--workers", "1", *overrides)
    assert code == 0, output
    assert verify_release(out).problems == []
    manifest = read_manifest(out)
    assert [e["source"] for e in manifest["sources"]] == list(raws)
    for entry in manifest["sources"]:
        rows = load_dataset(str(out), entry["source"], split="test")
        assert len(rows) == entry["counts"]["samples"] > 0
        assert (out / "test" / f"{entry['official_name']}_preprocessed.jsonl").is_file()
    assert str(tmp_path) not in (out / "manifest.json").read_text(), "a machine path leaked into the manifest"
    code, output = run("rebuild", str(out / "manifest.json"), "--out", str(tmp_path / "again"), "--quiet",
                       "--workers", "1", *overrides, "--table", f"names={names}", "--table", f"labels={labels}")
    assert code == 0 and "SHA256SUMS identical" in output, output
