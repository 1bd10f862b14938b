"""The dataset card (README.md): YAML configs and dataset_info, then licences, attribution and usage."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from datasets.info import DatasetInfo, DatasetInfosDict
from datasets.splits import SplitDict, SplitInfo
from datasets.utils.metadata import MetadataConfigs
from huggingface_hub import DatasetCardData

from pb_build import __version__
from pb_build.builders.base import SourceInfo
from pb_build.writers.native import FEATURES

LICENCE = "cc-by-nc-4.0"
PAPER = "ProactiveBench (arXiv 2603.19466)"


@dataclass(frozen=True)
class ConfigSummary:
    """What the card says about one native config."""

    config: str
    info: SourceInfo
    split: str
    rows: int
    shard_paths: list[str]
    num_bytes: int
    synthetic_sample: bool


def summaries_from_manifest(manifest: dict, size_of: Callable[[str], int]) -> list[ConfigSummary]:
    """Card summaries for every source a manifest lists (``size_of`` gives a file's size in bytes)."""
    from pb_build.builders import get_builder

    out = []
    for e in manifest["sources"]:
        shards = e["files"]["native"]
        out.append(ConfigSummary(
            config=e["source"], info=get_builder(e["source"]).info, split=manifest.get("split", "test"),
            rows=e["counts"]["samples"], shard_paths=shards, num_bytes=sum(size_of(p) for p in shards),
            synthetic_sample=e["raw"]["kind"] == "sample",
        ))
    return out


def card_text(configs: list[ConfigSummary], release: dict | None = None, repo_id: str | None = None,
              versions: list[str] | None = None) -> str:
    """The full README.md of a release."""
    data = DatasetCardData(license=LICENCE, pretty_name="ProactiveBench (rebuilt by pb-build)",
                           task_categories=["visual-question-answering"])
    infos = {}
    meta = {}
    for c in configs:
        splits = SplitDict()
        splits.add(SplitInfo(name=c.split, num_bytes=c.num_bytes, num_examples=c.rows))
        infos[c.config] = DatasetInfo(features=FEATURES, splits=splits, download_size=c.num_bytes,
                                      dataset_size=c.num_bytes)
        meta[c.config] = {"data_files": [{"split": c.split, "path": f"{c.config}/{c.split}-*"}]}
    DatasetInfosDict(infos).to_dataset_card_data(data)
    MetadataConfigs(meta).to_dataset_card_data(data)
    return f"---\n{data.to_yaml()}\n---\n\n{_body(configs, release, repo_id, versions or [])}"


def _body(configs: list[ConfigSummary], release: dict | None, repo_id: str | None, versions: list[str]) -> str:
    title = "# ProactiveBench, rebuilt by pb-build"
    if release:
        title += f": {release['name']} v{release['version']}"
    pin = f', revision="{versions[0]}"' if versions else ""
    lines = [
        title,
        "",
        f"Built with pb-build {__version__} from the raw source datasets, following the construction of "
        f"{PAPER}. Each sample is a finite state machine: frames, the options shown in each state, the "
        "correct choices and where each proactive option leads.",
        "",
    ]
    if any(c.synthetic_sample for c in configs):
        lines += [
            "> **Synthetic demo data.** At least one config was built from pb-build's bundled sample: drawings",
            "> made by the pb-build project in the source's format, not real dataset content. Do not report",
            "> results on it.",
            "",
        ]
    lines += ["## Configs", "", "| config | official name | split | rows |", "|---|---|---|---|"]
    lines += [f"| `{c.config}` | `{c.info.official_name}` | {c.split} | {c.rows} |" for c in configs]
    lines += [
        "",
        "## Loading",
        "",
        "```python",
        "from datasets import load_dataset",
        f'ds = load_dataset("{repo_id or "<this folder or NAMESPACE/NAME>"}", "{configs[0].config}", '
        f'split="{configs[0].split}"{pin})',
        "```",
        "",
        "Pin a published version with `revision=\"vX.Y.Z\"` (a branch is not a pin). "
        "The official `proactivebench` package reads the "
        "`test/` folder unchanged: `get_environment(name)(entry, data_dir=\"test\")`. "
        "`manifest.json` records the tool version, parameters, seeds and raw inputs; `SHA256SUMS` covers every file.",
        "",
        "## Licence and attribution",
        "",
        f"The release is distributed under {LICENCE} for academic research. Each source keeps its own terms:",
        "",
    ]
    for c in configs:
        lines += [f"- **{c.info.title}** (`{c.config}`): {c.info.licence}. {c.info.attribution} {c.info.homepage}"]
    if versions:
        lines += ["", "## Versions", "", "Every version is a git tag on the exact release commit; tags are never "
                  "moved. Changes are listed in `CHANGELOG.md`.", ""]
        lines += [f"- `{v}`" for v in versions]
        lines += ["", "For offline use of a pinned version: `pb-build pull --repo NAMESPACE/NAME --version X.Y.Z "
                  "--out DIR` (or `huggingface_hub.snapshot_download(..., revision=\"vX.Y.Z\", local_dir=DIR)`), "
                  "then `load_dataset(DIR, config)`."]
    lines += ["", "## Citation", "", f"- {PAPER}."]
    lines += [f"- {c.info.citation}" for c in configs]
    return "\n".join(lines) + "\n"


def write_card(root: Path, configs: list[ConfigSummary], release: dict | None = None) -> Path:
    """Write README.md."""
    dest = root / "README.md"
    dest.write_text(card_text(configs, release), encoding="utf-8", newline="\n")
    return dest
