"""Drive the *official* ProactiveBench environments over an exported release (run with Python 3.12).

This script is run by ``tests/official.py`` with the interpreter that has the official ``proactivebench``
package installed (it needs Python 3.12). It imports only ``proactivebench.environment`` (``data_utils``
imports torch) and reads ``<data_dir>/<name>_preprocessed.jsonl`` itself, as the official loader does.

Input: one JSON object, from the file named by ``argv[1]`` or from stdin::

    {"name": "QuickDraw", "data_dir": ".../test", "jobs": [{"id": 0, "policy": "oracle"}, ...]}

A job is ``{"id": <record id>, "policy": <policy>, "answers": [...] (letters only), "reference": bool}``.
Policies, expressed only through what the official environment exposes:

* ``oracle``: the first correct option while there is one, else the correct category text;
* ``proactive``: the first shown option that is not the abstain option (lowercase contains "cannot" or
  "do not"); the correct category when no option is shown;
* ``abstain``: the abstain option;
* ``first``: the correct category at once;
* ``letters``: the raw strings of ``answers`` in order, reusing the last one when the list runs out;
* ``reference``: ``reference=True`` and the correct category.

``reference`` in a job forces reference mode for any policy (``reference`` policy implies it).

``"views": true`` in a job (off by default) also reports, per turn, what the official ``transform`` of the state
makes of the image (COCO shows crops of one unchanged image): ``views`` holds one
``{"box", "size", "mode", "sha256"}`` per turn, where ``box`` is the crop box the transform passes to
``PIL.Image.crop`` (null when the transform does not crop) and ``sha256`` hashes the transformed image's raw
pixels (``Image.tobytes()``).

Output (stdout): ``{"records": N, "loader_filter": {...}, "jobs": [result, ...]}``, one result per job with
``num_turns``, ``correct_prediction``, ``max_steps`` (from ``env.get_statistics()``), ``images`` (paths visited,
relative to ``data_dir``), ``answers``, ``options`` (shown per turn), ``action_evaluations``,
``category_evaluations``, ``stopped``, ``hint_prompt``, ``image_errors`` and ``error`` (exception text or null).
"""

from __future__ import annotations

import ast
import json
import os
import sys
import traceback

MAX_TURNS = 1000  # a guard against a runaway loop; the official max_steps ends every episode long before


def is_abstain(option: str) -> bool:
    low = option.lower()
    return "cannot" in low or "do not" in low


