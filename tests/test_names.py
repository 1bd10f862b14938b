"""One check for strings that reach options, categories, paths and checksum lines; symlinks leaving --raw."""

from __future__ import annotations

from pathlib import Path

import pytest

from pb_build.errors import BadRecord, printable
from pb_build.names import check_component, check_text


@pytest.mark.parametrize("value", ["a\nb", "a\rb", "tab\there", "nul\x00", "esc\x1b[0m", "nel\x85", "ls\u2028"])
def test_control_characters_are_refused_with_file_and_field(value: str) -> None:
    with pytest.raises(BadRecord) as err:
        check_text(value, "labels.csv", "answer", 7)
    text = str(err.value)
    assert text.startswith("labels.csv:7: answer ") and "control character" in text and "\n" not in text


@pytest.mark.parametrize("value", ["", ".", "..", "a/b", "a\\b"])
def test_path_components_are_plain_names(value: str) -> None:
    with pytest.raises(BadRecord, match="segment .* is not a plain file or folder name"):
        check_component(value, "Data/test", "segment")
    assert check_component("Zoë café 2", "x", "segment") == "Zoë café 2"
    assert check_text("Do g. / ok", "x", "answer") == "Do g. / ok"


def test_messages_naming_odd_paths_stay_on_one_line() -> None:
    assert str(BadRecord("raw/a\nb.jpg", "cause")) == "raw/a\\nb.jpg: cause"
    assert printable("tab\tand\x85") == "tab\\tand\\x85"


def test_control_characters_in_coco_categories_and_imagenet_c_file_names(tmp_path: Path) -> None:
    from pb_build.raw import coco, imagenet_c

    with pytest.raises(ValueError, match=r"name 'Do\\ng' contains the control character"):
        coco._category({"id": 1, "name": "Do\ng", "supercategory": "animal"}, 0)
    image = {"id": 1, "file_name": "a\nb.jpg", "width": 4, "height": 4}
    with pytest.raises(ValueError, match=r"file_name 'a\\nb.jpg' contains the control character"):
        coco._image(image, 0)
    with pytest.raises(ValueError, match=r"not a plain file or folder name"):
        coco._image({**image, "file_name": "x/../y.jpg"}, 0)
    folder = tmp_path / "n01440764"
    folder.mkdir()
    (folder / "ok.JPEG").write_bytes(b"x")
    (folder / "bad\nname.JPEG").write_bytes(b"x")
    skipped: list[BadRecord] = []
    assert imagenet_c.list_images(folder, skipped.append) == ["ok.JPEG"]
    assert "file name 'bad\\nname.JPEG' contains the control character" in skipped[0].cause


def test_the_control_character_set_is_unicode_cc_zl_and_zp() -> None:
    import sys
    import unicodedata

    from pb_build.names import CONTROL

    every = "".join(map(chr, range(sys.maxunicode + 1)))
    expected = {ch for ch in every if unicodedata.category(ch) in ("Cc", "Zl", "Zp")}
    assert set(CONTROL.findall(every)) == expected and len(expected) == 67


def test_symlinks_leaving_raw_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pb_build import names

    raw, outside = tmp_path / "raw", tmp_path / "outside.png"
    raw.mkdir()
    outside.write_bytes(b"x")
    (raw / "inside.png").write_bytes(b"x")
    (raw / "link.png").symlink_to(outside)
    (raw / "local-link.png").symlink_to(raw / "inside.png")
    monkeypatch.setenv(names.FOLLOW_ENV, "0")
    names.check_inside(raw, [raw / "inside.png", raw / "local-link.png", tmp_path / "table.csv"])
    with pytest.raises(BadRecord, match=r"link\.png: is a symlink leading outside --raw .*--follow-symlinks"):
        names.check_inside(raw, [raw / "link.png"])
    monkeypatch.setenv(names.FOLLOW_ENV, "1")
    names.check_inside(raw, [raw / "link.png"])


def test_a_symlinked_folder_leaving_raw_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pb_build import names

    raw, elsewhere = tmp_path / "raw", tmp_path / "elsewhere"
    (raw / "kept").mkdir(parents=True)
    elsewhere.mkdir()
    for folder in (raw / "kept", elsewhere):
        (folder / "a.png").write_bytes(b"x")
        (folder / "b.png").write_bytes(b"x")
    (raw / "moved").symlink_to(elsewhere)
    (raw / "inner").symlink_to(raw / "kept")
    monkeypatch.setenv(names.FOLLOW_ENV, "0")
    names.check_inside(raw, [raw / "kept" / "a.png", raw / "inner" / "a.png", raw / "inner" / "b.png"])
    with pytest.raises(BadRecord, match=r"moved/b\.png: is a symlink leading outside --raw \(to .*elsewhere/b\.png\)"):
        names.check_inside(raw, [raw / "kept" / "a.png", raw / "moved" / "b.png"])


def test_follow_symlinks_is_a_shared_option() -> None:
    from click.testing import CliRunner

    from pb_build.cli import main

    for command in ("rod", "vsod", "mvp-n", "coco", "imagenet-c", "quickdraw", "changeit", "build", "rebuild"):
        assert "--follow-symlinks" in CliRunner().invoke(main, [command, "--help"]).output, command


def test_a_symlink_reached_through_another_is_resolved(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pb_build import names

    raw, elsewhere = tmp_path / "raw", tmp_path / "elsewhere"
    (raw / "real" / "deep").mkdir(parents=True)
    elsewhere.mkdir()
    for folder in (raw / "real" / "deep", elsewhere):
        (folder / "a.png").write_bytes(b"x")
    (raw / "alias").symlink_to("real")  # relative, stays inside
    (raw / "real" / "away").symlink_to("../../elsewhere")  # relative, leaves --raw
    (raw / "real" / "deep" / "up.png").symlink_to("../../real/deep/a.png")
    monkeypatch.setenv(names.FOLLOW_ENV, "0")
    names.check_inside(raw, [raw / "alias" / "deep" / "a.png", raw / "alias" / "deep" / "up.png", raw])
    with pytest.raises(BadRecord, match=r"alias/away/a\.png: is a symlink leading outside --raw \(to .*/elsewhere/a"):
        names.check_inside(raw, [raw / "alias" / "deep" / "a.png", raw / "alias" / "away" / "a.png"])
