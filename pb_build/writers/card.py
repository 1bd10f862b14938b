"""The dataset card (README.md): YAML configs and dataset_info, then licences, attribution and usage."""

from __future__ import annotations

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


def card_text(configs: list[ConfigSummary]) -> str:
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
    return f"---\n{data.to_yaml()}\n---\n\n{_body(configs)}"


def _body(configs: list[ConfigSummary]) -> str:
    lines = [
        "# ProactiveBench, rebuilt by pb-build",
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
        f'ds = load_dataset("<this folder or NAMESPACE/NAME>", "{configs[0].config}", split="{configs[0].split}")',
        "```",
        "",
        "Pin a published version with `revision=\"vX.Y.Z\"`. The official `proactivebench` package reads the "
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
    lines += ["", "## Citation", "", f"- {PAPER}."]
    lines += [f"- {c.info.citation}" for c in configs]
    return "\n".join(lines) + "\n"


def write_card(root: Path, configs: list[ConfigSummary]) -> Path:
    """Write README.md."""
    dest = root / "README.md"
    dest.write_text(card_text(configs), encoding="utf-8", newline="\n")
    return dest
