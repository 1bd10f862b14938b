"""An eighth source defined outside pb_build: "Upright", shapes shown rotated until the model asks to rotate them.

It exists only in the test tree and is registered through the ``pb_build.sources`` entry-point group (the tests
write a distribution's ``entry_points.txt``), to prove that a new source needs no edit to ``pb_build/``.

Raw layout: ``<shape>/<name>.png``, upright images. Each sample shows the image rotated by 180, then 90 degrees,
then upright (the reference); "Rotate the image." moves one frame on, as in QuickDraw's chain.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import cv2
import numpy as np

from pb_build.builders.base import (
    ABSTAIN,
    ImportFailure,
    OfficialSpec,
    OnBad,
    Plan,
    Source,
    SourceInfo,
    WorkUnit,
    read_frame,
)
from pb_build.episode import Episode, OfficialExport, OfficialFile, linear_states
from pb_build.errors import BadRecord, PbBuildError
from pb_build.seeding import draw, pick, sample_rng, shuffled
from pb_build.strings import category_string, is_abstain

NAME = "upright"
OFFICIAL_NAME = "Upright"
ROTATE = "Rotate the image."
QUESTIONS = ("What shape is this?", "Which shape is drawn here?")
HINT = "Hint: rotating the image could help."
TURNS = 3  # 180 degrees, 90 degrees, upright


@dataclass(frozen=True)
class Config:
    """Parameters of an Upright build."""

    seed: int = 0
    size: int = dataclasses.field(default=32, metadata={"help": "frame side in pixels"})


def read_raw(raw: Path, on_bad: OnBad) -> list[tuple[str, Path]]:
    """Every (shape, image path) of the raw folder, sorted."""
    if not raw.is_dir():
        raise PbBuildError(f"{raw}: raw folder does not exist")
    out = []
    for path in sorted(raw.glob("*/*.png")):
        if cv2.imread(str(path)) is None:
            bad = BadRecord(path, "not a PNG image")
            if on_bad is None:
                raise bad
            on_bad(bad)
            continue
        out.append((path.parent.name, path))
    return out


def encode(pixels: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".png", pixels)
    assert ok
    return data.tobytes()


def frames_of(path: Path, size: int) -> tuple[bytes, ...]:
    upright = cv2.resize(cv2.imread(str(path)), (size, size), interpolation=cv2.INTER_AREA)
    return tuple(encode(np.rot90(upright, k)) for k in (2, 1, 0))


def template_of(shape: str, stem: str) -> str:
    return f"{OFFICIAL_NAME}/{shape}/{stem}/{{image}}.png"


def _states(n: int, options: tuple[str, ...]):
    return linear_states(n, len(options), tuple(i for i, o in enumerate(options) if not is_abstain(o)))


class UprightSource(Source):
    """The whole source in one class: the typed interface, no module attributes."""

    name = NAME
    VERSION = "0.1.0"
    RELEASE_NOTES = {"0.1.0": "First version."}
    Config = Config
    info = SourceInfo(
        official_name=OFFICIAL_NAME, title="Upright shapes (test source)", licence="CC0-1.0",
        attribution="pb-build tests", homepage="https://example.invalid/upright", citation="none",
        description="Synthetic shapes shown rotated; the model should ask to rotate them.",
    )
    official = OfficialSpec(alias="UP", actions=frozenset({"ROTATE"}), extra_fields={"turns": "int"},
                            oeg_threshold=1, reference_prompt="Which shape is this?")

    def plan(self, raw: Path, config: Config, on_bad: OnBad) -> Plan:
        images = read_raw(raw, on_bad)
        shapes = sorted({shape for shape, _ in images})
        if len(shapes) < 4:
            raise PbBuildError(f"{raw}: needs at least 4 shape folders, has {len(shapes)}")
        units = [WorkUnit(f"{NAME}/{shape}/{path.stem}", (shape, str(path), shapes)) for shape, path in images]
        return Plan(units, [p for _, p in images], raw)

    def make_episode(self, unit: WorkUnit, config: Config) -> Episode:
        shape, path, shapes = unit.payload
        rng = sample_rng(config.seed, NAME, unit.key)
        prompt, abstain = pick(rng, QUESTIONS), pick(rng, ABSTAIN)
        options = shuffled(rng, (ROTATE, abstain))
        others = draw(rng, [s for s in shapes if s != shape], 3)
        categories = shuffled(rng, tuple(category_string(s) for s in (shape, *others)))
        frames = frames_of(Path(path), config.size)
        template = template_of(shape, Path(path).stem)
        record = {"image_template": template, "first_image": 0, "num_images": TURNS, "reference_image": TURNS - 1,
                  "prompt": prompt, "options": list(options), "categories": list(categories),
                  "answer": category_string(shape), "turns": TURNS}
        files = tuple(OfficialFile(template.format(image=k), f) for k, f in enumerate(frames))
        return self._episode(unit.key, record, frames, files, meta={"file": Path(path).name})

    def _episode(self, key: str, record: dict[str, Any], frames: tuple[bytes, ...],
                 files: tuple[OfficialFile, ...], meta: dict[str, Any]) -> Episode:
        options = tuple(record["options"])
        return Episode(
            source=NAME, key=key, prompt=record["prompt"], options=options,
            categories=tuple(record["categories"]), answer=record["answer"], frames=frames,
            states=_states(len(frames), options), reference_frame=record["reference_image"],
            max_steps=record["turns"], hint=HINT, abstain=tuple(i for i, o in enumerate(options) if is_abstain(o)),
            official=OfficialExport(OFFICIAL_NAME, record, files), meta=meta,
        )

    def reachable_paths(self, record: dict[str, Any]) -> list[str]:
        return sorted(record["image_template"].format(image=k) for k in range(record["num_images"]))

    def import_episode(self, record: dict[str, Any], test_dir: Path) -> Episode:
        body = {k: v for k, v in record.items() if k != "id"}
        if record["num_images"] != record["turns"]:
            raise ImportFailure("num_images and turns differ")
        paths = [record["image_template"].format(image=k) for k in range(record["num_images"])]
        frames = tuple(read_frame(test_dir, p) for p in paths)
        parts = PurePosixPath(record["image_template"]).parts
        key = f"{NAME}/{parts[1]}/{parts[2]}" if len(parts) == 4 else f"{NAME}/id-{record['id']}"
        files = tuple(OfficialFile(p, f) for p, f in zip(paths, frames, strict=True))
        return self._episode(key, body, frames, files, meta={})

    def oeg_answers(self, ep: Episode) -> str:
        return f"Rotate the image, {ep.answer.replace('.', '')}."


SOURCE = UprightSource()


class BadEpisodes(UprightSource):
    """Breaks the contract at build time: its episodes have only three categories."""

    name = "upright-bad"

    def make_episode(self, unit: WorkUnit, config: Config) -> Episode:
        ep = super().make_episode(unit, config)
        return dataclasses.replace(ep, source=self.name, categories=ep.categories[:3])


class Incomplete(Source):
    """Breaks the contract at registration: no official spec and no building."""

    name = "incomplete"
    VERSION = "0.1.0"
    Config = Config


class Clash(UprightSource):
    """Takes a built-in source's name."""

    name = "quickdraw"


