"""Provenance: file checksums, SHA256SUMS and a source's code fingerprint (raw inventories: pb_build.inventory)."""

from __future__ import annotations

import ast
import hashlib
import importlib.util
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

from pb_build.hashing import sha256_file, size_and_sha256  # noqa: F401  (sha256_file re-exported)

SUMS = "SHA256SUMS"


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


def parse_sums(text: str) -> tuple[dict[str, str], list[str]]:
    """Parse the text of ``SHA256SUMS`` into {path: hex digest} and a problem ('<line>: <cause>') for every line
    that does not parse or lists a path twice."""
    sums: dict[str, str] = {}
    problems = []
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()  # the final newline
    for n, line in enumerate(lines, start=1):
        digest, sep, rel = line.partition("  ")
        if not sep or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest) or not rel:
            problems.append(f"{n}: not a '<sha256>  <path>' line: {line[:80]!r}")
        elif rel in sums:
            problems.append(f"{n}: {rel} is listed twice")
        else:
            sums[rel] = digest
    return sums, problems


def read_sums(root: Path) -> dict[str, str]:
    """Parse ``SHA256SUMS`` into {path: hex digest}; a line that does not parse is a ValueError naming it."""
    sums, problems = parse_sums((root / SUMS).read_text(encoding="utf-8"))
    if problems:
        raise ValueError(f"{root / SUMS}:{problems[0]}")
    return sums


def source_modules(module_name: str, package: str = "pb_build") -> list[str]:
    """``module_name`` and every module of ``package`` it imports, transitively (found by reading the sources).

    Imported packages (``__init__``) are not followed: they are namespaces or registries, and following the
    builders' registry would make every source depend on every other.
    """
    seen: set[str] = set()
    todo = [module_name]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):  # ``from a import b`` where b is a name, not a submodule
            continue
        if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
            continue
        if spec.submodule_search_locations is not None and name != module_name:
            continue  # an imported package's __init__ is a namespace or a registry, not something output uses
        seen.add(name)
        todo += [m for m in _imports(Path(spec.origin), name, spec.submodule_search_locations is not None)
                 if m == package or m.startswith(package + ".")]
    return sorted(seen)


def _imports(path: Path, name: str, is_package: bool) -> list[str]:
    """The modules a Python file imports (``from a import b`` yields ``a`` and ``a.b``, which may be a module)."""
    base = name if is_package else name.rpartition(".")[0]
    found = []
    for node in _statements(ast.parse(path.read_text(encoding="utf-8")).body):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            parent = base
            for _ in range(node.level - 1):
                parent = parent.rpartition(".")[0]
            mod = node.module or ""
            mod = f"{parent}.{mod}".strip(".") if node.level else mod
            found.append(mod)
            found += [f"{mod}.{a.name}" for a in node.names]
    return found


def _statements(nodes: list[ast.AST]) -> Iterator[ast.AST]:
    """Every statement under ``nodes``, nested ones included (imports are statements: walking only these is
    several times faster than ``ast.walk``, which visits every expression too)."""
    for node in nodes:
        yield node
        for block in ("body", "orelse", "finalbody", "handlers", "cases"):
            children = getattr(node, block, None)
            if isinstance(children, list):
                yield from _statements(children)


def builder_fingerprint(builder: Any) -> str:
    """sha256 over every pb_build module a source's output depends on: its builder module, the raw reader and
    the shared helpers it imports, transitively (a builder may be a module or an object defined in one)."""
    names = [builder.__name__] if isinstance(builder, ModuleType) else \
        [m.__name__ for m in getattr(builder, "modules", ())] or [type(builder).__module__]
    h = hashlib.sha256()
    for module in sorted({m for name in names for m in source_modules(name)}):
        origin = importlib.util.find_spec(module).origin
        h.update(f"{module} {sha256_file(Path(origin))}\n".encode())
    return h.hexdigest()
