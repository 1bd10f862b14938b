"""A source's card metadata: shared by the builders, the manifest and the card (no source code needed)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SourceInfo:
    """Metadata for the dataset card and manifest."""

    official_name: str
    title: str
    licence: str
    attribution: str
    homepage: str
    citation: str
    description: str
