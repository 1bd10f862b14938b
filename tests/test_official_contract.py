"""The official record contract: reachable paths and record checks on the spec's example records (§15)."""

from __future__ import annotations

from pb_build.builders import REGISTRY


def check_record(official_name: str, record: dict) -> list[str]:
    source = REGISTRY.by_official_name(official_name)
    return source.check_record(record) if source else [f"unknown official source name {official_name!r}"]


def reachable_paths(official_name: str, record: dict) -> list[str]:
    return REGISTRY.by_official_name(official_name).reachable_paths(record)

MVPN = {"id": 5, "image_template": "MVP-N/test/0012/0034/{image}_{informative}.png", "first_image": 3,
        "num_images": 4, "valid_images": [3, 1, 5, 2], "reference_image": 2,
        "prompt": "Could you name the object in this image?",
        "options": ["Change the camera angle of the object.", "I do not know what is this object."],
        "categories": ["Selex whey protein drink peach.", "Selex sports whey protein powder peach.",
                       "Selex sports whey protein powder chocolate.", "Selex whey protein drink chocolate."],
        "answer": "Selex whey protein drink chocolate."}
INC = {"id": 2, "image_template": "ImageNet-C/gaussian_noise/{level}/n02111500/ILSVRC2012_val_00012345.JPEG",
       "first_image": 5, "num_images": 5, "reference_image": 1,
       "prompt": "Provide the classification of the object in the image.",
       "options": ["Denoise the image.", "I do not know what is this object.", "Increase image resolution.",
                   "Reduce brightness.", "Deblur the image."],
       "quality_answer": "Denoise the image.",
       "categories": ["Perfume.", "Great_pyrenees.", "Alligator_lizard.", "Cello."], "answer": "Great_pyrenees."}


def test_mvp_n_paths_are_the_views_the_environment_opens() -> None:
    assert check_record("MVP-N", MVPN) == []
    assert reachable_paths("MVP-N", MVPN) == sorted(
        f"MVP-N/test/0012/0034/{v}.png" for v in ("0003_0", "0001_0", "0005_0", "0002_1"))


def test_imagenet_c_paths_follow_first_image_down() -> None:
    assert check_record("ImageNet-C", INC) == []
    assert reachable_paths("ImageNet-C", INC) == sorted(INC["image_template"].format(level=lv) for lv in range(1, 6))
    short = {**INC, "first_image": 4, "num_images": 3, "reference_image": 1}
    assert reachable_paths("ImageNet-C", short) == sorted(INC["image_template"].format(level=lv) for lv in (1, 2, 3, 4))


def test_record_checks_name_the_problem() -> None:
    assert "quality_answer is not one of the options" in check_record("ImageNet-C", {**INC, "quality_answer": "x."})
    bad = {**MVPN, "options": ["Please wait.", "I do not know what is this object."]}
    assert any("must contain exactly one action key" in p for p in check_record("MVP-N", bad))
    assert check_record("Nope", MVPN) == ["unknown official source name 'Nope'"]
    assert any("field 'valid_images'" in p for p in check_record("MVP-N", {k: v for k, v in MVPN.items()
                                                                            if k != "valid_images"}))
