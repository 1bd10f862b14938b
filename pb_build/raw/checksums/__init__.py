"""Per-source tables of the files the fetchers download (TFDS-style ``<source>.tsv``), checked after download.

Each line is ``<file name><TAB><size in bytes><TAB><sha256>``; ``-`` marks a value not recorded yet (then only
the other is checked). ``#`` lines are comments. ``python -m pb_build.raw.checksums FILE...`` prints the lines
for downloaded files.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from pb_build.errors import PbBuildError
from pb_build.hashing import sha256_file

TABLES = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Expected:
    """What one downloaded file must be; None where the table does not record it."""

    size: int | None
    sha256: str | None


def read_table(source: str, folder: Path | None = None) -> dict[str, Expected]:
    """The checksum table of ``source`` in ``folder`` (default :data:`TABLES`); empty when there is none."""
    path = (folder or TABLES) / f"{source}.tsv"
    if not path.is_file():
        return {}
    out: dict[str, Expected] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split("\t")
        if len(fields) != 3:
            raise PbBuildError(f"{path}:{n}: expected '<name><TAB><size><TAB><sha256>'")
        name, size, sha = fields
        try:
            expected = Expected(None if size == "-" else int(size), None if sha == "-" else sha.lower())
        except ValueError:
            raise PbBuildError(f"{path}:{n}: size must be an integer or '-', got {size!r}") from None
        if expected.sha256 is not None and (len(expected.sha256) != 64
                                            or any(c not in "0123456789abcdef" for c in expected.sha256)):
            raise PbBuildError(f"{path}:{n}: sha256 must be 64 hex digits or '-'")
        out[name] = expected
    return out


def check_download(source: str, name: str, path: Path, origin: str, folder: Path | None = None) -> None:
    """Raise :class:`PbBuildError` when ``path`` (downloaded from ``origin``) differs from the table's entry."""
    expected = read_table(source, folder).get(name)
    if expected is None:
        return
    size = path.stat().st_size
    if expected.size is not None and size != expected.size:
        raise PbBuildError(f"{path}: {size} bytes, expected {expected.size} for {origin}; delete it and fetch again")
    if expected.sha256 is not None and sha256_file(path) != expected.sha256:
        raise PbBuildError(f"{path}: sha256 differs from the {source} checksum table for {origin}; delete it and "
                           "fetch again")


def main(argv: list[str]) -> int:
    for arg in argv:
        path = Path(arg)
        print(f"{path.name}\t{path.stat().st_size}\t{sha256_file(path)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
