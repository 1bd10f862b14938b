"""Per-sample randomness derived from (seed, source, key), never from global state."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import TypeVar

import numpy as np

T = TypeVar("T")


def _digest(*parts: object) -> bytes:
    return hashlib.sha256("\x1f".join(str(p) for p in parts).encode("utf-8")).digest()


def sample_rng(seed: int, source: str, key: str) -> np.random.Generator:
    """A generator that depends only on the release seed, the source and the sample's own key."""
    return np.random.Generator(np.random.PCG64(int.from_bytes(_digest(seed, source, key)[:16], "little")))


def sample_rank(seed: int, source: str, key: str) -> int:
    """A stable pseudo-random rank; sorting by it selects samples independently of their neighbours."""
    return int.from_bytes(_digest("rank", seed, source, key)[:8], "big")


def pick(rng: np.random.Generator, pool: Sequence[T]) -> T:
    """One element of ``pool``."""
    return pool[int(rng.integers(len(pool)))]


def shuffled(rng: np.random.Generator, items: Sequence[T]) -> tuple[T, ...]:
    """``items`` in a random order (the once-per-sample shuffle of options and categories)."""
    return tuple(items[int(i)] for i in rng.permutation(len(items)))


def draw(rng: np.random.Generator, pool: Sequence[T], k: int) -> list[T]:
    """``k`` distinct elements of ``pool``, in draw order."""
    return [pool[int(i)] for i in rng.choice(len(pool), size=k, replace=False)]
