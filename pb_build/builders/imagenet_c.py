"""ImageNet-C: a corrupted photo; the model should ask for the one quality fix that undoes the corruption.

Construction (ProactiveBench, arXiv 2603.19466, App. A.4; raw layouts in :mod:`pb_build.raw.imagenet_c`):
* Raw input is either the published ImageNet-C tree (``<corruption>/<severity 1-5>/<wnid>/<file>.JPEG``; its
  JPEG files are the frames, copied byte for byte) or clean ImageNet-val-style images (``<wnid>/<file>``),
  corrupted by pb-build with ``imagecorruptions`` (see :mod:`pb_build.raw.imagenet_c`): Resize(256) +
  CenterCrop(224) (``--image-size``), the corruption at severities 5..1, JPEG quality 85 (``--jpeg-quality``),
  optimised. The corruption at severity s draws every random number from ``RandomState(u32)``, u32 the first
  draw of ``sample_rng(seed, name, "<key>/severity<s>")``, so rebuilds are byte-identical.
* ``--corruptions``: ``benchmark`` (default) = the 16 corruptions of the 19 without snow, frost and fog (the
  spec's hypothesis for "16 corruptions, 8 proactive actions"), ``all`` = the 19, or a comma-separated list.
  On the tree, the chosen corruptions that are present are used (an explicitly named absent one is an error).
* ``per_class`` images (default 5) per class: the candidates are the image names of the class (on the tree, the
  union over the used corruptions at severity 5); the ``per_class`` with the smallest
  ``sample_rank(seed, name, "<wnid>/<file>")`` are kept, so a choice does not depend on its neighbours. Each kept
  image gets the corruption (among those holding it) with the smallest ``sample_rank(seed, name,
  "<wnid>/<file>/<corruption>")``. The sample key is ``imagenet-c/<wnid>/<file>``.
* Frames: severity 5, 4, 3, 2, 1 (``frames[k]`` is severity 5 - k). Official record: ``first_image`` 5,
  ``num_images`` 5, ``reference_image`` 1, template ``ImageNet-C/<corruption>/{level}/<wnid>/<file>`` (clean
  input: ``<file stem>.JPEG``). States k = 0..4 show all 5 options at every turn (the official environment
  never removes one); in states 0..3 the quality answer is valid and leads to k + 1, and the category is valid;
  in state 4 (the last turn) only the category is valid, so a quality option there fails. ``max_steps`` 5.
* Options: the one valid quality option (``quality_answer``, from the table below) plus three other quality
  options drawn from the other seven actions, and one abstain option (pool of 3), shuffled once. Every quality
  option holds exactly one IN-C action key. A question from a pool of 15. The answer and three other classes
  drawn uniformly from the 999 others, shuffled once. All from ``sample_rng(seed, name, key)``.
* Class names: the first WordNet lemma of the class with spaces joined by ``_`` (Keras style), then
  ``str.capitalize()`` + ``.`` (``Great_pyrenees.``). Six names collide after capitalisation and are
  disambiguated (``DISAMBIGUATED``): the two ``crane``, the two ``maillot`` and ``Cardigan`` / ``cardigan``.

Corruption -> action key -> quality option (``ACTION_OF``, ``QUALITY_OPTIONS``):

  gaussian_noise, shot_noise, impulse_noise, speckle_noise         denoise      Denoise the image.
  defocus_blur, glass_blur, motion_blur, zoom_blur, gaussian_blur  deblur       Deblur the image.
  brightness                                                       brightness   Reduce brightness.
  contrast; fog (pb-build choice: fog washes contrast out)         contrast     Increase the contrast.
  saturate                                                         saturation   Correct the color saturation.
  jpeg_compression                                                 compression  Reduce the image compression.
  pixelate                                                         resolution   Increase image resolution.
  elastic_transform, spatter; snow, frost (pb-build choice)        artifacts    Remove the artifacts.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from pb_build import imageio
from pb_build.builders.base import ABSTAIN, OnBad, Plan, SourceInfo, WorkUnit
from pb_build.episode import Episode, OfficialExport, OfficialFile, linear_states
from pb_build.errors import BadRecord, PbBuildError, handle_bad
from pb_build.names import check_inside
from pb_build.raw import imagenet_c as raw
from pb_build.raw.imagenet_classes import SYNSETS
from pb_build.seeding import draw, pick, sample_rank, sample_rng, shuffled
from pb_build.strings import category_string

name = "imagenet-c"
VERSION = "1.0.0"
RELEASE_NOTES = {"1.0.0": "First pb-build ImageNet-C builder (published tree or regenerated from clean images)."}
POOL_VERSION = "pb-build-inc-1"

info = SourceInfo(
    official_name="ImageNet-C",
    title="ImageNet-C",
    licence="ImageNet-C: Apache-2.0 code, data reported CC BY 4.0 (Zenodo 2235448); the pictures are ImageNet "
    "validation images under ImageNet's non-commercial research terms",
    attribution="ImageNet-C by Dan Hendrycks and Thomas Dietterich (ICLR 2019), built on ImageNet (Deng et al. "
    "2009); class names from WordNet via timm's imagenet_synset_to_lemma.txt; regenerated corruptions use "
    "imagecorruptions (Michaelis et al. 2019, Apache-2.0).",
    homepage="https://github.com/hendrycks/robustness",
    citation="Hendrycks, D., Dietterich, T. Benchmarking Neural Network Robustness to Common Corruptions and "
    "Perturbations. ICLR 2019.",
    description="ImageNet validation images under one of the ImageNet-C corruptions, shown from severity 5 to "
    "1; the model should ask for the matching quality fix before naming the class.",
)

HINT = "Hint: enhancing the image quality could help with classification."
FIRST_LEVEL, REFERENCE_LEVEL, NUM_LEVELS = 5, 1, 5

QUESTIONS = (
    "Provide the classification of the object in the image.",
    "What type of object do you see here?",
    "What is the main object in this image?",
    "Which category does the object in this picture belong to?",
    "Identify the object shown in the image.",
    "What object is depicted in this photo?",
    "Can you classify the object in this image?",
    "What is the category of the object in the picture?",
    "Name the object that appears in this image.",
    "What kind of object is shown here?",
    "Tell me which object this image contains.",
    "What is pictured in this image?",
    "Classify the content of this photo.",
    "Which object can you recognize in this picture?",
    "What is the subject of this image?",
)


# One option per IN-C action key; each string holds exactly that key and no other.
QUALITY_OPTIONS: dict[str, str] = {
    "denoise": "Denoise the image.",
    "deblur": "Deblur the image.",
    "brightness": "Reduce brightness.",
    "contrast": "Increase the contrast.",
    "saturation": "Correct the color saturation.",
    "compression": "Reduce the image compression.",
    "resolution": "Increase image resolution.",
    "artifacts": "Remove the artifacts.",
}

ACTION_OF: dict[str, str] = {
    "gaussian_noise": "denoise", "shot_noise": "denoise", "impulse_noise": "denoise", "speckle_noise": "denoise",
    "defocus_blur": "deblur", "glass_blur": "deblur", "motion_blur": "deblur", "zoom_blur": "deblur",
    "gaussian_blur": "deblur",
    "brightness": "brightness",
    "contrast": "contrast", "fog": "contrast",
    "saturate": "saturation",
    "jpeg_compression": "compression",
    "pixelate": "resolution",
    "elastic_transform": "artifacts", "spatter": "artifacts", "snow": "artifacts", "frost": "artifacts",
}

BENCHMARK_CORRUPTIONS = tuple(c for c in raw.CORRUPTIONS if c not in ("snow", "frost", "fog"))

# Names that collide after str.capitalize() (crane x2, maillot x2, Cardigan/cardigan), made distinct.
DISAMBIGUATED: dict[str, str] = {
    "n02012849": "crane_(bird)",
    "n03126707": "crane_(machine)",
    "n03710637": "maillot_(tights)",
    "n03710721": "maillot_(tank_suit)",
    "n02113186": "Cardigan_(corgi)",
    "n02963159": "cardigan_(sweater)",
}

LEMMAS: dict[str, str] = dict(SYNSETS)
CLASS_NAMES: dict[str, str] = {
    wnid: DISAMBIGUATED.get(wnid, lemma.split(",")[0].strip().replace(" ", "_")) for wnid, lemma in SYNSETS
}


@dataclass(frozen=True)
class Config:
    """Parameters of an ImageNet-C build; every field is recorded in the manifest."""

    per_class: int = field(default=5, metadata={"help": "Images per class."})
    layout: str = field(default="auto", metadata={
        "help": "Raw layout: auto, imagenet-c (<corruption>/<severity>/<wnid>/<file>) or clean (<wnid>/<file>)."})
    corruptions: str = field(default="benchmark", metadata={
        "help": "benchmark (16: all but snow, frost, fog), all (19), or a comma-separated list."})
    classes: str = field(default="", metadata={
        "help": "Comma-separated wnids to build [default: every class folder of --raw]."})
    image_size: int = field(default=224, metadata={
        "help": "Clean layout: center-crop side after resizing the short side to size*256/224."})
    jpeg_quality: int = field(default=85, metadata={"help": "Clean layout: JPEG quality of the regenerated frames."})
    seed: int = 0

    @property
    def corruption_list(self) -> tuple[str, ...]:
        key = self.corruptions.strip()
        if key == "benchmark":
            return BENCHMARK_CORRUPTIONS
        if key == "all":
            return raw.CORRUPTIONS
        wanted = {c.strip() for c in key.split(",") if c.strip()}
        return tuple(c for c in raw.CORRUPTIONS if c in wanted)

    @property
    def class_list(self) -> list[str]:
        return sorted({c.strip() for c in self.classes.split(",") if c.strip()})

    def __post_init__(self) -> None:
        if self.per_class < 1:
            raise PbBuildError("--per-class must be at least 1")
        if self.layout not in ("auto", *raw.LAYOUTS):
            raise PbBuildError(f"--layout must be auto or one of {', '.join(raw.LAYOUTS)}")
        key = self.corruptions.strip()
        if key not in ("benchmark", "all"):
            names = [c.strip() for c in key.split(",") if c.strip()]
            unknown = [c for c in names if c not in raw.CORRUPTIONS]
            if unknown or not names:
                raise PbBuildError(f"--corruptions: unknown corruption(s) {', '.join(map(repr, unknown)) or '(none)'}"
                                   f"; use benchmark, all, or names from {', '.join(raw.CORRUPTIONS)}")
        unknown = [w for w in self.class_list if w not in LEMMAS]
        if unknown:
            raise PbBuildError(f"--classes: unknown wnid(s) {', '.join(unknown)} (not ImageNet-1k classes)")
        if not 32 <= self.image_size <= 1024:
            raise PbBuildError("--image-size must be between 32 and 1024")
        if not 1 <= self.jpeg_quality <= 100:
            raise PbBuildError("--jpeg-quality must be between 1 and 100")


@dataclass(frozen=True)
class Sample:
    """One planned sample: the raw image (tree or clean) and the corruption it is shown under."""

    image: raw.TreeImage | raw.CleanImage
    corruption: str
    layout: str


def sample_dir() -> Path | None:
    """No bundled sample: ImageNet pictures cannot be redistributed."""
    return None


CAN_FETCH = False  # fetch() only says how to get the data by hand


def fetch(config: Config, cache_dir: Path | None, progress: bool) -> Path:
    raise PbBuildError(
        f"pb-build does not download ImageNet-C (about 62 GB): get noise.tar, blur.tar, weather.tar, digital.tar "
        f"and extra.tar from {raw.ZENODO}, extract them into one folder and pass it with --raw, or pass --raw with "
        "clean ImageNet val images in <wnid>/<file> folders to regenerate the corruptions")


def plan(raw_dir: Path, config: Config, on_bad: OnBad) -> Plan:
    """Pick ``per_class`` images per class and a corruption for each; return them as work units."""
    if not raw_dir.is_dir():
        raise PbBuildError(f"{raw_dir}: raw folder does not exist or is not a folder")
    layout = raw.detect_layout(raw_dir) if config.layout == "auto" else config.layout
    notes: dict = {"layout": layout, "pool_version": POOL_VERSION, "action_of": ACTION_OF,
                   "quality_options": QUALITY_OPTIONS, "disambiguated_class_names": DISAMBIGUATED}
    if layout == "imagenet-c":
        units, files, used = _plan_tree(raw_dir, config, on_bad)
        notes["frames"] = "the published ImageNet-C JPEG files, copied byte for byte"
    else:
        notes["versions"] = raw.corruption_engine_versions()  # fails here, once, when imagecorruptions is missing
        units, files, used = _plan_clean(raw_dir, config, on_bad)
        resize = round(config.image_size * 256 / 224)
        notes["frames"] = (f"regenerated with imagecorruptions from clean images: Resize({resize}) + "
                           f"CenterCrop({config.image_size}), JPEG quality {config.jpeg_quality}, optimize")
    notes["corruptions"] = list(used)
    check_inside(raw_dir, files)
    return Plan(units=units, raw_files=files, raw_root=raw_dir, notes=notes)


def _classes(found: list[str], config: Config, raw_dir: Path) -> list[str]:
    if not config.class_list:
        return found
    missing = sorted(set(config.class_list) - set(found))
    if missing:
        raise PbBuildError(f"{raw_dir}: no class folder for wnid(s) {', '.join(missing)}")
    return [w for w in found if w in set(config.class_list)]


def _choose(wnid: str, candidates: dict[str, list[str]], config: Config) -> list[tuple[str, str]]:
    """(file, corruption) of the ``per_class`` images with the smallest ranks, in file order."""
    ranked = sorted(candidates, key=lambda f: sample_rank(config.seed, name, f"{wnid}/{f}"))
    chosen = set(ranked[: config.per_class])
    return [(f, min(candidates[f], key=lambda c: sample_rank(config.seed, name, f"{wnid}/{f}/{c}")))
            for f in sorted(chosen)]


def _plan_tree(root: Path, config: Config, on_bad: OnBad) -> tuple[list[WorkUnit], list[Path | str], tuple[str, ...]]:
    wanted = config.corruption_list
    present = tuple(c for c in wanted if (root / c).is_dir())
    preset = config.corruptions.strip()
    if preset in ("benchmark", "all"):
        if not present:
            raise PbBuildError(f"{root}: no folder for any of the {len(wanted)} '{preset}' corruptions; choose the "
                               "ones you have with --corruptions")
    elif len(present) < len(wanted):
        missing = [c for c in wanted if c not in present]
        raise PbBuildError(f"{root}: no folder for corruption(s) {', '.join(missing)}")
    by_wnid = raw.scan_tree(root, present, on_bad)
    units: list[WorkUnit] = []
    files: list[Path | str] = []
    used: set[str] = set()
    for wnid in _classes(list(by_wnid), config, root):
        candidates: dict[str, list[str]] = {}
        for corruption in by_wnid[wnid]:
            # A string path: a Path per class and corruption was a tenth of planning
            for file in raw.list_images(os.path.join(root, corruption, "5", wnid), on_bad):
                candidates.setdefault(file, []).append(corruption)
        for file, corruption in _choose(wnid, candidates, config):
            try:
                image = raw.tree_image(root, corruption, wnid, file)
            except BadRecord as bad:
                handle_bad(bad, on_bad)
                continue
            units.append(WorkUnit(f"{name}/{wnid}/{file}", Sample(image, corruption, "imagenet-c")))
            files += image.paths
            used.add(corruption)
    return units, files, tuple(c for c in raw.CORRUPTIONS if c in used)


def _plan_clean(root: Path, config: Config, on_bad: OnBad) -> tuple[list[WorkUnit], list[Path | str], tuple[str, ...]]:
    corruptions = config.corruption_list
    units: list[WorkUnit] = []
    files: list[Path | str] = []
    for wnid in _classes(raw.scan_clean(root, on_bad), config, root):
        images = {img.file: img for img in raw.clean_images(root, wnid, on_bad)}
        for file, corruption in _choose(wnid, {f: list(corruptions) for f in images}, config):
            units.append(WorkUnit(f"{name}/{wnid}/{file}", Sample(images[file], corruption, "clean")))
            files.append(images[file].path)
    return units, files, corruptions


def _frames(sample: Sample, key: str, config: Config) -> tuple[bytes, ...]:
    """The frames at severities 5, 4, 3, 2, 1."""
    levels = range(FIRST_LEVEL, 0, -1)
    image = sample.image
    if isinstance(image, raw.TreeImage):
        return tuple(raw.read_image(image.paths[level - 1]) for level in levels)
    clean = raw.resize_center_crop(raw.decode_rgb(imageio.read_bytes(image.path), image.path), config.image_size)
    out = []
    for level in levels:
        seed = int(sample_rng(config.seed, name, f"{key}/severity{level}").integers(2**32))
        out.append(raw.encode_jpeg(raw.corrupt(clean, sample.corruption, level, seed), config.jpeg_quality))
    return tuple(out)


def build(unit: WorkUnit, config: Config) -> Episode:
    """Build the episode of one (image, corruption) pair."""
    sample: Sample = unit.payload
    image, corruption = sample.image, sample.corruption
    rng = sample_rng(config.seed, name, unit.key)
    prompt, abstain = pick(rng, QUESTIONS), pick(rng, ABSTAIN)
    action = ACTION_OF[corruption]
    others = [a for a in QUALITY_OPTIONS if a != action]
    quality = [QUALITY_OPTIONS[action], *(QUALITY_OPTIONS[a] for a in draw(rng, others, 3))]
    options = shuffled(rng, (*quality, abstain))
    wnids = shuffled(rng, (image.wnid, *draw(rng, [w for w in raw.WNIDS if w != image.wnid], 3)))
    categories = tuple(category_string(CLASS_NAMES[w]) for w in wnids)
    answer = category_string(CLASS_NAMES[image.wnid])
    frames = _frames(sample, unit.key, config)
    q_idx, a_idx = options.index(quality[0]), options.index(abstain)
    states = linear_states(NUM_LEVELS, len(options), (q_idx,))
    file = image.file if isinstance(image, raw.TreeImage) else f"{Path(image.file).stem}.JPEG"
    folder = f"{info.official_name}/{corruption}"
    record = {
        "image_template": f"{folder}/{{level}}/{image.wnid}/{file}",
        "first_image": FIRST_LEVEL,
        "num_images": NUM_LEVELS,
        "reference_image": REFERENCE_LEVEL,
        "prompt": prompt,
        "options": list(options),
        "quality_answer": quality[0],
        "categories": list(categories),
        "answer": answer,
    }
    files = tuple(OfficialFile(f"{folder}/{FIRST_LEVEL - k}/{image.wnid}/{file}", frames[k]) for k in range(NUM_LEVELS))
    return Episode(
        source=name,
        key=unit.key,
        prompt=prompt,
        options=options,
        categories=categories,
        answer=answer,
        frames=frames,
        states=states,
        reference_frame=FIRST_LEVEL - REFERENCE_LEVEL,
        max_steps=NUM_LEVELS,
        hint=HINT,
        abstain=(a_idx,),
        official=OfficialExport(info.official_name, record, files),
        meta={"wnid": image.wnid, "lemma": LEMMAS[image.wnid], "class_index": raw.WNIDS.index(image.wnid),
              "corruption": corruption, "action": action, "file": image.file, "layout": sample.layout},
    ).validate()
