"""QuickDraw raw readers on the real samples and on broken inputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import QD_FIXTURES, drawing_record, square_strokes, write_ndjson

from pb_build.errors import BadRecord
from pb_build.raw.quickdraw import pack_binary, read_drawings
from pb_build.raw.quickdraw_categories import CATEGORIES


def test_category_list_matches_the_official_file() -> None:
    official = [line.rstrip("\n") for line in (QD_FIXTURES / "categories.txt").open() if line.strip()]
    assert list(CATEGORIES) == official
    assert len(CATEGORIES) == 345


def test_simplified_reader_streams_every_real_drawing() -> None:
    path = QD_FIXTURES / "simplified" / "apple.ndjson"
    drawings = list(read_drawings(path))
    assert len(drawings) == 25
    assert [d.line for d in drawings] == list(range(1, 26))
    assert all(d.word == "apple" and d.key_id.isdigit() for d in drawings)
    # The real file has an unrecognised drawing made of degenerate strokes at (255, 0).
    first = drawings[0]
    assert first.recognized is False and first.strokes[0] == ((255, 255), (0, 0))
    line1 = json.loads(path.read_text().splitlines()[1])
    assert drawings[1].strokes == tuple((tuple(s[0]), tuple(s[1])) for s in line1["drawing"])


def test_raw_reader_normalises_like_the_simplified_file() -> None:
    raw = list(read_drawings(QD_FIXTURES / "raw" / "cat.first3.ndjson", "raw"))
    simplified = list(read_drawings(QD_FIXTURES / "simplified" / "cat.ndjson"))[:3]
    assert [d.key_id for d in raw] == [d.key_id for d in simplified]
    for r, s in zip(raw, simplified, strict=True):
        assert r.n_strokes == s.n_strokes
        xs = [x for st in r.strokes for x in st[0]]
        ys = [y for st in r.strokes for y in st[1]]
        assert min(xs) == 0 and min(ys) == 0 and max(max(xs), max(ys)) == pytest.approx(255)
        # Same drawing: the first points agree with the simplified ones within simplification error.
        assert abs(r.strokes[0][0][0] - s.strokes[0][0][0]) < 12
        assert abs(r.strokes[0][1][0] - s.strokes[0][1][0]) < 12


def test_binary_reader_round_trips_packed_real_drawings(tmp_path: Path) -> None:
    simplified = list(read_drawings(QD_FIXTURES / "simplified" / "The Eiffel Tower.ndjson"))
    path = tmp_path / "The Eiffel Tower.bin"
    path.write_bytes(pack_binary(simplified, timestamp=1_490_000_000))
    binary = list(read_drawings(path, "binary"))
    assert [(d.key_id, d.recognized, d.countrycode, d.strokes) for d in binary] == [
        (d.key_id, d.recognized, d.countrycode, d.strokes) for d in simplified
    ]
    assert binary[0].word == "The Eiffel Tower"
    assert binary[0].timestamp == "2017-03-20 08:53:20 UTC"


def test_binary_truncated_record_names_the_record(tmp_path: Path) -> None:
    d = next(read_drawings(write_ndjson(tmp_path / "cat.ndjson", [drawing_record("cat", "1", square_strokes(2))])))
    path = tmp_path / "cat.bin"
    path.write_bytes(pack_binary([d, d])[:-3])
    with pytest.raises(BadRecord, match=r"cat\.bin:2: truncated stroke 1"):
        list(read_drawings(path, "binary"))


GOOD = drawing_record("cat", "123", square_strokes(3))


@pytest.mark.parametrize(
    ("line", "cause"),
    [
        ('{"word": "cat", "key_id": ', "malformed JSON"),
        (json.dumps({**GOOD, "drawing": []}), "drawing has no strokes"),
        (json.dumps({**GOOD, "drawing": [[[1, 300], [2, 3]]]}), "outside the 0-255 grid"),
        (json.dumps({**GOOD, "drawing": [[[1, -1], [2, 3]]]}), "outside the 0-255 grid"),
        (json.dumps({**GOOD, "drawing": [[[1, 2.5], [2, 3]]]}), "outside the 0-255 grid"),
        (json.dumps({**GOOD, "drawing": [[[1, 2], [2]]]}), "unequal"),
        (json.dumps({k: v for k, v in GOOD.items() if k != "key_id"}), "missing key"),
        (json.dumps({**GOOD, "key_id": 123}), "key_id must be a string"),
        (json.dumps({**GOOD, "recognized": "yes"}), "recognized must be"),
        ("[1, 2]", "not a JSON object"),
    ],
)
def test_bad_lines_name_file_line_and_cause(tmp_path: Path, line: str, cause: str) -> None:
    path = tmp_path / "cat.ndjson"
    path.write_text(json.dumps(GOOD) + "\n" + line + "\n" + json.dumps(GOOD) + "\n")
    with pytest.raises(BadRecord) as info:
        list(read_drawings(path))
    assert info.value.line == 2
    assert str(info.value).startswith(f"{path}:2: ")
    assert cause in str(info.value)
    skipped: list[BadRecord] = []
    assert len(list(read_drawings(path, on_bad=skipped.append))) == 2
    assert [b.line for b in skipped] == [2]


def test_truncated_last_line_is_reported_as_truncated(tmp_path: Path) -> None:
    path = tmp_path / "cat.ndjson"
    path.write_text(json.dumps(GOOD) + "\n" + json.dumps(GOOD)[:40])
    with pytest.raises(BadRecord, match=r":2: truncated record"):
        list(read_drawings(path))


def test_missing_file_is_a_bad_record(tmp_path: Path) -> None:
    with pytest.raises(BadRecord, match="cannot open"):
        list(read_drawings(tmp_path / "nope.ndjson"))
