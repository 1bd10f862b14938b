"""One check for every raw string that reaches an option, a category, a release path or a checksum line.

* Text (answers, category names, occluder descriptions) must not contain control characters (newlines, tabs,
  escapes, U+0085, U+2028/U+2029): a newline would split an MCQA option or a ``SHA256SUMS`` line.
* A path component (a folder or file name copied into the release) must also not contain a path separator and
  must not be empty, ``.`` or ``..``.
* Raw files are read inside ``--raw``: a symlink that leads outside it is refused unless ``--follow-symlinks``
  (which sets ``$PB_BUILD_FOLLOW_SYMLINKS`` so worker processes see it too).

A violation is a :class:`BadRecord` naming the file and the field (skippable with ``--skip-bad``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pb_build.errors import BadRecord

FOLLOW_ENV = "PB_BUILD_FOLLOW_SYMLINKS"
_SEPARATORS = ("/", "\\")


# Every character of Unicode categories Cc, Zl and Zp (fixed sets); one regex search instead of a category
# lookup per character, which was a third of listing ImageNet-C's or VSOD's raw files
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _bad_char(value: str) -> str | None:
    found = CONTROL.search(value)
    return found.group() if found else None


def check_text(value: str, where: str | Path, field: str, line: int | None = None) -> str:
    """``value`` unchanged when it holds no control character; else a :class:`BadRecord` naming ``field``."""
    if not isinstance(value, str):
        raise BadRecord(where, f"{field} must be a string, got {type(value).__name__}", line)
    ch = _bad_char(value)
    if ch is not None:
        raise BadRecord(where, f"{field} {value!r} contains the control character {ch!r}", line)
    return value


def check_component(value: str, where: str | Path, field: str, line: int | None = None) -> str:
    """``value`` unchanged when it is safe as one release path component (see the module docstring)."""
    check_text(value, where, field, line)
    if value in ("", ".", "..") or any(sep in value for sep in _SEPARATORS):
        raise BadRecord(where, f"{field} {value!r} is not a plain file or folder name", line)
    return value


def follow_symlinks() -> bool:
    """Whether symlinks leaving ``--raw`` are allowed (``--follow-symlinks``)."""
    return os.environ.get(FOLLOW_ENV, "") == "1"


def set_follow_symlinks(ctx: Any, param: Any, value: bool) -> bool:
    """click callback of ``--follow-symlinks``: record the choice for this process and its workers."""
    if value:
        os.environ[FOLLOW_ENV] = "1"
    return value


def check_inside(raw_root: Path, files: Iterable[Path | str]) -> None:
    """Refuse a file spelled under ``raw_root`` that resolves outside it (a symlink leaving ``--raw``)."""
    if follow_symlinks():
        return
    root = os.path.realpath(raw_root)
    inside = os.path.join(root, "")
    spelled_root = os.path.abspath(raw_root)
    spelled_prefix = os.path.join(spelled_root, "")
    real_folders = {spelled_root: root}

    def real(spelled: str) -> str:
        """The real path of a folder spelled under the root. Built from its parent's, so each folder costs one
        lstat, not one per path component as ``realpath`` does (a second of planning for 25,000 ImageNet-C files)."""
        known = real_folders.get(spelled)
        if known is None:
            parent, name = os.path.split(spelled)
            known = real_folders[spelled] = _resolve(os.path.join(real(parent), name))
        return known

    links: dict[str, frozenset[str]] = {}

    def symlinks_in(folder: str) -> frozenset[str]:
        """The names of the symlinks in a (real) folder: one scandir per folder instead of an lstat per file
        (a third of VSOD's planning); a folder that cannot be listed holds none (its files fail when read)."""
        known = links.get(folder)
        if known is None:
            try:
                with os.scandir(folder) as entries:
                    known = frozenset(e.name for e in entries if e.is_symlink())
            except OSError:
                known = frozenset()
            links[folder] = known
        return known

    folders: dict[str, str | None] = {}  # a folder as spelled in ``files`` -> its real path (None: outside)

    def real_folder(spelled_folder: str) -> str | None:
        known = folders.get(spelled_folder, "")
        if known == "":
            spelled = os.path.abspath(spelled_folder)
            inside_root = spelled == spelled_root or spelled.startswith(spelled_prefix)
            known = folders[spelled_folder] = real(spelled) if inside_root else None
        return known

    for file in files:
        # Split once and look the folder up: per file, abspath and join cost more than the check itself
        folder, name = os.path.split(os.fspath(file))
        if name in ("", ".", ".."):
            folder, name = os.path.split(os.path.abspath(file))
        resolved_folder = real_folder(folder)
        if resolved_folder is None:
            continue  # a file given outside --raw on purpose (e.g. a user table)
        if name in symlinks_in(resolved_folder):
            resolved = os.path.realpath(os.path.join(resolved_folder, name))
        elif resolved_folder == root or resolved_folder.startswith(inside):
            continue  # a plain name in a folder inside the root
        else:
            resolved = os.path.join(resolved_folder, name)
        if resolved != root and not resolved.startswith(inside):
            raise BadRecord(file, f"is a symlink leading outside --raw (to {resolved}); pass "
                                  "--follow-symlinks to read it")


def _resolve(path: str) -> str:
    """``path`` (whose folder is already a real path) with its last component resolved when it is a symlink."""
    return os.path.realpath(path) if os.path.islink(path) else path
