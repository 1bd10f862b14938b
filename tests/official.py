"""Helpers to run the official ``proactivebench`` environments (Python 3.12 only) from the pytest process.

The official package runs in its own interpreter: ``$PB_OFFICIAL_PYTHON`` when set, otherwise a virtual
environment that the tests create once per machine in ``~/.cache/pb-build/official-py312`` (or
``$PB_OFFICIAL_VENV``) from a Python 3.12 found on the machine (``python3.12`` on PATH, or a pyenv 3.12.x),
installing ``proactivebench jsonlines attrs pillow`` from PyPI with ``--no-deps``. A file lock keeps parallel
test processes from creating it twice. ``run_official`` feeds ``tests/official_driver.py`` a batch of jobs and
returns one result per job.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

try:
    from provision import cache_root, provide, run_steps
except ImportError:  # tests/ imported as a package
    from tests.provision import cache_root, provide, run_steps

DRIVER = Path(__file__).resolve().parent / "official_driver.py"
ENV_VAR = "PB_OFFICIAL_PYTHON"
VENV_VAR = "PB_OFFICIAL_VENV"
PACKAGES = ("proactivebench", "jsonlines", "attrs", "pillow")
SETUP_HINT = (
    "the official proactivebench package needs Python 3.12: put python3.12 on PATH (or install 3.12 with pyenv) "
    "and the tests create their environment themselves, or set PB_OFFICIAL_PYTHON to a Python 3.12 with "
    "`pip install --no-deps proactivebench jsonlines attrs pillow`"
)


def venv_dir() -> Path:
    """Where the tests keep their Python 3.12 environment with the official package."""
    configured = os.environ.get(VENV_VAR)
    return Path(configured) if configured else cache_root() / "official-py312"


def find_python312() -> tuple[list[str], dict[str, str]] | None:
    """A command running Python 3.12 and the environment it needs: ``python3.12``, else a pyenv 3.12.x."""
    candidates: list[dict[str, str]] = [{}]
    if shutil.which("pyenv"):
        listed = subprocess.run(["pyenv", "versions", "--bare"], capture_output=True, text=True, check=False)
        candidates += [{"PYENV_VERSION": v} for v in sorted(listed.stdout.split(), reverse=True)
                       if v.startswith("3.12.") and "/" not in v]
    for extra in candidates:
        env = {**os.environ, **extra}
        try:
            proc = subprocess.run(["python3.12", "-c", "import sys; print(sys.version_info[:2] == (3, 12))"],
                                  capture_output=True, text=True, env=env, timeout=60, check=False)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if proc.returncode == 0 and proc.stdout.strip() == "True":
            return ["python3.12"], env
    return None


def _create_venv(target: Path) -> str | None:
    """Create the environment at ``target``; why it failed, or None."""
    found = find_python312()
    if found is None:
        return "no Python 3.12 interpreter found"
    command, env = found
    return run_steps([command + ["-m", "venv", str(target)],
                      [str(target / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", *PACKAGES]], env)


@functools.cache
def _provisioned() -> tuple[Path, str | None]:
    """The official interpreter, and why the cached environment could not be created (None when it could)."""
    configured = os.environ.get(ENV_VAR)
    if configured:
        return Path(configured), None
    target = venv_dir()
    problem = provide(target, _create_venv)
    return target / "bin" / "python", (f"could not create {target}: {problem}" if problem else None)


def official_python() -> Path:
    """The interpreter that should have the official package (creating the cached environment if needed)."""
    return _provisioned()[0]


@functools.cache
def official_problem() -> str | None:
    """Why the official package cannot be used (None when ``import proactivebench.environment`` works)."""
    python, problem = _provisioned()
    if problem:
        return problem
    if not python.exists():
        return f"{python} does not exist"
    return run_steps([[str(python), "-c", "import proactivebench.environment, PIL"]])


def official_available() -> bool:
    return official_problem() is None


def _skip_reason() -> str:
    problem = official_problem()
    return f"{SETUP_HINT} ({problem})" if problem else SETUP_HINT


requires_official = pytest.mark.skipif(not official_available(), reason=_skip_reason())


def run_official_report(name: str, data_dir: Path | str, jobs: list[dict[str, Any]], timeout: float = 600) -> dict:
    """Run the driver once over ``jobs``; the whole report (records, loader filter, job results)."""
    problem = official_problem()
    if problem:
        pytest.skip(f"{SETUP_HINT} ({problem})")
    spec = json.dumps({"name": name, "data_dir": str(data_dir), "jobs": jobs})
    proc = subprocess.run(
        [str(official_python()), str(DRIVER)], input=spec, capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    if proc.returncode != 0:
        raise RuntimeError(f"official driver failed (rc {proc.returncode}):\n{proc.stderr[-4000:]}")
    report = json.loads(proc.stdout)
    if len(report["jobs"]) != len(jobs):
        raise RuntimeError(f"official driver returned {len(report['jobs'])} results for {len(jobs)} jobs")
    return report


def run_official(name: str, data_dir: Path | str, jobs: list[dict[str, Any]], timeout: float = 600) -> list[dict]:
    """One result per job, in order (see ``tests/official_driver.py`` for the fields)."""
    return run_official_report(name, data_dir, jobs, timeout)["jobs"]


def replay_job(ep: Any, job: dict[str, Any], policies: dict[str, Any] | None = None) -> dict[str, Any]:
    """Play one driver job with pb-build's generic replay, recording the fields the official driver reports.

    ``policies`` overrides named policies (e.g. a source whose driver 'oracle' is not ours).
    """
    from pb_build.replay import POLICIES, Replay

    table = {**POLICIES, **(policies or {})}
    policy, answers = job["policy"], job.get("answers") or []
    rep = Replay(ep, reference=bool(job.get("reference")) or policy == "reference")
    shown: list[list[str]] = []
    while not rep.done:
        shown.append(rep.shown_texts())
        if policy == "letters":
            text = answers[min(rep.num_turns, len(answers) - 1)]
        elif policy == "reference":
            text = ep.answer
        else:
            text = table[policy](rep)
        rep.answer(text)
    return {
        "num_turns": rep.num_turns, "correct_prediction": rep.correct, "max_steps": rep.num_turns == ep.max_steps,
        "frames": [t.frame for t in rep.turns], "answers": [t.answer for t in rep.turns], "options": shown,
        "action_evaluations": [t.action_verdict for t in rep.turns],
        "category_evaluations": [t.category_verdict for t in rep.turns],
    }


SCRIPTED = ("oracle", "proactive", "abstain", "first")


def standard_jobs(records: dict[int, dict[str, Any]],
                  sequences: Any) -> list[dict[str, Any]]:
    """Per record: the scripted policies, reference mode, and ``sequences(record)`` -> [(answers, reference)]."""
    jobs: list[dict[str, Any]] = []
    for sid in sorted(records):
        jobs += [{"id": sid, "policy": policy} for policy in SCRIPTED]
        jobs.append({"id": sid, "policy": "reference", "reference": True})
        for answers, reference in sequences(records[sid]):
            jobs.append({"id": sid, "policy": "letters", "answers": answers, "reference": reference})
    return jobs


@dataclasses.dataclass
class Outcome:
    """One job played in the official environment and in our replay."""

    job: dict[str, Any]
    official: dict[str, Any]
    ours: dict[str, Any]
    official_frames: list[int | None] = dataclasses.field(default_factory=list)


def play_both(name: str, test_dir: Path, jobs: list[dict[str, Any]], episodes: dict[int, Any],
              frame_paths: Any) -> tuple[dict[str, Any], list[Outcome]]:
    """Play ``jobs`` in the official environment (one subprocess) and in our replay; ``frame_paths(id)`` maps
    the official relative image paths of a record to our frame indices."""
    report = run_official_report(name, test_dir, jobs)
    outcomes = []
    for job, off in zip(jobs, report["jobs"], strict=True):
        paths = frame_paths(job["id"])
        outcomes.append(Outcome(job, off, replay_job(episodes[job["id"]], job), [paths.get(p) for p in off["images"]]))
    return report, outcomes


def of_policy(outcomes: list[Outcome], policy: str) -> list[Outcome]:
    """The outcomes of one policy (there must be some)."""
    out = [o for o in outcomes if o.job["policy"] == policy]
    assert out, f"no {policy} jobs"
    return out


def describe(o: Outcome) -> str:
    """A job, for assertion messages."""
    return f"id {o.job['id']} {o.job['policy']} {o.job.get('answers', '')} ref={o.job.get('reference', False)}"
