"""Property-based tests of every raw reader, the recipe reader and verify.

Every input (arbitrary bytes, a valid file truncated at every position, wrong types, missing and extra keys,
unicode and control characters, huge and negative numbers, duplicates) must end in a parsed record, a counted
skip, or one clear error (:class:`PbBuildError`, of which :class:`BadRecord` is one) - never another exception
type. Each test is bounded (``MAX_EXAMPLES`` generated cases plus the truncations) and reports how many cases it
went through (printed, and in the test's report section). The cases are the same on every run, so a red run
can be reproduced; ``PB_FUZZ_RANDOM=1`` draws new ones each run to search further.
"""

from __future__ import annotations

import io
import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from pb_build import imageio
from pb_build.errors import BadRecord, PbBuildError
from pb_build.manifests.recipe import load_recipe, parse_recipe
from pb_build.raw import changeit, coco, imagenet_c, mvp_n, quickdraw, rod, vsod
from pb_build.strings import category_string

try:
    from conftest import drawing_record, square_strokes
except ImportError:  # tests/ imported as a package
    from tests.conftest import drawing_record, square_strokes

MAX_EXAMPLES = 60
FUZZ = settings(max_examples=MAX_EXAMPLES, deadline=None, database=None,
                derandomize=os.environ.get("PB_FUZZ_RANDOM") != "1",
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

# Text with control characters, separators, astral characters and surrogate-free unicode.
TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)
NUMBER = st.one_of(st.integers(min_value=-(2**70), max_value=2**70), st.floats(allow_nan=True),
                   st.sampled_from([0, -1, 2**31, 2**63, 1e308, -1e308]))
JSON = st.recursive(st.none() | st.booleans() | NUMBER | TEXT,
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
                    max_leaves=12)


class Counter:
    """How many cases a reader test went through, and how they ended."""

    def __init__(self) -> None:
        self.outcomes = {"parsed": 0, "skipped": 0, "error": 0}

    def run(self, call: Callable[[Callable[[BadRecord], None]], Any]) -> None:
        """Run ``call(on_bad)``; only a parsed result, counted skips or a PbBuildError are acceptable."""
        skips: list[BadRecord] = []
        try:
            result = call(skips.append)
            if isinstance(result, Iterator):
                list(result)
        except PbBuildError as err:
            text = str(err)
            assert text and "\n" not in text and "Traceback" not in text, text
            self.outcomes["error"] += 1
            return
        for bad in skips:
            assert isinstance(bad, BadRecord) and bad.cause and "\n" not in str(bad)
        self.outcomes["skipped" if skips else "parsed"] += 1

    @property
    def total(self) -> int:
        return sum(self.outcomes.values())


@pytest.fixture
def cases(request: pytest.FixtureRequest) -> Iterator[Counter]:
    counter = Counter()
    yield counter
    line = f"{request.node.name}: {counter.total} cases ({', '.join(f'{k} {v}' for k, v in counter.outcomes.items())})"
    print(line)
    request.node.add_report_section("call", "fuzz cases", line)


def write(tmp: Path, name: str, data: bytes) -> Path:
    path = tmp / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def truncations(valid: bytes) -> list[bytes]:
    """``valid`` cut at every position (the whole file included)."""
    return [valid[:n] for n in range(len(valid) + 1)]


def mutations(doc: Any) -> st.SearchStrategy[Any]:
    """``doc`` with one value replaced by anything, one key dropped or added, or a list item duplicated."""
    paths: list[tuple] = []

    def walk(node: Any, path: tuple) -> None:
        paths.append(path)
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, (*path, k))
        elif isinstance(node, list):
            for i, v in enumerate(node[:3]):
                walk(v, (*path, i))

    walk(doc, ())

    def apply(path: tuple, how: str, value: Any) -> Any:
        new = json.loads(json.dumps(doc))
        if not path:
            return value
        parent = new
        for step in path[:-1]:
            parent = parent[step]
        last = path[-1]
        if how == "replace":
            parent[last] = value
        elif how == "drop":
            del parent[last]
        elif how == "duplicate" and isinstance(parent, list):
            parent.append(parent[last])
        elif how == "extra" and isinstance(parent, dict):
            parent[f"extra-{value!r}"[:20]] = value
        return new

    return st.builds(apply, st.sampled_from(paths), st.sampled_from(["replace", "drop", "duplicate", "extra"]), JSON)


# ---------------------------------------------------------------------------------------------------- QuickDraw

QD_VALID = "".join(json.dumps(drawing_record("cat", str(k), square_strokes(2 + k))) + "\n"
                   for k in range(2)).encode()


def _read_qd(path: Path, fmt: str) -> Callable:
    return lambda on_bad: quickdraw.read_drawings(path, fmt, on_bad)


