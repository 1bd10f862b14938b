"""The build driver, the typed manifest, the release folder and the card (issues 9 and 13)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from pb_build.build import SourceJob, build_release, table_fields
from pb_build.builders import get_builder
from pb_build.cli import main
from pb_build.errors import PbBuildError
from pb_build.manifests import manifest as manifests
from pb_build.manifests.provenance import builder_fingerprint, read_sums, source_modules
from pb_build.writers import card
from pb_build.writers.native import FEATURES, FIELD_DOCS, SCHEMA

try:
    from test_vsod import make_tree as vsod_tree
except ImportError:  # tests/ imported as a package
    from tests.test_vsod import make_tree as vsod_tree


def _cli(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sample") / "rel"
    result = _cli("build", "sample", "--out", out, "--quiet", "--workers", "1")
    assert result.exit_code == 0, result.output
    return out


def _copy(release: Path, dest: Path) -> Path:
    shutil.copytree(release, dest)
    return dest


# ------------------------------------------------------------------------------------------- typed manifest


def test_manifest_round_trips_and_has_a_version(sample: Path):
    m = manifests.read(sample)
    assert m.manifest_version == manifests.MANIFEST_VERSION
    assert m.to_dict() == json.loads((sample / "manifest.json").read_text())
    assert m.sources[0].synthetic_sample and m.entry("quickdraw").counts.samples == 40


@pytest.mark.parametrize("edit, message", [
    (lambda d: "{not json", "not JSON"),
    (lambda d: {k: v for k, v in d.items() if k != "sources"}, "missing key 'sources'"),
    (lambda d: {**d, "sources": [{**d["sources"][0], "seed": "zero"}]}, "'seed' must be int"),
    (lambda d: {**d, "sources": [{k: v for k, v in d["sources"][0].items() if k != "files"}]}, "missing key 'files'"),
    (lambda d: {**d, "manifest_version": 99}, "manifest_version 99 is newer"),
    (lambda d: [1, 2], "a JSON object is expected"),
])
def test_unreadable_manifest_is_one_clear_line(sample: Path, tmp_path: Path, edit, message: str):
    rel = _copy(sample, tmp_path / "rel")
    data = json.loads((rel / "manifest.json").read_text())
    edited = edit(data)
    (rel / "manifest.json").write_text(edited if isinstance(edited, str) else json.dumps(edited))
    with pytest.raises(manifests.ManifestError, match=re.escape(message)):
        manifests.read(rel)
    for args in (("verify", rel), ("eval", rel, "--source", "QD", "--policy", "oracle", "--out", tmp_path / "r")):
        result = _cli(*args)
        assert result.exit_code == 1 and "Traceback" not in result.output, result.output
        assert message in result.output and "manifest.json" in result.output
        assert len(result.output.strip().splitlines()) == 1


# ------------------------------------------------------------------------------------------------ the card


def test_native_schema_is_the_one_datasets_derives():
    """Shards are written without importing ``datasets``; the schema (and its metadata, which ``load_dataset``
    reads the features from) must still be exactly the one ``datasets`` derives from the features."""
    from datasets import Features

    derived = Features.from_dict(FEATURES).arrow_schema
    assert SCHEMA.equals(derived, check_metadata=True)
    assert Features.from_dict(FEATURES).to_dict() == FEATURES


def _card_yaml_by_datasets(configs) -> str:
    """The card's YAML header as ``datasets`` writes it (what pb-build wrote before it stopped importing it)."""
    from datasets import Features
    from datasets.info import DatasetInfo, DatasetInfosDict
    from datasets.splits import SplitDict, SplitInfo
    from datasets.utils.metadata import MetadataConfigs
    from huggingface_hub import DatasetCardData

    data = DatasetCardData(license=card.LICENCE, pretty_name="ProactiveBench (rebuilt by pb-build)",
                           task_categories=["visual-question-answering"])
    infos, meta = {}, {}
    for c in configs:
        splits = SplitDict()
        splits.add(SplitInfo(name=c.split, num_bytes=c.num_bytes, num_examples=c.rows))
        infos[c.config] = DatasetInfo(features=Features.from_dict(FEATURES), splits=splits,
                                      download_size=c.num_bytes, dataset_size=c.num_bytes)
        meta[c.config] = {"data_files": [{"split": c.split, "path": f"{c.config}/{c.split}-*"}]}
    DatasetInfosDict(infos).to_dataset_card_data(data)
    MetadataConfigs(meta).to_dataset_card_data(data)
    return f"---\n{data.to_yaml()}\n---\n"


