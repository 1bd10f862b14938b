"""A planned source's raw inventory (size and sha256 of every raw file it reads), hashed by a child process while
the shards build, and the record that lets a resumed build trust the shards it finds.

Hashing the raw files took as long as building for sources that copy frames (bench/README.md), and every shard
waited for it. Now the shards start at once, so their fingerprints no longer hold the raw digests; instead the
source's folder of finished shards keeps ``inputs.json``: a quick fingerprint of the raw files (path, size and
modification time, taken before any shard is built) and, once hashed, the digest of the full inventory. A rerun
that finds finished shards trusts them only when the recorded digest matches the raw files hashed again (or, when
the first run stopped before its hashing finished, when the quick fingerprint matches); otherwise it removes them.

A process, not a thread: a one-worker build runs its shards in the main process, and a hashing thread there took
the GIL back on every file, which slowed the shards more than the hashing overlapped.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pb_build
from pb_build.errors import PbBuildError
from pb_build.hashing import size_and_sha256

RECORD = "inputs.json"
INVENTORY = "inventory.json"  # the child's result, beside the record


class InventoryHashing:
    """The inventory of ``files`` under ``root``, hashed by ``python -m pb_build.inventory`` into
    ``source_dir``; ``hashed`` is an inventory already made (no process is started)."""

    def __init__(self, source_dir: Path, root: Path, files: list[Path | str], quick: str,
                 hashed: list[dict[str, Any]] | None = None):
        self._dir, self._inventory = source_dir, hashed
        self._proc: subprocess.Popen | None = None
        if hashed is not None:
            return
        request = source_dir / "inventory-request.json"
        request.write_text(json.dumps({"root": str(root), "files": [str(f) for f in files], "quick": quick}),
                           encoding="utf-8")
        package_parent = os.path.dirname(os.path.dirname(os.path.abspath(pb_build.__file__)))
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_parent,
                                                                         os.environ.get("PYTHONPATH")]))}
        self._proc = subprocess.Popen([sys.executable, "-m", "pb_build.inventory", str(request)], env=env,
                                      stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def check(self) -> None:
        """Raise the hashing's error now, when it has already failed (an unreadable raw file)."""
        if self._proc is not None and self._proc.poll() not in (None, 0):
            self.result()

    def result(self) -> list[dict[str, Any]]:
        """The inventory, waiting for the hashing to finish."""
        if self._inventory is None:
            assert self._proc is not None
            _, err = self._proc.communicate()
            if self._proc.returncode != 0:
                raise _error(err.decode("utf-8", "replace"), self._proc.returncode)
            self._inventory = json.loads((self._dir / INVENTORY).read_text(encoding="utf-8"))
        return self._inventory

    def cancel(self) -> None:
        """Stop hashing."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.communicate()


def _error(stderr: str, status: int) -> BaseException:
    """The child's failure as the parent raises it: an OSError stays one (the CLI names its file); anything else
    (a traceback) is one error with its last lines."""
    try:
        body = json.loads(stderr.strip().splitlines()[-1])
    except (ValueError, IndexError):
        body = None
    if isinstance(body, dict) and body.get("errno") is not None:
        return OSError(body["errno"], body.get("strerror"), body.get("filename"))
    return PbBuildError(f"hashing the raw inventory failed (exit status {status}): {stderr.strip()[-500:]}")


def raw_inventory(root: Path | str, files: list[Path | str]) -> list[dict[str, Any]]:
    """Size and sha256 of each raw input, by path relative to the raw folder.

    One file after another: on thousands of small files a thread pool was 4-6x slower (its threads hand the GIL
    back and forth on every read), and slower on MVP-N's larger ones too (bench/README.md).
    """
    inventory = []
    for path, rel in _under(root, files):
        try:
            size, digest = size_and_sha256(path)
        except OSError as exc:
            raise OSError(exc.errno, exc.strerror, exc.filename or path) from None
        inventory.append({"path": rel, "size": size, "sha256": digest})
    return inventory


def _under(root: Path | str, files: list[Path | str]) -> Iterator[tuple[str, str]]:
    """(absolute path, POSIX path relative to ``root``) of each file; one outside ``root`` is a ValueError."""
    base = os.path.join(os.path.abspath(root), "")
    for file in files:
        path = os.path.abspath(file)
        if not path.startswith(base):
            raise ValueError(f"{path} is not under the raw folder {root}")
        yield path, path[len(base):].replace(os.sep, "/")


def quick_fingerprint(root: Path, files: list[Path | str]) -> str:
    """sha256 over each raw file's path, size and modification time: what changes when a file is replaced or
    rewritten, read without opening any file."""
    h = hashlib.sha256()
    for path, rel in _under(root, files):
        st = os.stat(path)
        h.update(f"{rel}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def inventory_digest(inventory: list[dict[str, Any]]) -> str:
    """sha256 of an inventory's canonical JSON: what ``inputs.json`` records of the raw files."""
    return hashlib.sha256(json.dumps(inventory, sort_keys=True).encode()).hexdigest()


def hash_inventory(source_dir: Path, root: Path, files: list[Path | str], finished: bool) -> InventoryHashing:
    """Start hashing a source's raw inventory, after removing the ``finished`` shards in ``source_dir`` when they
    were built from other raw files, and record what the shards about to be built are built from."""
    record = source_dir / RECORD
    quick = quick_fingerprint(root, files)
    if finished:
        before = _read(record)
        if before.get("sha256"):  # hash now: the finished shards are trusted only if the files are the same
            inventory = raw_inventory(root, files)
            digest = inventory_digest(inventory)
            if before["sha256"] != digest:
                _remove_shards(source_dir)
            write_record(record, quick, digest)
            return InventoryHashing(source_dir, root, files, quick, hashed=inventory)
        if before.get("quick") != quick:
            _remove_shards(source_dir)
    source_dir.mkdir(parents=True, exist_ok=True)
    write_record(record, quick, None)
    return InventoryHashing(source_dir, root, files, quick)


def _read(record: Path) -> dict[str, Any]:
    try:
        body = json.loads(record.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return body if isinstance(body, dict) else {}


def write_record(record: Path, quick: str, digest: str | None) -> None:
    """Write ``inputs.json`` atomically (its folder must exist)."""
    _replace(record, json.dumps({"quick": quick, "sha256": digest}) + "\n")


def _replace(dest: Path, text: str) -> None:
    fd, partial = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.")
    with open(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(partial, dest)


def _remove_shards(source_dir: Path) -> None:
    for folder in source_dir.iterdir():
        if folder.is_dir():
            shutil.rmtree(folder)


def _child(request_path: str) -> int:
    """Hash the request's files, write the inventory, then the record (so a record with a digest always has
    its inventory beside it)."""
    request = Path(request_path)
    try:
        body = json.loads(request.read_text(encoding="utf-8"))
        inventory = raw_inventory(body["root"], body["files"])
        _replace(request.parent / INVENTORY, json.dumps(inventory))
        write_record(request.parent / RECORD, body["quick"], inventory_digest(inventory))
    except OSError as exc:
        if not request.parent.is_dir():  # the build ended (or failed) and removed its work folder: nothing to do
            return 0
        print(json.dumps({"errno": exc.errno, "strerror": exc.strerror, "filename": exc.filename}), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1]))