@FUZZ
@given(data=st.binary(max_size=400), fmt=st.sampled_from(["simplified", "raw", "binary"]))
def test_quickdraw_arbitrary_bytes(data: bytes, fmt: str, tmp_path: Path, cases: Counter) -> None:
    cases.run(_read_qd(write(tmp_path, "cat.ndjson", data), fmt))


@FUZZ
@given(record=mutations(drawing_record("cat", "1", square_strokes(3))))
def test_quickdraw_mutated_records(record: Any, tmp_path: Path, cases: Counter) -> None:
    cases.run(_read_qd(write(tmp_path, "cat.ndjson", (json.dumps(record) + "\n").encode()), "simplified"))


def test_quickdraw_truncated(tmp_path: Path, cases: Counter) -> None:
    binary = quickdraw.pack_binary(list(quickdraw.read_drawings(write(tmp_path, "v.ndjson", QD_VALID))))
    for fmt, valid in (("simplified", QD_VALID), ("binary", binary)):
        for cut in truncations(valid):
            cases.run(_read_qd(write(tmp_path, "cat.ndjson", cut), fmt))


# ---------------------------------------------------------------------------------------------------- COCO

COCO_DOC = {
    "images": [{"id": 1, "file_name": "COCO_val2014_000000000001.jpg", "width": 64, "height": 48,
                "license": 1, "coco_url": "", "date_captured": "", "flickr_url": ""}],
    "annotations": [{"id": 5, "image_id": 1, "category_id": 18, "bbox": [4.0, 5.0, 20.0, 10.0], "area": 200.0,
                     "iscrowd": 0, "segmentation": [[4, 5, 24, 5, 24, 15]]}],
    "categories": [{"id": 18, "name": "dog", "supercategory": "animal"}],
}


def _read_coco(path: Path) -> Callable:
    return lambda on_bad: coco.load_annotations(coco.Source(path), on_bad)


@FUZZ
@given(doc=mutations(COCO_DOC))
def test_coco_mutated_annotations(doc: Any, tmp_path: Path, cases: Counter) -> None:
    cases.run(_read_coco(write(tmp_path, "instances_val2014.json", json.dumps(doc).encode())))


@FUZZ
@given(data=st.binary(max_size=300))
def test_coco_arbitrary_bytes(data: bytes, tmp_path: Path, cases: Counter) -> None:
    cases.run(_read_coco(write(tmp_path, "instances_val2014.json", data)))


def test_coco_truncated(tmp_path: Path, cases: Counter) -> None:
    for cut in truncations(json.dumps(COCO_DOC).encode()):
        cases.run(_read_coco(write(tmp_path, "instances_val2014.json", cut)))


# ---------------------------------------------------------------------------------------------------- VSOD

VOC_VALID = (b"<annotation><size><width>64</width><height>48</height></size><object><bndbox><xmin>1</xmin>"
             b"<ymin>1</ymin><xmax>10</xmax><ymax>10</ymax></bndbox></object></annotation>")
LABELS_VALID = b"segment,question_type,answer,distractors\nseg_a,event_type,Wedding,Concert|Party\n"


@FUZZ
@given(data=st.binary(max_size=300), numbers=st.tuples(NUMBER, NUMBER, NUMBER, NUMBER))
def test_vsod_annotations(data: bytes, numbers: tuple, tmp_path: Path, cases: Counter) -> None:
    cases.run(lambda on_bad: vsod.parse_annotation(write(tmp_path, "a.xml", data)))
    text = VOC_VALID.decode()
    for tag, value in zip(("xmin", "ymin", "xmax", "width"), numbers, strict=True):
        text = text.replace(f"<{tag}>", f"<{tag}>{value}<!--", 1).replace(f"</{tag}>", f"--></{tag}>", 1)
    cases.run(lambda on_bad: vsod.parse_annotation(write(tmp_path, "b.xml", text.encode())))


@FUZZ
@given(rows=st.lists(st.lists(TEXT, max_size=5), max_size=4), data=st.binary(max_size=200))
def test_vsod_labels(rows: list, data: bytes, tmp_path: Path, cases: Counter) -> None:
    buf = io.StringIO()
    buf.write("segment,question_type,answer,distractors\n")
    for row in rows:
        buf.write(",".join(json.dumps(f) for f in row) + "\n")
    for raw_bytes in (buf.getvalue().encode("utf-8", "surrogatepass"), data, LABELS_VALID + data):
        path = write(tmp_path, "labels.csv", raw_bytes)
        cases.run(lambda on_bad, p=path: vsod.read_labels(p, on_bad))


