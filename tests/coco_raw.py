"""Makers of COCO 2014 raw trees for the tests: ``instances_<split>2014.json`` in the exact published format
(top-level keys ``info, images, licenses, annotations, categories`` in file order, the same fields per entry) and
JPEG images synthesised at the annotated sizes. Everything here is generated; no COCO image is used.
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

FIXTURE = Path(__file__).resolve().parent / "data" / "coco2014" / "instances_val2014.json_samples.json"

# A subset of the real COCO category table (id, name, supercategory): sparse ids, names with spaces, and
# supercategories of 1 (person), 2 (kitchen here) and more members.
CATEGORIES = (
    (1, "person", "person"), (2, "bicycle", "vehicle"), (3, "car", "vehicle"), (4, "motorcycle", "vehicle"),
    (6, "bus", "vehicle"), (10, "traffic light", "outdoor"), (11, "fire hydrant", "outdoor"),
    (13, "stop sign", "outdoor"), (17, "cat", "animal"), (18, "dog", "animal"), (19, "horse", "animal"),
    (20, "sheep", "animal"), (27, "backpack", "accessory"), (28, "umbrella", "accessory"), (31, "handbag", "accessory"),
    (44, "bottle", "kitchen"), (46, "wine glass", "kitchen"), (62, "chair", "furniture"), (72, "tv", "electronic"),
    (90, "toothbrush", "indoor"),
)

LICENSES = [{"url": "http://creativecommons.org/licenses/by/2.0/", "id": 4, "name": "Attribution License"}]
INFO = {"description": "COCO 2014 Dataset", "url": "http://cocodataset.org", "version": "1.0", "year": 2014,
        "contributor": "COCO Consortium", "date_created": "2017/09/01"}


def file_name(split: str, image_id: int) -> str:
    return f"COCO_{split}2014_{image_id:012d}.jpg"


def image_entry(split: str, image_id: int, width: int, height: int) -> dict:
    name = file_name(split, image_id)
    return {"license": 4, "file_name": name, "coco_url": f"http://images.cocodataset.org/{split}2014/{name}",
            "height": height, "width": width, "date_captured": "2013-11-14 11:18:45",
            "flickr_url": f"http://farm1.staticflickr.com/1/{image_id}_z.jpg", "id": image_id}


def annotation_entry(ann_id: int, image_id: int, category_id: int, bbox: list[float], iscrowd: int = 0) -> dict:
    x, y, w, h = bbox
    if iscrowd:
        segmentation: object = {"counts": [int(w * h)], "size": [int(y + h) + 1, int(x + w) + 1]}
    else:
        segmentation = [[x, y, x + w, y, x + w, y + h, x, y + h]]
    return {"segmentation": segmentation, "area": round(w * h * 0.7, 4), "iscrowd": iscrowd, "image_id": image_id,
            "bbox": bbox, "category_id": category_id, "id": ann_id}


def category_entries(table=CATEGORIES) -> list[dict]:
    return [{"supercategory": sup, "id": cid, "name": name} for cid, name, sup in table]


def instances(images: list[dict], annotations: list[dict], categories: list[dict]) -> dict:
    """An instances file body with the published key order."""
    return {"info": INFO, "images": images, "licenses": LICENSES, "annotations": annotations,
            "categories": categories}


def synth_jpeg(width: int, height: int, seed: int, mode: str = "RGB", quality: int = 90) -> bytes:
    """A smooth random texture (an upscaled coarse noise image), so that every crop has distinct pixels."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, size=(height // 8 + 2, width // 8 + 2, 3), dtype=np.uint8)
    img = Image.fromarray(coarse, "RGB").resize((width, height), Image.Resampling.BILINEAR)
    if mode != "RGB":
        img = img.convert(mode)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


