"""Official-layout writer: ``test/<Name>_preprocessed.jsonl`` plus the frames its templates name."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from pb_build.episode import Episode, official_line
from pb_build.errors import InvalidEpisode


class OfficialWriter:
    """Appends records to the JSONL file and writes each frame file once (shared frames are allowed)."""

    def __init__(self, test_dir: Path, official_name: str):
        self.test_dir = test_dir
        self.name = official_name
        test_dir.mkdir(parents=True, exist_ok=True)
        self.jsonl_path = test_dir / f"{official_name}_preprocessed.jsonl"
        self._jsonl = open(self.jsonl_path, "w", encoding="utf-8", newline="\n")
        self._written: dict[str, str] = {}  # path -> sha256 of a stored file
        self._folders: set[str] = set()  # folders made, relative to test/
        self._root = str(test_dir)
        self.records = 0

    def write(self, ep: Episode, sample_id: int) -> None:
        """Write the record of ``ep`` with id ``sample_id`` and its files."""
        assert ep.official is not None
        if ep.official.name != self.name:
            raise InvalidEpisode(f"episode {ep.key} exports to {ep.official.name}, not {self.name}")
        for f in ep.official.files:
            self._write_file(f.path, f.data, ep.key)
        self._jsonl.write(official_line(ep, sample_id) + "\n")
        self.records += 1

    def _write_file(self, rel: str, data: bytes, key: str) -> None:
        # Plain strings: pathlib costs more than the write itself for thousands of small frames
        parts = rel.split("/")
        if rel.startswith("/") or ".." in parts:
            raise InvalidEpisode(f"episode {key}: official path {rel!r} must stay inside test/")
        digest = hashlib.sha256(data).hexdigest()
        previous = self._written.get(rel)
        if previous is not None:
            if digest != previous:
                raise InvalidEpisode(f"episode {key}: {rel} was already written with different content")
            return
        folder = rel.rpartition("/")[0]
        if folder and folder not in self._folders:
            os.makedirs(os.path.join(self._root, folder), exist_ok=True)
            self._folders.add(folder)
        _store(os.path.join(self._root, rel), data)
        self._written[rel] = digest

    @property
    def files(self) -> int:
        return len(self._written)

    def digests(self, prefix: str) -> dict[str, str]:
        """sha256 of every file written, keyed by ``prefix`` + path (so SHA256SUMS need not re-read them)."""
        return {prefix + rel: digest for rel, digest in self._written.items()}

    def close(self) -> None:
        """Close the JSONL file."""
        self._jsonl.close()


def _store(path: str, data: bytes) -> None:
    """Write one file. Written in this thread: a writer thread cost more in lock hand-offs than it overlapped
    (measured on QuickDraw), and the workers already keep every core busy."""
    # os-level calls: a buffered open() adds fstat, ioctl and lseek system calls per file
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0), 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)
