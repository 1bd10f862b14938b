"""Frame encoding and decoding shared by builders, writers and verify."""

from __future__ import annotations

import cv2
import numpy as np

# Fixed PNG settings keep encoded bytes identical across runs and machines with the same OpenCV.
PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 3]


def encode_png(image: np.ndarray) -> bytes:
    """Encode a grey or BGR uint8 image as PNG."""
    ok, buf = cv2.imencode(".png", image, PNG_PARAMS)
    if not ok:
        raise ValueError("OpenCV could not encode the frame as PNG")
    return buf.tobytes()


def decode(data: bytes) -> np.ndarray | None:
    """Decode image bytes; None when they are not a readable image."""
    if not data:
        return None
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