def test_vsod_truncated(tmp_path: Path, cases: Counter) -> None:
    for cut in truncations(VOC_VALID):
        cases.run(lambda on_bad, c=cut: vsod.parse_annotation(write(tmp_path, "a.xml", c)))
    for cut in truncations(LABELS_VALID):
        cases.run(lambda on_bad, c=cut: vsod.read_labels(write(tmp_path, "l.csv", c), on_bad))


# ---------------------------------------------------------------------------------------------------- ROD

OCCLUDERS_VALID = b"# tokens\nbluebl\tblue blocks\ngreenr\tgreen ring\n"
NAME = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="/\x00"), min_size=1, max_size=40)


@FUZZ
@given(data=st.binary(max_size=200), name=NAME)
def test_rod_tables_and_names(data: bytes, name: str, tmp_path: Path, cases: Counter) -> None:
    cases.run(lambda on_bad: rod.read_occluder_table(write(tmp_path, "occ.tsv", data)))
    cases.run(lambda on_bad: rod.read_occluder_table(write(tmp_path, "occ2.tsv", OCCLUDERS_VALID + data)))
    cases.run(lambda on_bad: rod.parse_name(tmp_path / "cup" / f"{name}.jpg", tmp_path))
    cases.run(lambda on_bad: rod.parse_name(tmp_path / f"natural_{name}-cup-s3.jpg", tmp_path))


def test_rod_truncated(tmp_path: Path, cases: Counter) -> None:
    for cut in truncations(OCCLUDERS_VALID):
        cases.run(lambda on_bad, c=cut: rod.read_occluder_table(write(tmp_path, "occ.tsv", c)))


# ---------------------------------------------------------------------------------------------------- MVP-N

MVP_NAMES_VALID = ("class_id,name\n" + "".join(f"{k:04d},Product number {k}\n" for k in range(44))).encode()


@FUZZ
@given(data=st.binary(max_size=200), name=NAME, row=st.tuples(TEXT, TEXT))
def test_mvp_n_names_and_views(data: bytes, name: str, row: tuple, tmp_path: Path, cases: Counter) -> None:
    cases.run(lambda on_bad: mvp_n.read_names(write(tmp_path, "names.csv", data), category_string))
    extra = f"{json.dumps(row[0])},{json.dumps(row[1])}\n".encode()
    cases.run(lambda on_bad: mvp_n.read_names(write(tmp_path, "names2.csv", MVP_NAMES_VALID + extra), category_string))
    cases.run(lambda on_bad: mvp_n.parse_view(tmp_path / "data" / "test" / "0000" / "0001" / f"{name}.png"))


def test_mvp_n_truncated(tmp_path: Path, cases: Counter) -> None:
    for cut in truncations(MVP_NAMES_VALID)[::7]:
        cases.run(lambda on_bad, c=cut: mvp_n.read_names(write(tmp_path, "names.csv", c), category_string))


# ---------------------------------------------------------------------------------------------------- ChangeIt

CHANGEIT_VALID = b"0,0\n1,0\n2,1\n3,2\n4,3\n"


@FUZZ
@given(data=st.binary(max_size=200), rows=st.lists(st.tuples(NUMBER, NUMBER), max_size=6))
def test_changeit_annotations(data: bytes, rows: list, tmp_path: Path, cases: Counter) -> None:
    cases.run(lambda on_bad: changeit.read_annotation(write(tmp_path, "x.fps1.csv", data), "cat", "x"))
    text = "".join(f"{a},{b}\n" for a, b in rows).encode()
    cases.run(lambda on_bad: changeit.read_annotation(write(tmp_path, "y.fps1.csv", text), "cat", "y"))
    cases.run(lambda on_bad: changeit.read_categories(_changeit_dir(tmp_path, data), on_bad))


def _changeit_dir(tmp_path: Path, categories: bytes) -> Path:
    folder = tmp_path / "changeit"
    write(folder, changeit.CATEGORIES_FILE, categories)
    return folder


def test_changeit_truncated(tmp_path: Path, cases: Counter) -> None:
    for cut in truncations(CHANGEIT_VALID):
        cases.run(lambda on_bad, c=cut: changeit.read_annotation(write(tmp_path, "x.fps1.csv", c), "cat", "x"))


# ---------------------------------------------------------------------------------------------------- ImageNet-C

@FUZZ
@given(names=st.lists(NAME, max_size=4, unique=True))
def test_imagenet_c_file_names(names: list[str], tmp_path: Path, cases: Counter) -> None:
    folder = tmp_path / "n01440764"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    for name in names:
        try:
            (folder / f"{name}.JPEG").write_bytes(b"x")
        except OSError:  # a name the file system refuses (too long in bytes)
            continue
    cases.run(lambda on_bad: imagenet_c.list_images(folder, on_bad))


# ---------------------------------------------------------------------------------------------------- images

