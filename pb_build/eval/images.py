"""Images prepared per model family as the official scripts prepare them.

The official example loads Qwen models' images through ``qwen_vl_utils.process_vision_info``, which resizes each
image with ``smart_resize`` (both sides multiples of 28, the pixel count within [4·28², 16384·28²], the aspect
ratio kept as closely as possible, at most 200:1) before the processor sees it; the other families get the
decoded RGB image unchanged. ``smart_resize`` is written from that documented rule.
"""

from __future__ import annotations

import math

QWEN_FACTOR = 28
QWEN_MIN_PIXELS = 4 * 28 * 28
QWEN_MAX_PIXELS = 16384 * 28 * 28
QWEN_MAX_RATIO = 200
QWEN_FAMILIES = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl")


def smart_resize(height: int, width: int, factor: int = QWEN_FACTOR, min_pixels: int = QWEN_MIN_PIXELS,
                 max_pixels: int = QWEN_MAX_PIXELS) -> tuple[int, int]:
    """(height, width) after qwen_vl_utils' rule; ValueError beyond a 200:1 aspect ratio."""
    if max(height, width) / min(height, width) > QWEN_MAX_RATIO:
        raise ValueError(f"absolute aspect ratio must be smaller than {QWEN_MAX_RATIO}, "
                         f"got {max(height, width) / min(height, width)}")
    h_bar = max(factor, round(height / factor) * factor)
    w_bar = max(factor, round(width / factor) * factor)
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h_bar = math.floor(height / beta / factor) * factor
        w_bar = math.floor(width / beta / factor) * factor
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def preparation(model_type: str) -> str:
    """The name of the preparation a family gets (recorded in the run)."""
    return "qwen_vl_utils.smart_resize" if model_type in QWEN_FAMILIES else "none"


def prepare(image, model_type: str):
    """The image as the official scripts hand it to ``model_type``'s processor."""
    if model_type not in QWEN_FAMILIES:
        return image
    height, width = smart_resize(image.height, image.width)
    if (height, width) == (image.height, image.width):
        return image
    return image.resize((width, height))