@dataclass
class RawTree:
    """A COCO raw folder being made: add images and annotations, then :meth:`write`."""

    root: Path
    split: str = "val"
    categories: list[dict] = field(default_factory=category_entries)
    images: list[dict] = field(default_factory=list)
    annotations: list[dict] = field(default_factory=list)
    image_bytes: dict[str, bytes] = field(default_factory=dict)
    next_ann: int = 1000

    def add_image(self, image_id: int, width: int, height: int, boxes: list[tuple[int, list[float]]] = (),
                  crowd: list[tuple[int, list[float]]] = (), mode: str = "RGB", data: bytes | None = None) -> str:
        """An image with non-crowd ``boxes`` and ``crowd`` regions, as (category_id, [x, y, w, h])."""
        entry = image_entry(self.split, image_id, width, height)
        self.images.append(entry)
        self.image_bytes[entry["file_name"]] = data if data is not None else synth_jpeg(width, height, image_id, mode)
        for cat, bbox in boxes:
            self.next_ann += 1
            self.annotations.append(annotation_entry(self.next_ann, image_id, cat, bbox))
        for cat, bbox in crowd:
            self.next_ann += 1
            self.annotations.append(annotation_entry(self.next_ann, image_id, cat, bbox, iscrowd=1))
        return entry["file_name"]

    @property
    def folder(self) -> str:
        return f"{self.split}2014"

    @property
    def annotation_path(self) -> Path:
        return self.root / "annotations" / f"instances_{self.folder}.json"

    def body(self) -> dict:
        return instances(self.images, self.annotations, self.categories)

    def write(self, zipped: bool = False) -> Path:
        """Write the tree: extracted folders, or the two published zip archives."""
        self.root.mkdir(parents=True, exist_ok=True)
        text = json.dumps(self.body())  # one line, as published
        if zipped:
            with zipfile.ZipFile(self.root / "annotations_trainval2014.zip", "w", zipfile.ZIP_DEFLATED) as zf:
                zf.writestr(f"annotations/instances_{self.folder}.json", text)
            with zipfile.ZipFile(self.root / f"{self.folder}.zip", "w", zipfile.ZIP_STORED) as zf:
                zf.writestr(f"{self.folder}/", "")
                for name, data in sorted(self.image_bytes.items()):
                    zf.writestr(f"{self.folder}/{name}", data)
            return self.root
        self.annotation_path.parent.mkdir(parents=True, exist_ok=True)
        self.annotation_path.write_text(text, encoding="utf-8")
        (self.root / self.folder).mkdir(exist_ok=True)
        for name, data in self.image_bytes.items():
            (self.root / self.folder / name).write_bytes(data)
        return self.root


def varied_tree(root: Path, n: int, split: str = "val", seed: int = 0, categories=CATEGORIES) -> RawTree:
    """``n`` single-object images of varied sizes and boxes (every direction is feasible for some of them),
    plus images that must be excluded: multi-object, crowd-only, object + crowd, tiny box, no annotation."""
    rng = np.random.default_rng(seed)
    tree = RawTree(root, split, category_entries(categories))
    cat_ids = [c["id"] for c in tree.categories]
    c0, c1 = cat_ids[0], cat_ids[1]
    for i in range(n):
        width, height = int(rng.integers(160, 321)), int(rng.integers(140, 281))
        bw, bh = float(rng.uniform(70, width * 0.6)), float(rng.uniform(70, height * 0.6))
        x, y = float(rng.uniform(0, width - bw)), float(rng.uniform(0, height - bh))
        mode = "L" if i % 11 == 5 else "RGB"
        tree.add_image(100 + i, width, height, [(cat_ids[i % len(cat_ids)], [round(x, 2), round(y, 2),
                                                                             round(bw, 2), round(bh, 2)])], mode=mode)
    tree.add_image(90001, 200, 160, [(c0, [10.0, 10.0, 80.0, 80.0]), (c1, [100.0, 60.0, 80.0, 80.0])])
    tree.add_image(90002, 200, 160, crowd=[(c0, [20.0, 20.0, 120.0, 100.0])])
    tree.add_image(90003, 200, 160, [(c1, [50.0, 40.0, 90.0, 80.0])], crowd=[(c0, [0.0, 0.0, 60.0, 60.0])])
    tree.add_image(90004, 200, 160, [(c1, [50.0, 40.0, 12.5, 60.0])])  # tiny: 13 px wide after rounding
    tree.add_image(90005, 200, 160)
    return tree