def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (6, 4), (10, 200, 30)).save(buf, format="PNG")
    return buf.getvalue()


@FUZZ
@given(data=st.binary(max_size=300), suffix=st.sampled_from([".png", ".jpg"]))
def test_images_arbitrary_bytes(data: bytes, suffix: str, cases: Counter) -> None:
    cases.run(lambda on_bad: imageio.frame_bytes(data, "f" + suffix, suffix, max_side=3))
    cases.run(lambda on_bad: imagenet_c.decode_rgb(_png()[:20] + data, "g.png"))


def test_images_truncated(cases: Counter) -> None:
    for cut in truncations(_png()):
        cases.run(lambda on_bad, c=cut: imageio.frame_bytes(c, "f.png", ".png"))


# ---------------------------------------------------------------------------------------------------- recipes

RECIPE_DOC = {"release": "demo", "version": "1.0.0", "description": "x",
              "sources": {"quickdraw": {"raw": "sample", "seed": 1, "parameters": {"per_class": 2}}}}


@FUZZ
@given(doc=mutations(RECIPE_DOC))
def test_recipe_reader(doc: Any, tmp_path: Path, cases: Counter) -> None:
    cases.run(lambda on_bad: parse_recipe(doc, tmp_path / "r.yaml"))
    cases.run(lambda on_bad: load_recipe(str(write(tmp_path, "j.yaml", json.dumps(doc).encode()))))


@settings(FUZZ, derandomize=True)
@given(data=st.binary(max_size=200))
def test_recipe_file_bytes(data: bytes, tmp_path: Path, cases: Counter) -> None:
    cases.run(lambda on_bad: load_recipe(str(write(tmp_path, "r.yaml", data))))


def test_recipe_truncated(tmp_path: Path, cases: Counter) -> None:
    import yaml

    for cut in truncations(yaml.safe_dump(RECIPE_DOC).encode()):
        cases.run(lambda on_bad, c=cut: load_recipe(str(write(tmp_path, "r.yaml", c))))


# ---------------------------------------------------------------------------------------------------- verify

@pytest.fixture(scope="module")
def small_release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pb_build.build import SourceJob, build_release
    from pb_build.builders import quickdraw as qd_builder

    base = tmp_path_factory.mktemp("fuzz-release")
    raw_dir = base / "raw"
    raw_dir.mkdir()
    lines = [json.dumps(drawing_record(w, f"{n}{k}", square_strokes(3 + k)))
             for n, w in enumerate(("cat", "dog"), start=1) for k in range(4)]
    for word in ("cat", "dog"):
        (raw_dir / f"{word}.ndjson").write_text("\n".join(li for li in lines if f'"{word}"' in li) + "\n")
    out = base / "rel"
    build_release(out, [SourceJob(qd_builder, qd_builder.Config(per_class=2, pool=4), raw_dir)], progress=False)
    return out


def damage(release: Path, tmp_path: Path, pick: int, how: str, data: bytes, cut: float,
           manifest: bool) -> tuple[Path, bool]:
    """A copy of ``release`` with one file (the manifest, or one of the others) replaced, cut or emptied."""
    copy = tmp_path / "rel"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(release, copy)
    files = sorted(p for p in copy.rglob("*") if p.is_file() and (p.name == "manifest.json") == manifest)
    target = files[pick % len(files)]
    original = target.read_bytes()
    target.write_bytes(data if how == "bytes" else original[: int(len(original) * cut)] if how == "truncate" else b"")
    return copy, target.read_bytes() != original


DAMAGE = dict(pick=st.integers(min_value=0), how=st.sampled_from(["bytes", "truncate", "empty"]),
              data=st.binary(max_size=200), cut=st.floats(min_value=0, max_value=1))
VERIFY = settings(max_examples=6, deadline=None, database=None,  # each case verifies a whole release (~1-2 s)
                  suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@VERIFY
@given(**DAMAGE)
def test_verify_damaged_release(small_release: Path, pick: int, how: str, data: bytes, cut: float,
                                tmp_path: Path, cases: Counter) -> None:
    from pb_build.verify import verify_release

    copy, changed = damage(small_release, tmp_path, pick, how, data, cut, manifest=False)

    def check(on_bad: Callable) -> None:
        result = verify_release(copy)
        if changed:
            assert result.problems, "a file changed but verify found no problem"

    cases.run(check)


@settings(VERIFY, derandomize=True)
@given(**DAMAGE)
def test_verify_damaged_manifest(small_release: Path, pick: int, how: str, data: bytes, cut: float,
                                 tmp_path: Path, cases: Counter) -> None:
    from pb_build.verify import verify_release

    copy, _ = damage(small_release, tmp_path, pick, how, data, cut, manifest=True)
    cases.run(lambda on_bad: verify_release(copy))
