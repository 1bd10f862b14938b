"""Provenance: file checksums, SHA256SUMS, and the manifest that makes a release reproducible."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pb_build import __version__
from pb_build.hashing import sha256_file  # noqa: F401  (re-exported: callers use provenance.sha256_file)

MANIFEST = "manifest.json"
SUMS = "SHA256SUMS"
CHUNK = 1 << 20



def release_files(root: Path) -> list[str]:
    """Every file of a release folder except SHA256SUMS, as sorted POSIX paths relative to ``root``."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and p != root / SUMS)


def write_sums(root: Path, known: dict[str, str] | None = None) -> Path:
    """Write ``SHA256SUMS`` (sha256sum format, sorted by path) over every other file.

    ``known`` holds digests the writers already computed while writing; other files are hashed here.
    """
    known = known or {}
    lines = [f"{known.get(rel) or sha256_file(root / rel)}  {rel}\n" for rel in release_files(root)]
    dest = root / SUMS
    dest.write_text("".join(lines), encoding="utf-8", newline="\n")
    return dest


def read_sums(root: Path) -> dict[str, str]:
    """Parse ``SHA256SUMS`` into {path: hex digest}."""
    sums: dict[str, str] = {}
    for n, line in enumerate((root / SUMS).read_text(encoding="utf-8").splitlines(), start=1):
        digest, sep, rel = line.partition("  ")
        if not sep or len(digest) != 64:
            raise ValueError(f"{root / SUMS}:{n}: not a '<sha256>  <path>' line")
        sums[rel] = digest
    return sums


def raw_inventory(root: Path, files: list[Path]) -> list[dict[str, Any]]:
    """Size and sha256 of each raw input, by path relative to the raw folder."""
    return [
        {"path": p.relative_to(root).as_posix(), "size": p.stat().st_size, "sha256": sha256_file(p)}
        for p in files
    ]


def builder_fingerprint(module: Any) -> str:
    """sha256 of the builder's source file, so a code change is visible in the manifest."""
    return sha256_file(Path(module.__file__))


def write_manifest(root: Path, manifest: dict[str, Any]) -> Path:
    """Write ``manifest.json`` deterministically (sorted keys, no timestamps)."""
    body = {"pb_build_version": __version__, **manifest}
    dest = root / MANIFEST
    dest.write_text(json.dumps(body, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")
    return dest


def read_manifest(root: Path) -> dict[str, Any]:
    """Load ``manifest.json`` of a release."""
    return json.loads((root / MANIFEST).read_text(encoding="utf-8"))
