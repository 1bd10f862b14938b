"""File checksums, shared by builders (user tables) and provenance (release files)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

CHUNK = 1 << 20


def sha256_file(path: Path | str) -> str:
    """The hex sha256 of a file, read in chunks."""
    return size_and_sha256(path)[1]


def size_and_sha256(path: Path | str) -> tuple[int, str]:
    """The size and hex sha256 of a file from one open (file descriptors: thousands of small files)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    try:
        size, h = os.fstat(fd).st_size, hashlib.sha256()
        while chunk := os.read(fd, CHUNK):
            h.update(chunk)
    finally:
        os.close(fd)
    return size, h.hexdigest()
