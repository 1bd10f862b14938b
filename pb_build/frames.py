"""Frame encoding and decoding for builders and verify (kept for imports; see :mod:`pb_build.imageio`)."""

from __future__ import annotations

import numpy as np

from pb_build.errors import BadRecord
from pb_build.imageio import PNG_PARAMS, encode_png

__all__ = ["PNG_PARAMS", "decode", "encode_png"]


def decode(data: bytes) -> np.ndarray | None:
    """Decode image bytes (guarded by :mod:`pb_build.imageio`'s limits); None when they are not a usable image."""
    from pb_build.imageio import decode_bgr

    try:
        return decode_bgr(data, "frame")
    except BadRecord:
        return None
