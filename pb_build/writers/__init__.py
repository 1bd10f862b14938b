"""Writers: each turns episodes into one output layout (official JSONL and files, native parquet shards)."""

from __future__ import annotations

from typing import Any, Protocol

from pb_build.episode import Episode


class EpisodeWriter(Protocol):
    """What every writer offers the build driver: append an episode with its sample id, then close."""

    def write(self, ep: Episode, sample_id: int) -> None:
        """Append ``ep`` as sample ``sample_id``."""

    def close(self) -> Any:
        """Finish writing (raising any pending error)."""
