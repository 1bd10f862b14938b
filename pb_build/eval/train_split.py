"""``pb-build train-split``: single-turn MCQA rows in the schema of the released training split (§12).

Each row is one state of an episode: the chat-format prompt (the image item, then the MCQA prompt with the
state's shown options and the categories), the ground-truth category, the proactive options valid in that state
(empty when the frame is already informative), the lettered option list and the frame. States reachable from
the first one are used, ambiguous and unambiguous alike; ``per_episode`` keeps a seeded subset that still holds
one of each kind when the episode has both. The output folder is a dataset with one ``default`` config whose
only split is ``train`` (``data/train-*.parquet``), with a card, a manifest and ``SHA256SUMS``. Training episodes
should be built from data disjoint from the test release (the paper: other QuickDraw drawings and COCO
train2014); ``exclude`` drops any episode whose key a test release contains.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datasets import Features, Image, List, Value

from pb_build import __version__
from pb_build.episode import Episode
from pb_build.errors import PbBuildError
from pb_build.eval import data as eval_data
from pb_build.eval.prompts import multi_choice, question
from pb_build.manifests import manifest as manifests
from pb_build.release_folder import finish, new_folder
from pb_build.seeding import sample_rng
from pb_build.writers.native import ParquetShards

_str = Value("string")
FEATURES = Features({
    "prompt": List({"role": _str, "content": List({"type": _str, "text": _str})}),
    "ground_truth": _str,
    "proactive_actions": List(_str),
    "options": List(_str),
    "images": List(Image()),
})


@dataclass(frozen=True)
class TrainRow:
    """One exported state (``row`` in the training schema) and where it came from."""

    key: str
    state: int
    row: dict[str, Any]


def reachable_states(ep: Episode) -> list[int]:
    """States reachable from the initial one through valid moves, in breadth-first order."""
    seen, queue, order = {ep.initial_state}, deque([ep.initial_state]), []
    while queue:
        s = queue.popleft()
        order.append(s)
        for t in ep.states[s].targets:
            if t not in seen:
                seen.add(t)
                queue.append(t)
    return order


def choose_states(ep: Episode, per_episode: int, seed: int) -> list[int]:
    """All reachable states, or ``per_episode`` of them (seeded), keeping one ambiguous and one unambiguous."""
    states = reachable_states(ep)
    if per_episode <= 0 or per_episode >= len(states):
        return states
    rng = sample_rng(seed, "train-split", ep.key)
    order = [states[i] for i in rng.permutation(len(states))]
    ambiguous = [s for s in order if ep.states[s].valid]
    plain = [s for s in order if not ep.states[s].valid]
    picked = [group[0] for group in (ambiguous, plain) if group][:per_episode]
    picked += [s for s in order if s not in picked][: per_episode - len(picked)]
    return sorted(picked, key=states.index)


def state_row(ep: Episode, state: int, hint: bool = False) -> dict[str, Any]:
    """The training row of one state."""
    st = ep.states[state]
    texts = [ep.options[i] for i in st.shown] + list(ep.categories)
    prompt = multi_choice(question(ep, hint), texts, short_answer=True)
    return {
        "prompt": [{"role": "user", "content": [{"type": "image", "text": None}, {"type": "text", "text": prompt}]}],
        "ground_truth": ep.answer,
        "proactive_actions": [ep.options[i] for i in st.valid],
        "options": texts,
        "images": [{"bytes": ep.frames[st.frame], "path": None}],
    }


def release_keys(release: Path) -> set[str]:
    """Every sample key of a release (from its manifest)."""
    return {k for e in manifests.read(release).sources for k in e.keys}


def collect(releases: list[Path], source_names: list[str], *, per_episode: int = 0, seed: int = 0,
            exclude: list[Path] | None = None, hint: bool = False) -> tuple[list[TrainRow], dict[str, Any]]:
    """Training rows from the named sources of the given releases (or official-layout folders)."""
    if not source_names:
        raise PbBuildError("pass at least one --source")
    banned = set().union(*(release_keys(p) for p in exclude or []))
    rows: list[TrainRow] = []
    report: dict[str, Any] = {"inputs": [], "excluded_overlap": 0, "load_failures": []}
    for folder in releases:
        for name in source_names:
            try:
                ds = eval_data.load(folder, name)
            except PbBuildError as exc:
                if "is not in this folder" in str(exc) and len(releases) > 1:
                    continue  # each release holds some of the sources
                raise
            report["inputs"].append(ds.describe())
            report["load_failures"] += [f.__dict__ for f in ds.failures]
            for item in ds.items:
                ep = item.episode
                if ep.key in banned:
                    report["excluded_overlap"] += 1
                    continue
                rows += [TrainRow(ep.key, s, state_row(ep, s, hint)) for s in choose_states(ep, per_episode, seed)]
    found = {d["source"] for d in report["inputs"]}
    if not report["inputs"]:
        raise PbBuildError(f"none of the sources {', '.join(source_names)} is in the given folders")
    report["sources"] = sorted(found)
    return rows, report


def write(out: Path, rows: list[TrainRow], report: dict[str, Any], params: dict[str, Any],
          overwrite: bool = False) -> Path:
    """Write the training dataset folder atomically; an empty split is an error and leaves nothing."""
    if not rows:
        raise PbBuildError(f"{out}: the train split would have 0 rows (no reachable state in the selected "
                           "episodes, or every episode is excluded); nothing was written")
    with new_folder(out, overwrite) as tmp:
        shards = ParquetShards(tmp / "data", "train", shard_bytes=1 << 62, schema=FEATURES.arrow_schema)
        for r in rows:
            shards.write_row(r.row, sum(len(i["bytes"]) for i in r.row["images"]))
        shards.close()
        ambiguous = sum(bool(r.row["proactive_actions"]) for r in rows)
        manifest = manifests.TrainSplitManifest(
            parameters=params, report=report,
            counts={"rows": len(rows), "ambiguous": ambiguous, "unambiguous": len(rows) - ambiguous},
            rows=[[r.key, r.state] for r in rows])
        finish(tmp, manifest, _card(len(rows), ambiguous, report["sources"]))
    return out


def _card(n: int, ambiguous: int, source_names: list[str]) -> str:
    return (
        "---\nconfigs:\n- config_name: default\n  data_files:\n  - split: train\n    path: data/train-*\n"
        "license: cc-by-nc-4.0\n---\n\n# ProactiveBench-style training split (pb-build)\n\n"
        f"Built with pb-build {__version__} from: {', '.join(source_names)}. {n} single-turn MCQA rows "
        f"({ambiguous} ambiguous states with a valid proactive action, {n - ambiguous} informative ones). Columns: "
        "`prompt` (chat messages), `ground_truth`, `proactive_actions`, `options`, `images`, as in the released "
        "ProactiveBench training split. `manifest.json` lists the (episode key, state) of every row.\n"
    )