def load_entries(data_dir: str, name: str) -> list[dict]:
    """The records of ``<data_dir>/<name>_preprocessed.jsonl`` (the official loader's path), in file order."""
    path = os.path.join(data_dir, name + "_preprocessed.jsonl")
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def loader_filter(name: str, ids: list[int]) -> dict:
    """What the official ``load_proactivebench_dataset`` would keep: it drops ids not in its FILTER table.

    The table is read from ``proactivebench/data_utils.py`` as text (importing it needs torch).
    """
    try:
        import proactivebench

        src_path = os.path.join(os.path.dirname(proactivebench.__file__), "data_utils.py")
        with open(src_path, encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("FILTER"):
                    table = ast.literal_eval(line.split("=", 1)[1].strip())
                    break
            else:
                return {"available": False, "reason": "no FILTER table in data_utils.py"}
    except Exception as exc:  # informational only
        return {"available": False, "reason": f"{type(exc).__name__}: {exc}"}
    if name not in table:
        return {"available": True, "dropped_ids": []}
    keep = set(table[name])
    return {"available": True, "dropped_ids": [i for i in ids if i not in keep]}


class ImageChecker:
    """Checks that a path is a file PIL can open and decode; each path is checked once."""

    def __init__(self) -> None:
        self._seen: dict[str, str | None] = {}

    def check(self, path: str) -> str | None:
        if path not in self._seen:
            self._seen[path] = self._check(path)
        return self._seen[path]

    @staticmethod
    def _check(path: str) -> str | None:
        if not os.path.isfile(path):
            return f"{path}: not a file"
        try:
            from PIL import Image

            with Image.open(path) as img:
                img.load()
                if img.size[0] < 1 or img.size[1] < 1:
                    return f"{path}: empty image {img.size}"
        except Exception as exc:  # reported to the caller
            return f"{path}: PIL cannot open it: {type(exc).__name__}: {exc}"
        return None


def transform_box(transform) -> list | None:
    """The crop box a COCO-style transform closes over (its ``crop`` dict), as PIL crop arguments."""
    for cell in getattr(transform, "__closure__", None) or ():
        try:
            value = cell.cell_contents
        except ValueError:
            continue
        if isinstance(value, dict) and {"left", "top", "width", "height"} <= value.keys():
            return [value["left"], value["top"], value["width"], value["height"]]
    return None


def describe_view(state: dict) -> dict:
    """Apply the state's official transform to its image; the box, size, mode and pixel hash of the result."""
    import hashlib

    from PIL import Image

    with Image.open(state["image_path"]) as img:
        img.load()
        view = state["transform"](img)
        return {"box": transform_box(state["transform"]), "size": list(view.size), "mode": view.mode,
                "sha256": hashlib.sha256(view.tobytes()).hexdigest()}


def shown_options(env, state: dict) -> list[str]:
    """The shown options of a state: ``state['options']`` is the shown options followed by the categories."""
    n_opts = len(state["options"]) - len(env.categories)
    return list(state["options"][:n_opts])


def correct_category(env) -> str:
    _, categories = env._get_correct_options_and_categories()
    return categories[0]


def choose(policy: str, env, state: dict, turn: int, answers: list[str]) -> str:
    if policy == "oracle":
        options, categories = env._get_correct_options_and_categories()
        return options[0] if options else categories[0]
    if policy == "proactive":
        for opt in shown_options(env, state):
            if not is_abstain(opt):
                return opt
        return correct_category(env)
    if policy == "abstain":
        for opt in shown_options(env, state) or list(env.options):
            if is_abstain(opt):
                return opt
        raise ValueError("no abstain option")
    if policy in ("first", "reference"):
        return correct_category(env)
    if policy == "letters":
        if not answers:
            raise ValueError("letters policy needs a non-empty 'answers' list")
        return answers[min(turn, len(answers) - 1)]
    raise ValueError(f"unknown policy {policy!r}")


def run_job(get_environment, name: str, data_dir: str, entries: dict, job: dict, images: ImageChecker) -> dict:
    policy = job["policy"]
    reference = bool(job.get("reference", False)) or policy == "reference"
    answers = list(job.get("answers") or [])
    out = {
        "id": job["id"], "policy": policy, "reference": reference, "num_turns": 0, "correct_prediction": False,
        "max_steps": False, "stopped": False, "images": [], "answers": [], "options": [],
        "action_evaluations": [], "category_evaluations": [], "hint_prompt": None, "image_errors": [],
        "error": None,
    }
    views = bool(job.get("views", False))
    if views:
        out["views"] = []
    env = None
    try:
        entry = entries[job["id"]]
        env = get_environment(name)(entry, data_dir, reference=reference)
        root = os.path.abspath(data_dir)
        turn = 0
        while not env.stop:
            if turn >= MAX_TURNS:
                raise RuntimeError(f"no stop after {MAX_TURNS} turns")
            state = env.get_state()
            if turn == 0:
                out["hint_prompt"] = env.get_state(hint=True)["prompt"]
            path = state["image_path"]
            problem = images.check(path)
            if problem:
                out["image_errors"].append(problem)
            out["images"].append(os.path.relpath(os.path.abspath(path), root).replace(os.sep, "/"))
            out["options"].append(list(state["options"]))
            if views:
                out["views"].append(describe_view(state) if not problem else None)
            answer = choose(policy, env, state, turn, answers)
            out["answers"].append(answer)
            env.evaluate_generated_answer(answer)
            turn += 1
    except Exception:  # reported to the caller
        out["error"] = traceback.format_exc(limit=3)
    if env is not None:
        stats = env.get_statistics()
        out.update(
            num_turns=stats["num_turns"], correct_prediction=stats["correct_prediction"],
            max_steps=stats["max_steps"], action_evaluations=stats["action_evaluations"],
            category_evaluations=stats["category_evaluations"], stopped=bool(env.stop),
        )
    return out


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        with open(argv[1], encoding="utf-8") as handle:
            raw = handle.read()
    else:
        raw = sys.stdin.read()
    spec = json.loads(raw)
    name, data_dir = spec["name"], spec["data_dir"]
    from proactivebench.environment import get_environment

    records = load_entries(data_dir, name)
    entries = {r["id"]: r for r in records}
    images = ImageChecker()
    results = [run_job(get_environment, name, data_dir, entries, job, images) for job in spec["jobs"]]
    report = {
        "records": len(records),
        "ids": [r["id"] for r in records],
        "loader_filter": loader_filter(name, [r["id"] for r in records]),
        "jobs": results,
    }
    json.dump(report, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
