"""Official-layout writer: ``test/<Name>_preprocessed.jsonl`` plus the frames its templates name."""

from __future__ import annotations

import hashlib
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path, PurePosixPath

from pb_build.episode import Episode, official_line
from pb_build.errors import InvalidEpisode

# File creation dominates writing many small frames; a background thread overlaps it with frame generation
# (OpenCV and file I/O release the GIL). Bounded, so memory stays flat.
MAX_PENDING_FILES = 256


class OfficialWriter:
    """Appends records to the JSONL file and writes each frame file once (shared frames are allowed)."""

    def __init__(self, test_dir: Path, official_name: str):
        self.test_dir = test_dir
        self.name = official_name
        test_dir.mkdir(parents=True, exist_ok=True)
        self.jsonl_path = test_dir / f"{official_name}_preprocessed.jsonl"
        self._jsonl = open(self.jsonl_path, "w", encoding="utf-8", newline="\n")
        self._written: dict[str, str] = {}  # path -> sha256 of a stored file
        self._folders: set[PurePosixPath] = set()
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pb-build-files")
        self._in_flight: dict[str, Future[str]] = {}  # path -> its pending write, oldest first
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
        rel_path = PurePosixPath(rel)
        if rel_path.is_absolute() or ".." in rel_path.parts:
            raise InvalidEpisode(f"episode {key}: official path {rel!r} must stay inside test/")
        previous = self._written.get(rel) or self._in_flight.get(rel)
        if previous is not None:
            digest = previous if isinstance(previous, str) else previous.result()
            if digest != hashlib.sha256(data).hexdigest():
                raise InvalidEpisode(f"episode {key}: {rel} was already written with different content")
            return
        folder = None
        if rel_path.parent not in self._folders:
            folder = self.test_dir / rel_path.parent
            self._folders.add(rel_path.parent)
        self._in_flight[rel] = self._io.submit(_store, self.test_dir / rel_path, data, folder)
        while len(self._in_flight) > MAX_PENDING_FILES:
            self._settle_oldest()

    def _settle_oldest(self) -> None:
        # Keep only the digest of a finished write: a Future per file would grow memory with the release.
        rel = next(iter(self._in_flight))
        self._written[rel] = self._in_flight.pop(rel).result()

    @property
    def files(self) -> int:
        return len(self._written) + len(self._in_flight)

    def digests(self, prefix: str) -> dict[str, str]:
        """sha256 of every file written, keyed by ``prefix`` + path (so SHA256SUMS need not re-read them)."""
        while self._in_flight:
            self._settle_oldest()
        return {prefix + rel: digest for rel, digest in self._written.items()}

    def close(self) -> None:
        """Finish pending file writes (raising their errors) and close the JSONL file."""
        try:
            while self._in_flight:
                self._settle_oldest()
        finally:
            self._io.shutdown(wait=True, cancel_futures=True)
            self._jsonl.close()


def _store(path: Path, data: bytes, folder: Path | None) -> str:
    """Write one file (creating its folder first when asked) and return its sha256."""
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(data)
    return hashlib.sha256(data).hexdigest()
