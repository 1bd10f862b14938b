"""Builds spread over machines: part folders (``--num-shards K --shard-index I``) and ``pb-build merge``.

Part I of K holds the shards j with j % K == I of every source (``shards/<source>/<j>/``) and ``part.json``: the
build's identity (tool version, recipe, per source its manifest entry with parameters, seed, builder code and
raw inventory, and the shard count) plus the fingerprint of each shard it holds. ``merge`` checks that the parts
are one build (same identity, every index 0..K-1 exactly once, every shard intact) and assembles the release,
byte-identical to a build on one machine.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from pb_build import __version__
from pb_build.assemble import SourceShards, Take, assemble, check_min_samples, copy, move
from pb_build.errors import PbBuildError
from pb_build.manifests import manifest as manifests
from pb_build.release_folder import new_folder
from pb_build.shards import check_shard

PART = "part.json"
KIND = "pb-build-part"


def write_part(root: Path, planned: list[Any], release: dict[str, Any] | None, writer: dict[str, Any],
               sharding: Any, take: Take = move) -> None:
    """Move this part's finished shards into ``root/shards`` and write ``part.json``."""
    sources = []
    for p in planned:
        source = p.shards.entry.source
        for index, folder in zip(p.owned, p.shards.folders, strict=True):
            dest = root / "shards" / source / f"{index:05d}"
            dest.parent.mkdir(parents=True, exist_ok=True)
            take(folder, dest)
        sources.append({"entry": asdict(p.shards.entry), "fingerprint": p.fingerprint, "total": p.total,
                        "plan_skipped": p.shards.plan_skipped, "plan_ineligible": p.shards.plan_ineligible,
                        "shards": {str(i): p.shard_fingerprints[i] for i in p.owned}})
    body = {"kind": KIND, "pb_build": __version__, "num_shards": sharding.count, "shard_index": sharding.index,
            "release": release, "writer": writer, "sources": sources}
    (root / PART).write_text(json.dumps(body, indent=1, sort_keys=True, ensure_ascii=False) + "\n",
                             encoding="utf-8", newline="\n")


def _read(part: Path) -> dict[str, Any]:
    try:
        body = json.loads((part / PART).read_text(encoding="utf-8"))
    except OSError:
        raise PbBuildError(f"{part}: not a pb-build part (no {PART}; build parts with --num-shards and "
                           "--shard-index)") from None
    except ValueError as exc:
        raise PbBuildError(f"{part}/{PART}: corrupted ({exc})") from None
    if not isinstance(body, dict) or body.get("kind") != KIND:
        raise PbBuildError(f"{part}/{PART}: not a pb-build part")
    return body


def _identity(body: dict[str, Any]) -> dict[str, Any]:
    """What must be equal in every part of one build."""
    return {"pb_build": body["pb_build"], "num_shards": body["num_shards"], "release": body["release"],
            "writer": body["writer"],
            "sources": [{k: v for k, v in s.items() if k != "shards"} for s in body["sources"]]}


def _difference(a: dict[str, Any], b: dict[str, Any]) -> str:
    """Which part of the build's identity differs between two parts, in words."""
    if a["pb_build"] != b["pb_build"]:
        return f"pb-build version {a['pb_build']} vs {b['pb_build']}"
    if a["num_shards"] != b["num_shards"]:
        return f"--num-shards {a['num_shards']} vs {b['num_shards']}"
    names = [[s["entry"]["source"] for s in x["sources"]] for x in (a, b)]
    if names[0] != names[1]:
        return f"sources {', '.join(names[0])} vs {', '.join(names[1])}"
    labels = {"seed": "seed", "parameters": "parameters", "raw": "raw inputs", "tables": "user tables",
              "builder_sha256": "builder code", "builder_version": "builder version"}
    for sa, sb in zip(a["sources"], b["sources"], strict=True):
        for key, label in labels.items():
            if sa["entry"].get(key) != sb["entry"].get(key):
                return f"{sa['entry']['source']}: different {label}"
        if sa != sb:
            return f"{sa['entry']['source']}: different build settings"
    return "different recipe or writer settings"


def merge(parts: list[Path], out: Path, overwrite: bool = False, min_samples: int = 1) -> manifests.Manifest:
    """Combine the parts of a sharded build into the release ``out``; a source with fewer than ``min_samples``
    samples fails the merge and leaves ``out`` untouched."""
    if not parts:
        raise PbBuildError("merge needs at least one part folder")
    bodies = [(part, _read(part)) for part in parts]
    first_part, first = bodies[0]
    identity = _identity(first)
    by_index: dict[int, Path] = {}
    for part, body in bodies:
        try:
            other = _identity(body)
        except KeyError as exc:
            raise PbBuildError(f"{part}/{PART}: corrupted (missing {exc})") from None
        if other != identity:
            raise PbBuildError(f"{part}: not a part of the same build as {first_part} "
                               f"({_difference(identity, other)})")
        index = body["shard_index"]
        if index in by_index:
            raise PbBuildError(f"{part}: part {index} of {first['num_shards']} is given twice "
                               f"(also {by_index[index]})")
        by_index[index] = part
    missing = [i for i in range(first["num_shards"]) if i not in by_index]
    if missing:
        raise PbBuildError(f"part(s) {', '.join(map(str, missing))} of {first['num_shards']} are missing "
                           f"(build them with --num-shards {first['num_shards']} --shard-index I)")
    sources = []
    shards_of = {i: {s["entry"]["source"]: s["shards"] for s in body["sources"]} for _, body in bodies
                 for i in [body["shard_index"]]}
    for s in first["sources"]:
        entry = manifests.parse({"sources": [s["entry"]]}, f"{first_part}/{PART}").sources[0]
        src = SourceShards(entry, s["plan_skipped"], plan_ineligible=s.get("plan_ineligible", []),
                           raw=f"the parts of {entry.source}")
        for j in range(s["total"]):
            owner = j % first["num_shards"]
            part = by_index[owner]
            fingerprint = shards_of[owner][entry.source].get(str(j))
            folder = part / "shards" / entry.source / f"{j:05d}"
            summary, why = check_shard(folder, fingerprint) if fingerprint else (None, "not listed")
            if summary is None:
                raise PbBuildError(f"{part}: shard {j} of {entry.source} is missing or corrupted ({why})")
            src.folders.append(folder)
            src.summaries.append(summary)
        check_min_samples(src, min_samples, out)
        sources.append(src)
    with new_folder(out.resolve(), overwrite) as tmp:
        return assemble(tmp, sources, first["release"], first["writer"], take=copy)
