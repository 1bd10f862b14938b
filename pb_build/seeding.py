"""Per-sample randomness derived from (seed, source, key), never from global state."""

from __future__ import annotations

import hashlib

import numpy as np


def _digest(*parts: object) -> bytes:
    return hashlib.sha256("\x1f".join(str(p) for p in parts).encode("utf-8")).digest()


def sample_rng(seed: int, source: str, key: str) -> np.random.Generator:
    """A generator that depends only on the release seed, the source and the sample's own key."""
    return np.random.Generator(np.random.PCG64(int.from_bytes(_digest(seed, source, key)[:16], "little")))


def sample_rank(seed: int, source: str, key: str) -> int:
    """A stable pseudo-random rank; sorting by it selects samples independently of their neighbours."""
    return int.from_bytes(_digest("rank", seed, source, key)[:8], "big")