@pytest.mark.parametrize("names", [["quickdraw"], ["vsod", "quickdraw", "quickdraw_filtered"]])
def test_the_card_metadata_is_what_datasets_writes(names: list[str]):
    info = get_builder("quickdraw").info
    configs = [card.ConfigSummary(n, info, "test", 10 + i, [f"{n}/test-00000-of-00001.parquet"], 1000 * (i + 1),
                                  False) for i, n in enumerate(names)]
    text = card.card_text(configs)
    assert text.startswith(_card_yaml_by_datasets(configs) + "\n")


def test_writing_a_release_does_not_import_datasets(tmp_path: Path):
    code = ("import sys; from pathlib import Path; from pb_build.build import SourceJob, build_release; "
            "from pb_build.builders import get_builder; qd = get_builder('quickdraw'); "
            f"build_release(Path({str(tmp_path / 'rel')!r}), [SourceJob(qd, qd.Config(), qd.sample_dir(), "
            "sample=True)], progress=False); assert 'datasets' not in sys.modules, 'datasets imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
    assert (tmp_path / "rel" / "README.md").is_file()


def test_writing_a_shard_does_not_import_datasets():
    code = ("import sys; import pb_build.shards, pb_build.builders; "
            "assert 'datasets' not in sys.modules, 'datasets imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_card_describes_fields_recipe_and_is_true_for_a_sample(sample: Path):
    card = (sample / "README.md").read_text()
    assert set(FIELD_DOCS) == set(FEATURES)
    for name in FEATURES:
        assert f"| `{name}` | {FIELD_DOCS[name]} |" in card
    for key in ("image_template", "first_image", "num_images", "reference_image"):
        assert f"| `{key}` |" in card
    assert "Demo release from pb-build's bundled synthetic samples" in card  # the recipe's description
    assert "Synthetic demo data" in card
    assert "Google" not in card and "Jongejan" not in card  # the sample's drawings are not Google's
    assert "<this folder" not in card and "NAMESPACE/NAME>" not in card


def test_card_load_snippet_works_in_the_folder(sample: Path, monkeypatch):
    card = (sample / "README.md").read_text()
    snippet = card.split("## Loading")[1].split("```python\n")[1].split("```")[0]
    monkeypatch.chdir(sample)
    scope: dict = {}
    exec(snippet, scope)  # noqa: S102 - the card's own snippet, run as a user would
    assert scope["quickdraw"].num_rows == 40


def test_card_of_a_real_build_credits_the_source(tmp_path: Path):
    qd = get_builder("quickdraw")
    raw = _copy(qd.sample_dir(), tmp_path / "raw")  # the same files, given as a user's folder
    build_release(tmp_path / "rel", [SourceJob(qd, qd.Config(per_class=2), raw)], progress=False)
    card = (tmp_path / "rel" / "README.md").read_text()
    assert "Synthetic demo data" not in card and qd.info.attribution in card and qd.info.citation in card


# --------------------------------------------------------------------------------------------------- filter


def test_filter_on_the_sample_keeps_the_synthetic_warning(sample: Path, tmp_path: Path):
    rel = _copy(sample, tmp_path / "rel")
    run = tmp_path / "probe"
    result = _cli("eval", rel, "--source", "QD", "--policy", "first", "--out", run, "--quiet")
    assert result.exit_code == 0, result.output
    result = _cli("filter", rel, "--source", "QD", "--run", run)
    assert result.exit_code == 0, result.output
    card = (rel / "README.md").read_text()
    assert "Synthetic demo data" in card and "`quickdraw_filtered`" in card
    assert "Google" not in card
    assert "Demo release from pb-build's bundled synthetic samples" in card  # the release's title survives
    assert not list(rel.glob(".pb-build-*"))
    assert _cli("verify", rel, "--quiet").exit_code == 0


# -------------------------------------------------------------------------------------------------- rebuild


def test_rebuild_into_its_own_folder_compares_with_the_original_sums(sample: Path, tmp_path: Path):
    rel = _copy(sample, tmp_path / "rel")
    sums = (rel / "SHA256SUMS").read_text().splitlines()
    # Pretend the original was built differently: its recorded digest of one frame differs from what a rebuild
    # makes. Rebuilding in place must compare against this original, not against its own new SHA256SUMS.
    i = next(n for n, line in enumerate(sums) if line.endswith(".png"))
    sums[i] = "0" * 64 + sums[i][64:]
    (rel / "SHA256SUMS").write_text("\n".join(sums) + "\n")
    result = _cli("rebuild", rel / "manifest.json", "--out", rel, "--overwrite", "--quiet", "--workers", "1")
    assert result.exit_code == 1, result.output
    assert "1 file(s) differ from the original" in result.output and sums[i][66:] in result.output


def test_rebuild_in_place_of_an_unchanged_release_is_identical(sample: Path, tmp_path: Path):
    rel = _copy(sample, tmp_path / "rel")
    before = read_sums(rel)
    result = _cli("rebuild", rel / "manifest.json", "--out", rel, "--overwrite", "--quiet", "--workers", "1")
    assert result.exit_code == 0 and "identical" in result.output, result.output
    assert read_sums(rel) == before


# ----------------------------------------------------------------------------------------------- user tables


def test_table_fields_are_marked_in_the_configs():
    assert table_fields(get_builder("vsod").Config) == {"labels": "labels"}
    assert table_fields(get_builder("mvp-n").Config) == {"names": "names"}
    assert table_fields(get_builder("rod").Config) == {"occluders": "occluders"}


def test_user_tables_by_name_and_hash_and_rebuild_with_table(tmp_path: Path):
    raw_dir, labels = vsod_tree(tmp_path / "here")
    builds = []
    for where in ("a", "b"):  # the same table in two places gives the same release bytes
        table = tmp_path / where / "labels.csv"
        table.parent.mkdir()
        shutil.copy(labels, table)
        out = tmp_path / f"rel-{where}"
        result = _cli("vsod", "--raw", raw_dir, "--labels", table, "--out", out, "--quiet", "--workers", "1")
        assert result.exit_code == 0, result.output
        builds.append(out)
    assert (builds[0] / "SHA256SUMS").read_bytes() == (builds[1] / "SHA256SUMS").read_bytes()
    text = (builds[0] / "manifest.json").read_text()
    assert str(tmp_path) not in text
    entry = manifests.read(builds[0]).sources[0]
    assert entry.parameters["labels"] == "labels.csv"
    assert entry.tables["labels"].file == "labels.csv"

    manifest = builds[0] / "manifest.json"
    common = ("--raw", f"vsod={raw_dir}", "--quiet", "--workers", "1")
    result = _cli("rebuild", manifest, "--out", tmp_path / "r1", *common)
    assert result.exit_code == 1 and "--table labels=PATH" in result.output and "Traceback" not in result.output
    moved = tmp_path / "moved" / "renamed.csv"
    moved.parent.mkdir()
    shutil.copy(labels, moved)
    result = _cli("rebuild", manifest, "--out", tmp_path / "r2", *common, "--table", f"labels={moved}")
    assert result.exit_code == 0 and "identical" in result.output, result.output
    changed = tmp_path / "changed.csv"
    changed.write_text(labels.read_text() + "\n")
    result = _cli("rebuild", manifest, "--out", tmp_path / "r3", *common, "--table", f"labels={changed}")
    assert result.exit_code == 1 and "differs from the labels table the manifest records" in result.output
    result = _cli("rebuild", manifest, "--out", tmp_path / "r4", *common, "--table", f"nope={changed}")
    assert result.exit_code == 2 and "no such table" in result.output
    assert not any((tmp_path / f"r{i}").exists() for i in (1, 3, 4))


# --------------------------------------------------------------------------------------------- preconditions


def test_paper_checks_every_precondition_before_any_download(tmp_path: Path, monkeypatch):
    started = []

    def no_download(*_args, **_kwargs):
        started.append(True)
        raise AssertionError("a download started before the cheap checks")

    for name in ("rod", "quickdraw", "coco"):
        monkeypatch.setattr(get_builder(name), "fetch", no_download)
    result = _cli("build", "paper", "--out", tmp_path / "rel", "--cache-dir", tmp_path / "cache")
    assert result.exit_code == 1, result.output
    assert "AssertionError" not in result.output and "Traceback" not in result.output
    for source in ("vsod", "mvp-n", "changeit", "imagenet-c"):
        assert f"--raw {source}=DIR" in result.output
    assert "nothing was downloaded" in result.output
    assert not started and not (tmp_path / "rel").exists()


def test_missing_table_and_bad_target_fail_before_any_download(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(get_builder("rod"), "fetch", lambda *a, **k: pytest.fail("downloaded"))
    raw_dir, _ = vsod_tree(tmp_path / "v")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "mine.txt").write_text("x")
    recipe = tmp_path / "r.yaml"
    recipe.write_text("release: r\nversion: 1.0.0\nsources:\n  rod: {raw: fetch}\n"
                      "  vsod: {raw: fetch, parameters: {labels: nope.csv}}\n")
    result = _cli("build", recipe, "--out", foreign, "--raw", f"vsod={raw_dir}")
    assert result.exit_code == 1, result.output
    assert "nope.csv: labels file not found" in result.output and "not a pb-build release" in result.output


# ------------------------------------------------------------------------------------- progress and summary


def test_progress_bar_has_a_total(tmp_path: Path, capsys):
    qd = get_builder("quickdraw")
    plan = qd.plan(qd.sample_dir(), qd.Config(), None)
    assert plan.size() == 40
    build_release(tmp_path / "rel", [SourceJob(qd, qd.Config(), qd.sample_dir(), True)], progress=True)
    err = capsys.readouterr().err
    assert "40/40" in err


def test_end_of_build_summary(tmp_path: Path):
    qd = get_builder("quickdraw")
    raw = _copy(qd.sample_dir(), tmp_path / "raw")
    cat = next(raw.glob("*.ndjson"))
    cat.write_text(cat.read_text() + '{"word": \n')
    out = tmp_path / "rel"
    result = _cli("quickdraw", "--raw", raw, "--out", out, "--quiet", "--workers", "1", "--skip-bad")
    assert result.exit_code == 0, result.output
    text = result.output
    assert re.search(r"40 samples, \d+ frames, 1 excluded", text), text
    assert "by reason: 1 x malformed JSON" in text
    assert re.search(r"in \d+\.\ds", text) and str(out.resolve()) in text
    assert f'load_dataset("{out.resolve()}", "quickdraw", split="test")' in text


# ---------------------------------------------------------------------------------------------- fingerprint


def test_fingerprint_covers_the_raw_reader_and_shared_helpers():
    mods = source_modules("pb_build.builders.quickdraw")
    assert {"pb_build.builders.quickdraw", "pb_build.raw.quickdraw", "pb_build.episode",
            "pb_build.builders.base"} <= set(mods)
    assert not any(m.startswith("pb_build.builders.") and m.endswith(("coco", "rod", "vsod")) for m in mods)
    assert "pb_build.builders" not in mods  # the registry is not followed: sources do not depend on each other


def test_fingerprint_changes_with_an_imported_module(tmp_path: Path, monkeypatch):
    pkg = tmp_path / "pb_build_fp"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "helper.py").write_text("X = 1\n")
    (pkg / "source.py").write_text("from pb_build_fp.sub.helper import X\n\nclass Source:\n    name = 'fp'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert source_modules("pb_build_fp.source", "pb_build_fp") == ["pb_build_fp.source", "pb_build_fp.sub.helper"]

    class Obj:
        pass

    Obj.__module__ = "pb_build_fp.source"
    import pb_build.manifests.provenance as prov

    monkeypatch.setattr(prov, "source_modules", lambda name: source_modules(name, "pb_build_fp"))
    before = builder_fingerprint(Obj())
    (pkg / "sub" / "helper.py").write_text("X = 2\n")
    assert builder_fingerprint(Obj()) != before


# -------------------------------------------------------------------------------------------- release folder


def test_failed_build_leaves_nothing(tmp_path: Path):
    qd = get_builder("quickdraw")
    raw = _copy(qd.sample_dir(), tmp_path / "raw")
    cat = next(raw.glob("*.ndjson"))
    cat.write_text(cat.read_text() + '{"word": \n')
    with pytest.raises(PbBuildError):
        build_release(tmp_path / "rel", [SourceJob(qd, qd.Config(), raw)], progress=False)
    assert sorted(os.listdir(tmp_path)) == ["raw"]