SHAPES = ("triangle", "square", "circle", "cross", "bar")


def make_raw(root: Path, per_shape: int = 2) -> Path:
    """A raw folder of upright shape images (white shapes with a marker showing which way is up)."""
    for s_idx, shape in enumerate(SHAPES):
        (root / shape).mkdir(parents=True, exist_ok=True)
        for k in range(per_shape):
            img = np.full((40, 40, 3), 255, np.uint8)
            colour = (40 * s_idx % 255, 90 + 30 * k, 200 - 20 * s_idx)
            if shape == "triangle":
                cv2.fillPoly(img, [np.array([[20, 4], [4, 36], [36, 36]], np.int32)], colour)
            elif shape == "square":
                cv2.rectangle(img, (8, 8), (32, 32), colour, -1)
            elif shape == "circle":
                cv2.circle(img, (20, 20), 13, colour, -1)
            elif shape == "cross":
                cv2.line(img, (6, 6), (34, 34), colour, 4)
                cv2.line(img, (34, 6), (6, 34), colour, 4)
            else:
                cv2.rectangle(img, (17, 4), (23, 36), colour, -1)
            cv2.circle(img, (20, 2 + k), 2, (0, 0, 0), -1)  # "up" marker
            cv2.imwrite(str(root / shape / f"{shape}-{k}.png"), img)
    return root
