"""The dependency rules of pb_build/, checked on the source text (AST), so a violation fails here.

* Outside ``builders/`` and ``raw/`` no module imports a source module (``builders.<s>``, ``raw.<s>``; the registry
  package and ``builders.base`` are the shared contract) and none names a source (a registered builder name or
  official name as a string literal).
* Nothing outside ``builders/`` imports ``raw/``.
* A ``raw/`` module reads raw data only: it imports no episode, writer or string rule.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

from pb_build.builders import BUILT_IN, REGISTRY

PACKAGE = Path(__file__).resolve().parent.parent / "pb_build"
SHARED = {"pb_build.builders", "pb_build.builders.base", "pb_build.raw"}
RAW_FORBIDDEN = ("pb_build.episode", "pb_build.writers", "pb_build.strings", "pb_build.builders")
#: String literals that equal a source name for another reason: (module, literal, why).
ALLOWED_NAMES = {
    ("pb_build/official.py", "quickdraw"),  # a key of the official action map ("quickdraw" -> DETAILS)
}
#: The bundled synthetic sample is raw data of its source, like raw/.
SOURCE_TREES = ("builders", "raw", "sample")


@dataclass(frozen=True)
class Violation:
    module: str
    line: int
    rule: str

    def __str__(self) -> str:
        return f"{self.module}:{self.line}: {self.rule}"


def _imported(node: ast.AST) -> list[str]:
    """Dotted names an import statement brings in (for ``from a import b``: ``a`` and ``a.b``)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if isinstance(node, ast.ImportFrom) and node.module and not node.level:
        return [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
    return []


def _is_module(dotted: str, package: Path) -> bool:
    rel = Path(*dotted.split(".")[1:])
    return (package / rel).with_suffix(".py").is_file() or (package / rel / "__init__.py").is_file()


def source_names() -> set[str]:
    """Every registered source's builder name and official name."""
    return {n for s in REGISTRY.values() for n in (s.name, s.info.official_name)}


def violations(rel: str, text: str, names: set[str], package: Path = PACKAGE) -> list[Violation]:
    """The dependency-rule violations of one module of pb_build (``rel``: its path under the repo root)."""
    area = Path(rel).parts[1] if len(Path(rel).parts) > 2 else ""
    out: list[Violation] = []
    for node in ast.walk(ast.parse(text)):
        for name in _imported(node):
            is_source_module = (name.startswith(("pb_build.builders.", "pb_build.raw."))
                                and name not in SHARED and _is_module(name, package))
            if area not in SOURCE_TREES and is_source_module:
                out.append(Violation(rel, node.lineno, f"imports the source module {name}"))
            elif area != "builders" and area != "raw" and name.startswith("pb_build.raw.") and name not in SHARED:
                out.append(Violation(rel, node.lineno, f"imports {name}; only builders read raw data"))
            if area == "raw" and name.startswith(RAW_FORBIDDEN):
                out.append(Violation(rel, node.lineno, f"raw reader imports {name}"))
        if (area not in SOURCE_TREES and isinstance(node, ast.Constant) and isinstance(node.value, str)
                and node.value in names and (rel, node.value) not in ALLOWED_NAMES):
            out.append(Violation(rel, node.lineno, f"names the source {node.value!r}"))
    return out


def test_pb_build_follows_the_dependency_rules() -> None:
    names = source_names()
    assert {"quickdraw", "QuickDraw", "coco2014", "mvp-n"} <= names
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).as_posix()
        found += violations(rel, path.read_text(encoding="utf-8"), names)
    assert not found, "\n".join(map(str, found))


@pytest.mark.parametrize(("rel", "text", "rule"), [
    ("pb_build/verify.py", "from pb_build.builders import quickdraw\n", "imports the source module"),
    ("pb_build/eval/oeg.py", "import pb_build.builders.coco_geometry\n", "imports the source module"),
    ("pb_build/writers/card.py", "from pb_build.raw.coco import Source\n", "imports the source module"),
    ("pb_build/eval/sources.py", "NAME = 'ChangeIt'\n", "names the source 'ChangeIt'"),
    ("pb_build/eval/oeg.py", "T = {'imagenet-c': 1}\n", "names the source 'imagenet-c'"),
    ("pb_build/raw/mvp_n.py", "from pb_build.strings import category_string\n", "raw reader imports"),
    ("pb_build/raw/rod.py", "from pb_build.episode import Episode\n", "raw reader imports"),
    ("pb_build/raw/rod.py", "import pb_build.writers.native\n", "raw reader imports"),
])
def test_each_rule_catches_its_violation(rel: str, text: str, rule: str) -> None:
    found = violations(rel, text, source_names())
    assert any(rule in v.rule for v in found), found


@pytest.mark.parametrize("text", [
    "from pb_build.builders import REGISTRY, get_builder\n",
    "from pb_build.builders.base import Source\n",
    "from pb_build.official import ACTION_KEYS\n",
    "X = 'QD-like but not a name'\n",
])
def test_the_shared_contract_is_allowed_everywhere(text: str) -> None:
    assert violations("pb_build/eval/data.py", text, source_names()) == []


def test_builders_may_use_their_raw_readers_and_the_registry_lists_every_builder() -> None:
    assert violations("pb_build/builders/coco.py", "from pb_build.raw import coco as raw\n", source_names()) == []
    built_in = {name for name, source in REGISTRY.items() if source.origin == "built-in"}
    assert built_in == {module.rsplit(".", 1)[1].replace("_", "-") for module, _ in BUILT_IN}


def test_verify_and_the_card_need_no_source_code(tmp_path: Path) -> None:
    """A release verifies (its card included) in a process where no builder or raw reader can be imported."""
    import subprocess
    import sys

    from pb_build.build import SourceJob, build_release

    qd = REGISTRY["quickdraw"]
    release = tmp_path / "release"
    build_release(release, [SourceJob(qd, qd.Config(), qd.sample_dir(), True)], progress=False)
    script = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.startswith(('pb_build.builders', 'pb_build.raw')):\n"
        "            raise ImportError(f'{name} is blocked')\n"
        "sys.meta_path.insert(0, Block())\n"
        "from pathlib import Path\n"
        "from pb_build.verify import verify_release\n"
        f"result = verify_release(Path({str(release)!r}))\n"
        "assert result.problems == [], result.problems\n"
        "assert result.sources[0].oracle_correct == result.sources[0].rows > 0\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
