"""Helpers to run the official ``proactivebench`` environments (Python 3.12 only) from the pytest process.

The official package runs in its own interpreter: ``$PB_OFFICIAL_PYTHON`` or ``<repo>/.venv312/bin/python``.
``run_official`` feeds ``tests/official_driver.py`` a batch of jobs and returns one result per job.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
DRIVER = Path(__file__).resolve().parent / "official_driver.py"
ENV_VAR = "PB_OFFICIAL_PYTHON"
SETUP_HINT = (
    "official proactivebench needs Python 3.12: create .venv312 with `PYENV_VERSION=3.12.1 python3.12 -m venv "
    ".venv312 && .venv312/bin/pip install proactivebench --no-deps jsonlines attrs pillow`"
)


def official_python() -> Path:
    """The interpreter that should have the official package."""
    configured = os.environ.get(ENV_VAR)
    return Path(configured) if configured else REPO / ".venv312" / "bin" / "python"


@functools.cache
def official_problem() -> str | None:
    """Why the official package cannot be used (None when ``import proactivebench.environment`` works)."""
    python = official_python()
    if not python.exists():
        return f"{python} does not exist"
    try:
        proc = subprocess.run(
            [str(python), "-c", "import proactivebench.environment, PIL"],
            capture_output=True, text=True, timeout=120,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{python}: {exc}"
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        return f"{python} cannot import proactivebench.environment: {last}"
    return None


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
