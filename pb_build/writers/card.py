"""The dataset card (README.md): YAML configs and dataset_info, then licences, attribution and usage."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from huggingface_hub import DatasetCardData

from pb_build import __version__
from pb_build.manifests.manifest import Manifest, SourceEntry
from pb_build.source_info import SourceInfo
from pb_build.writers.native import FEATURES, FIELD_DOCS

LICENCE = "cc-by-nc-4.0"
PAPER = "ProactiveBench (arXiv 2603.19466)"
PREVIEW_MARKDOWN = "previews/card.md"  # the previews and statistics section, written into the release at build time

# The keys every official record holds (the official loader's contract); other keys are specific to a source.
OFFICIAL_FIELD_DOCS = {
    "id": "Sample id (the native row's `id`).",
    "image_template": "Path of the frames under `test/`, a format string filled with the frame index.",
    "first_image": "Index of the frame an episode starts on.",
    "num_images": "Number of frames the episode can show.",
    "reference_image": "Index of the informative frame.",
    "prompt": "The question.",
    "options": "The proactive and abstain options the official environment shows.",
    "categories": "The four answer categories, the answer among them.",
    "answer": "The correct category.",
}


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
    official_fields: tuple[str, ...] = ()


def summaries_from_manifest(manifest: Manifest, size_of: Callable[[str], int]) -> list[ConfigSummary]:
    """Card summaries for every native config a manifest lists, filtered ones included (``size_of`` gives a
    file's size in bytes)."""
    out = []
    for e in manifest.sources:
        info = _info(e)
        configs = [(e.source, e.files.native, e.counts.samples)]
        if e.filter is not None:
            configs.append((f"{e.source}_filtered", e.filter["files"]["native"], len(e.filter["kept_ids"])))
        for config, shards, rows in configs:
            out.append(ConfigSummary(config, info, manifest.split, rows, list(shards),
                                     sum(size_of(p) for p in shards), e.synthetic_sample,
                                     tuple(e.official_fields)))
    return out


def _info(entry: SourceEntry) -> SourceInfo:
    """The card metadata the manifest carries (a manifest without it gives the names and licence only)."""
    known = {f.name for f in dataclasses.fields(SourceInfo)} - {"official_name"}
    given = {k: v for k, v in entry.info.items() if k in known}
    return SourceInfo(**{"title": entry.official_name, "licence": entry.licence, "attribution": "", "homepage": "",
                         "citation": "", "description": "", **given, "official_name": entry.official_name})


def release_card(manifest: Manifest, size_of: Callable[[str], int], repo_id: str | None = None,
                 versions: list[str] | None = None, preview: str = "") -> str:
    """The card of a release described by ``manifest`` (``size_of`` gives a file's size in bytes); ``preview``
    is the release's previews and statistics section (see :func:`read_preview`)."""
    return card_text(summaries_from_manifest(manifest, size_of), manifest.release, repo_id, versions, preview)


def read_preview(root: Path) -> str:
    """The previews and statistics section a build wrote into the release ('' when it has none)."""
    path = root / PREVIEW_MARKDOWN
    return path.read_text(encoding="utf-8") if path.is_file() else ""


def card_text(configs: list[ConfigSummary], release: dict | None = None, repo_id: str | None = None,
              versions: list[str] | None = None, preview: str = "") -> str:
    """The full README.md of a release."""
    data = DatasetCardData(license=LICENCE, pretty_name="ProactiveBench (rebuilt by pb-build)",
                           task_categories=["visual-question-answering"])
    by_name = sorted(configs, key=lambda c: c.config)
    infos = [{"config_name": c.config, **_dataset_info(c)} for c in by_name]
    data["dataset_info"] = infos[0] if len(infos) == 1 else infos
    data["configs"] = [{"config_name": c.config, "data_files": [{"split": c.split, "path": f"{c.config}/{c.split}-*"}]}
                       for c in by_name]
    return f"---\n{data.to_yaml()}\n---\n\n{_body(configs, release, repo_id, versions or [], preview)}"


def _dataset_info(config: ConfigSummary) -> dict[str, Any]:
    """A config's ``dataset_info`` card metadata, as ``datasets.DatasetInfosDict.to_dataset_card_data`` writes it
    (a test compares the two). Written here because importing ``datasets`` costs most of a second per build."""
    return {"features": yaml_feature(FEATURES)["struct"],
            "splits": [{"name": config.split, "num_bytes": config.num_bytes, "num_examples": config.rows}],
            "download_size": config.num_bytes, "dataset_size": config.num_bytes}


def yaml_feature(feature: dict[str, Any]) -> dict[str, Any]:
    """The card YAML form of a feature in ``datasets.Features.to_dict()`` form (the kinds :data:`FEATURES`
    uses: values, lists, images and structs)."""
    kind = feature.get("_type")
    if kind == "Value":
        return {"dtype": feature["dtype"]}
    if kind == "Image":
        return {"dtype": "image"}
    if kind == "List":
        inner = yaml_feature(feature["feature"])
        return {"list": inner["dtype"] if list(inner) == ["dtype"] else inner["struct"] if list(inner) == ["struct"]
                else inner}
    return {"struct": [{"name": name, **yaml_feature(sub)} for name, sub in feature.items()]}


def _body(configs: list[ConfigSummary], release: dict | None, repo_id: str | None, versions: list[str],
          preview: str = "") -> str:
    title = "# ProactiveBench, rebuilt by pb-build"
    if release:
        title += f": {release['name']} v{release['version']}"
    lines = [title, ""]
    description = (release or {}).get("description") or ((release or {}).get("recipe") or {}).get("description")
    if description:
        lines += [description, ""]
    synthetic = [c for c in configs if c.synthetic_sample]
    origin = "pb-build's bundled synthetic sample" if len(synthetic) == len(configs) else "the raw source datasets"
    lines += [
        f"Built with pb-build {__version__} from {origin}, following the construction of "
        f"{PAPER}. Each sample is a finite state machine: frames, the options shown in each state, the "
        "correct choices and where each proactive option leads.",
        "",
    ]
    if synthetic:
        names = ", ".join(f"`{c.config}`" for c in synthetic)
        lines += [
            f"> **Synthetic demo data.** {names} {'was' if len(synthetic) == 1 else 'were'} built from pb-build's "
            "bundled sample: data made by the pb-build project in the source's file format, not real dataset "
            "content. Do not report results on it.",
            "",
        ]
    lines += ["## Configs", "", "| config | official name | split | rows |", "|---|---|---|---|"]
    lines += [f"| `{c.config}` | `{c.info.official_name}` | {c.split} | {c.rows} |" for c in configs]
    lines += ["", *[f"- `{c.config}`: {c.info.description}" for c in configs]]
    if preview:
        lines += ["", preview.rstrip("\n")]
    lines += ["", "## Fields", "", "Every native config has these columns:", "", "| field | description |",
              "|---|---|"]
    lines += [f"| `{name}` | {FIELD_DOCS[name]} |" for name in FEATURES]
    lines += ["", "The official layout (`test/<Name>_preprocessed.jsonl`, one JSON record per line, plus the frame "
              "files the record's templates name) is what the official `proactivebench` package reads. Every "
              "record holds:", "", "| key | description |", "|---|---|"]
    lines += [f"| `{k}` | {doc} |" for k, doc in OFFICIAL_FIELD_DOCS.items()]
    extra = {}
    for c in configs:
        own = [k for k in c.official_fields if k not in OFFICIAL_FIELD_DOCS]
        if own:
            extra.setdefault(c.info.official_name, own)
    if extra:
        lines += ["", "Keys specific to one source (the rules of that environment in the official package):", ""]
        lines += [f"- `{name}`: {', '.join(f'`{k}`' for k in keys)}" for name, keys in extra.items()]
    lines += ["", "## Loading", "", "```python"]
    pin = f', revision="{versions[0]}"' if versions else ""
    if repo_id:
        where = f'"{repo_id}"'
        lines += ["from datasets import load_dataset", ""]
    else:
        where = "str(Path.cwd())"  # the folder's own path: a card must not depend on where it was built
        lines += ["from pathlib import Path", "", "from datasets import load_dataset", "",
                  "# run in this folder (or pass its path instead of Path.cwd())"]
    lines += [f'{c.config.replace("-", "_")} = load_dataset({where}, "{c.config}", split="{c.split}"{pin})'
              for c in configs]
    lines += ["```", ""]
    lines += [
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
        if c.synthetic_sample:
            lines.append(f"- `{c.config}`: synthetic sample data made by the pb-build project in the "
                         f"{c.info.title} file format; it holds no {c.info.title} content.")
        else:
            lines.append(f"- **{c.info.title}** (`{c.config}`): {c.info.licence}. {c.info.attribution} "
                         f"{c.info.homepage}")
    if versions:
        lines += ["", "## Versions", "", "Every version is a git tag on the exact release commit; tags are never "
                  "moved. Changes are listed in `CHANGELOG.md`.", ""]
        lines += [f"- `{v}`" for v in versions]
        lines += ["", "For offline use of a pinned version: `pb-build pull --repo NAMESPACE/NAME --version X.Y.Z "
                  "--out DIR` (or `huggingface_hub.snapshot_download(..., revision=\"vX.Y.Z\", local_dir=DIR)`), "
                  "then `load_dataset(DIR, config)`."]
    lines += ["", "## Citation", "", f"- {PAPER}."]
    lines += list(dict.fromkeys(f"- {c.info.citation}" for c in configs if not c.synthetic_sample))
    return "\n".join(lines) + "\n"
