"""Writing a release folder safely: build it in a temporary folder beside the target, then rename.

``pb-build`` build, rebuild, pull and train-split create a whole folder with :func:`new_folder`; ``filter`` adds
files to an existing release with :func:`update_folder`. Either way nothing half-written is left at the target
when something fails, and :func:`finish` writes the card, the manifest and ``SHA256SUMS`` the same way.

Safety rules:

* ``--overwrite`` replaces only a folder that is recognisably a pb-build release: its manifest parses and its
  ``SHA256SUMS`` lists exactly its files (:func:`release_problem`). Anything else is refused with the reason.
* Every temporary folder has an owner marker beside it (``<folder>.owner``: process id and host). A killed build
  leaves its temporary folder behind; the next build into the same parent folder removes it once its owner
  process is gone (:func:`clean_stale`), and a release moved aside during the final swap is put back when the
  target is missing.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from pb_build.errors import PbBuildError
from pb_build.manifests import manifest as manifests
from pb_build.manifests import provenance

CARD = "README.md"
TMP_SUFFIX = ".pb-build-tmp"
OLD_SUFFIX = ".pb-build-old"
STAGING = ".pb-build-staging"
OWNER = ".owner"  # suffix of the marker beside every temporary folder: {"pid": ..., "host": ...}


# ------------------------------------------------------------------------------------------- target checks


def release_problem(folder: Path) -> str | None:
    """Why ``folder`` is not recognisably a pb-build release (``None`` when it is): its manifest must parse and
    its ``SHA256SUMS`` must list exactly the files present."""
    manifest = folder / manifests.MANIFEST
    if not manifest.is_file():
        return f"no {manifests.MANIFEST}"
    try:
        body = json.loads(manifest.read_text(encoding="utf-8"))
        if not (isinstance(body, dict) and body.get("kind") == "train-split"):
            manifests.parse(body, str(manifest))
    except (OSError, ValueError, manifests.ManifestError) as exc:
        return f"its {manifests.MANIFEST} is not a pb-build manifest ({exc})"
    if not (folder / provenance.SUMS).is_file():
        return f"no {provenance.SUMS}"
    try:
        listed = set(provenance.read_sums(folder))
    except (OSError, ValueError) as exc:
        return f"its {provenance.SUMS} does not parse ({exc})"
    present = set(provenance.release_files(folder))
    if listed != present:
        extra, missing = sorted(present - listed), sorted(listed - present)
        what = [f"{len(extra)} file(s) not in {provenance.SUMS}, e.g. {extra[0]}"] if extra else []
        what += [f"{len(missing)} listed file(s) missing, e.g. {missing[0]}"] if missing else []
        return "; ".join(what)
    return None


def _is_part(folder: Path) -> bool:
    """Whether ``folder`` is a part of a sharded build (``--num-shards``), whose ``part.json`` names its kind."""
    try:
        body = json.loads((folder / "part.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(body, dict) and body.get("kind") == "pb-build-part"


def check_target(out: Path, overwrite: bool) -> None:
    """``out`` may be written: absent, empty, or a pb-build release (with ``overwrite``). What killed pb-build runs
    left beside (or inside) ``out`` is cleaned first (:func:`clean_stale`)."""
    if out.parent.is_dir():
        _note(clean_stale(out.parent))
    if not out.exists():
        return
    if not out.is_dir():
        raise PbBuildError(f"{out}: output path exists and is not a folder")
    if not any(out.iterdir()):
        return
    problem = None if _is_part(out) else release_problem(out)  # a release, or a part of a sharded build
    if problem is not None:
        raise PbBuildError(f"{out}: output folder exists and is not a pb-build release ({problem}); nothing was "
                           "replaced; choose another --out")
    if not overwrite:
        raise PbBuildError(f"{out}: a release already exists there; pass --overwrite to replace it")


# ------------------------------------------------------------------------------------------ temporary folders


def _host() -> str:
    return socket.gethostname()


def _marker(folder: Path) -> Path:
    return folder.with_name(folder.name + OWNER)


def _mark(folder: Path) -> None:
    _marker(folder).write_text(json.dumps({"pid": os.getpid(), "host": _host()}) + "\n", encoding="utf-8")


def _unmark(folder: Path) -> None:
    _marker(folder).unlink(missing_ok=True)


def _owner_alive(folder: Path) -> bool | None:
    """Whether the process that owns ``folder`` still runs: ``None`` when unknown (no marker, another host)."""
    try:
        owner = json.loads(_marker(folder).read_text(encoding="utf-8"))
        pid, host = int(owner["pid"]), str(owner["host"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if host != _host():
        return None
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def claim(folder: Path, what: str) -> None:
    """Mark ``folder`` (a work folder kept between runs, e.g. finished shards a rerun resumes from) as this
    process's; refused while another running process owns it."""
    try:
        pid = int(json.loads(_marker(folder).read_text(encoding="utf-8"))["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        pid = None
    if pid != os.getpid() and _owner_alive(folder):
        raise PbBuildError(f"{folder}: another pb-build run is building {what} (its owner process, named in "
                           f"{_marker(folder).name}, still runs; if no build is running, remove both by hand)")
    folder.mkdir(parents=True, exist_ok=True)
    _mark(folder)


def unclaim(folder: Path) -> None:
    """Remove ``folder`` and its owner marker."""
    shutil.rmtree(folder, ignore_errors=True)
    _unmark(folder)


def remove_tree(path: Path) -> None:
    """Remove a folder (or a file); a failure is one error naming the path that could not be removed."""
    try:
        if path.is_symlink() or path.is_file():
            path.unlink()
        else:
            shutil.rmtree(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise PbBuildError(f"{exc.filename or path}: cannot remove ({exc.strerror or exc}) while cleaning up "
                           f"{path}") from None


def _stale_candidates(parent: Path) -> Iterator[Path]:
    try:
        children = list(parent.iterdir())
    except OSError:
        return
    for child in children:
        if not child.is_dir() or child.is_symlink():
            continue
        if child.name.startswith(".") and child.name.endswith((TMP_SUFFIX, OLD_SUFFIX)):
            yield child
        elif (child / STAGING).is_dir():
            yield child / STAGING


def clean_stale(parent: Path) -> list[str]:
    """Remove what killed pb-build runs left in ``parent`` (temporary folders, moved-aside releases, filter
    staging) once their owner process is gone; returns one note per folder removed, restored or left alone."""
    notes = []
    for folder in sorted(_stale_candidates(parent)):
        alive = _owner_alive(folder)
        if alive:
            continue
        if folder.name.endswith(OLD_SUFFIX):
            target = parent / folder.name[1:-len(OLD_SUFFIX)]
            if not target.exists():  # killed between the two renames: the previous release goes back
                folder.rename(target)
                _unmark(folder)
                notes.append(f"restored {target} from {folder.name}, left by an interrupted pb-build run")
                continue
        if alive is None:
            notes.append(f"{folder}: left by an interrupted pb-build run of another host or version; remove it "
                         "by hand if no build is running")
            continue
        remove_tree(folder)
        _unmark(folder)
        notes.append(f"removed {folder}, left by an interrupted pb-build run")
    return notes


def _note(lines: list[str]) -> None:
    for line in lines:
        print(f"note: {line}", file=sys.stderr)


@contextmanager
def new_folder(out: Path, overwrite: bool = False,
               check: Callable[[Path, bool], None] = check_target) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``out``; when the block succeeds it replaces ``out``.

    ``check`` decides whether ``out`` may be replaced (by default: only a pb-build release, with ``overwrite``).
    """
    out = out.resolve()
    check(out, overwrite)
    tmp = out.parent / f".{out.name}{TMP_SUFFIX}"
    if tmp.exists():
        if _owner_alive(tmp):
            raise PbBuildError(f"{tmp}: another pb-build run is writing {out} (its owner process, named in "
                               f"{_marker(tmp).name}, still runs; if no build is running, remove both by hand)")
        remove_tree(tmp)
    tmp.mkdir(parents=True)
    _mark(tmp)
    try:
        yield tmp
        _replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        _unmark(tmp)


@contextmanager
def update_folder(root: Path) -> Iterator[Path]:
    """Yield a staging folder inside ``root``; when the block succeeds, every file staged there is moved to the
    same place in ``root`` (replacing it) and ``SHA256SUMS`` is rewritten, so a failure leaves ``root``
    unchanged."""
    staging = root / STAGING
    if staging.exists():
        if _owner_alive(staging):
            raise PbBuildError(f"{staging}: another pb-build run is updating {root} (its owner process, named in "
                               f"{_marker(staging).name}, still runs; if none is, remove both by hand)")
        remove_tree(staging)
    staging.mkdir()
    _mark(staging)
    try:
        yield staging
        for path in sorted(p for p in staging.rglob("*") if p.is_file()):
            dest = root / path.relative_to(staging)
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        _unmark(staging)
    provenance.write_sums(root)


def finish(root: Path, manifest: manifests.Manifest | manifests.TrainSplitManifest, card: str,
           known_digests: dict[str, str] | None = None, *, sums: bool = True) -> None:
    """Write the card, the manifest and then (unless ``sums`` is false) ``SHA256SUMS`` over every file of
    ``root``; ``known_digests`` are digests the writers already computed."""
    (root / CARD).write_text(card, encoding="utf-8", newline="\n")
    manifests.write(root, manifest)
    if sums:
        provenance.write_sums(root, known_digests)


def _replace(tmp: Path, out: Path) -> None:
    if out.exists():
        old = out.parent / f".{out.name}{OLD_SUFFIX}"
        remove_tree(old)
        _mark(old)
        out.rename(old)
        tmp.rename(out)
        remove_tree(old)
        _unmark(old)
    else:
        tmp.rename(out)
