"""The set-up a new user gets: declared dependencies, the README's commands in CI, and skips that CI refuses."""

from __future__ import annotations

import ast
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _declared() -> set[str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    specs = project["dependencies"] + [d for extra in project["optional-dependencies"].values() for d in extra]
    return {re.split(r"[\s<>=!~;\[]", spec, maxsplit=1)[0].lower().replace("_", "-") for spec in specs}


def test_every_third_party_import_is_declared() -> None:
    imported: set[str] = set()
    for path in (REPO / "pb_build").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    third_party = sorted(m for m in imported if m not in sys.stdlib_module_names and m != "pb_build")
    distributions = importlib.metadata.packages_distributions()
    declared = _declared()
    undeclared = [m for m in third_party
                  if not {d.lower().replace("_", "-") for d in distributions.get(m, [m])} & declared]
    assert undeclared == [], f"imported by pb_build but not in pyproject.toml: {undeclared}"


def _readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## On a fresh machine", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, flags=re.S)
    return [line for block in blocks[:2] for line in block.splitlines() if line.strip()]


def test_ci_runs_the_readme_commands_verbatim() -> None:
    commands = _readme_commands()
    assert commands == [
        "pip install -e . && pb-build quickdraw --sample --out release/ --overwrite && pb-build verify release/",
        "pip install -e '.[test]' && python -m pytest -q",
    ]
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    for command in commands:
        assert command in ci
    assert "export PB_FAIL_ON_SKIP=1" in ci
    assert "ruff check ." in ci
    # nothing is installed by hand but the CPU torch the README shows
    installs = [line for line in ci if line.startswith("pip install") and line not in commands]
    assert installs == ["pip install -q torch==2.13.0"]
    assert "pip install torch==2.13.0" in (REPO / "README.md").read_text(encoding="utf-8")


def test_fail_on_skip_allows_only_slow_and_gpu_skips(tmp_path: Path) -> None:
    tests = tmp_path / "tests"
    tests.mkdir()
    for name in ("conftest.py", "provision.py"):
        shutil.copy(REPO / "tests" / name, tests / name)
    (tests / "test_skips.py").write_text(
        "import pytest\n\n"
        "def test_runs():\n    pass\n\n"
        "@pytest.mark.slow\n@pytest.mark.skipif(True, reason='slow: set PB_RUN_SLOW=1')\n"
        "def test_slow():\n    pass\n\n"
        "@pytest.mark.skipif(True, reason='needs a CUDA GPU')\ndef test_gpu():\n    pass\n\n"
        "def test_missing_package():\n    pytest.importorskip('no_such_package_pb', reason='needs it')\n"
    )
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tests)]
    env = {k: v for k, v in os.environ.items() if k != "PB_FAIL_ON_SKIP"}
    plain = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert plain.returncode == 0 and "1 passed, 3 skipped" in plain.stdout, plain.stdout + plain.stderr
    strict = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path,
                            env={**env, "PB_FAIL_ON_SKIP": "1"}, timeout=300)
    assert strict.returncode == 1, strict.stdout + strict.stderr
    listed = strict.stdout.split("does not allow", 1)[1]
    assert "test_missing_package" in listed and "test_slow" not in listed and "test_gpu" not in listed


def test_no_citation_points_outside_the_repository() -> None:
    """A user's clone has no ``shared/`` folder next to it: sources, benches and tests must state a rule or cite the
    paper (ProactiveBench, arXiv 2603.19466) or the official proactivebench package, never the project's private
    spec documents."""
    needles = re.compile(r"shared/spec|\.\./shared|\b(?:benchmark|raw-sources|evaluator|hub)\.md\s+§")
    me = Path(__file__).resolve()
    hits = []
    for top in ("pb_build", "bench", "tests"):
        for path in sorted((REPO / top).rglob("*")):
            rel = path.relative_to(REPO)
            if not path.is_file() or path.resolve() == me or any(
                    part.startswith(".") or part == "__pycache__" for part in rel.parts):
                continue
            text = path.read_bytes().decode("utf-8", errors="replace")
            hits += [f"{rel}:{n}: {line.strip()}"
                     for n, line in enumerate(text.splitlines(), 1) if needles.search(line)]
    assert hits == [], "citations of documents a clone does not have:\n" + "\n".join(hits)
