"""Native config writer: parquet shards with frames embedded as images and the state machine in columns."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pb_build.episode import Episode, OfficialExport, OfficialFile, State

ROW_GROUP = 100
# Rows of long videos embed hundreds of frames; a byte bound keeps memory flat whatever the row size.
ROW_GROUP_BYTES = 64 * 1024 * 1024
DEFAULT_SHARD_BYTES = 500 * 1024 * 1024

# The columns in the JSON form of ``datasets.Features.to_dict()``; the arrow schema is derived from it here, so
# writing a shard does not import ``datasets`` (a second of every worker's start-up). A test checks that SCHEMA
# equals ``datasets.Features.from_dict(FEATURES).arrow_schema``, metadata included.
_i32 = {"dtype": "int32", "_type": "Value"}
_str = {"dtype": "string", "_type": "Value"}


def _list(feature: dict[str, Any]) -> dict[str, Any]:
    return {"feature": feature, "_type": "List"}


FEATURES: dict[str, Any] = {
    "id": {"dtype": "int64", "_type": "Value"},
    "key": _str,
    "source": _str,
    "official_name": _str,
    "prompt": _str,
    "options": _list(_str),
    "abstain_option": _i32,
    "categories": _list(_str),
    "answer": _str,
    "frames": _list({"_type": "Image"}),
    "states": _list({"frame": _i32, "shown": _list(_i32), "valid": _list(_i32), "targets": _list(_i32),
                     "answer_valid": {"dtype": "bool", "_type": "Value"}}),
    "initial_state": _i32,
    "reference_frame": _i32,
    "max_steps": _i32,
    "hint": _str,
    "pre_prompt": _str,
    "official_record": _str,
    "official_files": _list(_str),
    "meta": _str,
}
_ARROW_VALUES = {"int64": pa.int64(), "int32": pa.int32(), "string": pa.string(), "bool": pa.bool_()}
_IMAGE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])  # how ``datasets`` stores an Image


def arrow_type(feature: dict[str, Any]) -> pa.DataType:
    """The arrow type ``datasets`` gives a feature in its ``to_dict()`` form (the kinds :data:`FEATURES` uses)."""
    kind = feature.get("_type")
    if kind == "Value":
        return _ARROW_VALUES[feature["dtype"]]
    if kind == "List":
        return pa.list_(arrow_type(feature["feature"]))
    if kind == "Image":
        return _IMAGE
    return pa.struct([(name, arrow_type(sub)) for name, sub in feature.items()])


def arrow_schema(features: dict[str, Any]) -> pa.Schema:
    """The schema ``datasets.Features.from_dict(features).arrow_schema`` gives, its metadata included."""
    return pa.schema([(name, arrow_type(f)) for name, f in features.items()],
                     metadata={"huggingface": json.dumps({"info": {"features": features}})})


SCHEMA = arrow_schema(FEATURES)

# What each column of a native config holds (the dataset card lists these; a test checks every column has one).
FIELD_DOCS = {
    "id": "Sample id, equal to the `id` of the official record.",
    "key": "Stable sample key derived from the raw data (the same raw item always gets the same key).",
    "source": "pb-build source name (the native config).",
    "official_name": "Environment name in the official `proactivebench` package.",
    "prompt": "The question asked about the frames.",
    "options": "Every option text the episode can show: proactive actions, abstain options and others.",
    "abstain_option": "Index in `options` of the abstain option (\"I do not know\"-style answer).",
    "categories": "The answer categories shown as choices in multiple-choice mode.",
    "answer": "The correct category.",
    "frames": "The frames (images) of the episode; states refer to them by index.",
    "states": "The finite state machine: per state its frame, the option indices shown, the valid (proactive) "
              "ones, the state each shown option leads to, and whether answering is valid there.",
    "initial_state": "Index of the state an episode starts in.",
    "reference_frame": "Index of the informative frame (used by reference runs).",
    "max_steps": "Most proactive steps a model may take before it must answer.",
    "hint": "Hint text added to the prompt in hinted runs.",
    "pre_prompt": "Text placed before the question (empty when none).",
    "official_record": "The record as the official `test/<Name>_preprocessed.jsonl` holds it (JSON).",
    "official_files": "Paths under `test/` of the files the official record names.",
    "meta": "Source-specific provenance of the sample (JSON): raw file names, chosen parameters.",
}


def to_row(ep: Episode, sample_id: int) -> dict[str, Any]:
    """The native row of an episode."""
    official = ep.official
    return {
        "id": sample_id,
        "key": ep.key,
        "source": ep.source,
        "official_name": official.name if official else "",
        "prompt": ep.prompt,
        "options": list(ep.options),
        "abstain_option": ep.abstain[0],
        "categories": list(ep.categories),
        "answer": ep.answer,
        "frames": [{"bytes": f, "path": None} for f in ep.frames],
        "states": [
            {"frame": s.frame, "shown": list(s.shown), "valid": list(s.valid), "targets": list(s.targets),
             "answer_valid": s.answer_valid}
            for s in ep.states
        ],
        "initial_state": ep.initial_state,
        "reference_frame": ep.reference_frame,
        "max_steps": ep.max_steps,
        "hint": ep.hint,
        "pre_prompt": ep.pre_prompt,
        "official_record": json.dumps({"id": sample_id, **official.record}, ensure_ascii=False) if official else "",
        "official_files": [f.path for f in official.files] if official else [],
        "meta": json.dumps(ep.meta, ensure_ascii=False, sort_keys=True),
    }


def from_row(row: dict[str, Any]) -> Episode:
    """Rebuild an episode from a native row (frames as encoded bytes; official files without data)."""
    record = json.loads(row["official_record"]) if row["official_record"] else None
    official = None
    if record is not None:
        record.pop("id", None)
        files = tuple(OfficialFile(p, b"") for p in row["official_files"])
        official = OfficialExport(row["official_name"], record, files)
    return Episode(
        source=row["source"],
        key=row["key"],
        prompt=row["prompt"],
        options=tuple(row["options"]),
        categories=tuple(row["categories"]),
        answer=row["answer"],
        frames=tuple(f["bytes"] for f in row["frames"]),
        states=tuple(
            State(s["frame"], tuple(s["shown"]), tuple(s["valid"]), tuple(s["targets"]), s["answer_valid"])
            for s in row["states"]
        ),
        reference_frame=row["reference_frame"],
        max_steps=row["max_steps"],
        initial_state=row["initial_state"],
        hint=row["hint"],
        pre_prompt=row["pre_prompt"],
        abstain=(row["abstain_option"],),
        official=official,
        meta=json.loads(row["meta"]),
    )


class ParquetShards:
    """Streams rows into ``<dir>/<split>-XXXXX-of-NNNNN.parquet`` shards, rolling over at ``shard_bytes``."""

    def __init__(self, folder: Path, split: str = "test", shard_bytes: int = DEFAULT_SHARD_BYTES,
                 schema: pa.Schema = SCHEMA):
        self.folder, self.split, self.shard_bytes, self.schema = folder, split, shard_bytes, schema
        self.folder.mkdir(parents=True, exist_ok=True)
        self._shards: list[Path] = []
        self._writer: pq.ParquetWriter | None = None
        self._batch: list[dict[str, Any]] = []
        self._batch_bytes = 0
        self._shard_bytes = 0
        self.rows = 0

    def write_row(self, row: dict[str, Any], size: int) -> None:
        """Append one row of about ``size`` bytes (its embedded images)."""
        self._batch.append(row)
        self._batch_bytes += size
        self.rows += 1
        if len(self._batch) >= ROW_GROUP or self._batch_bytes >= ROW_GROUP_BYTES:
            self._flush()

    def _flush(self) -> None:
        if not self._batch:
            return
        if self._writer is None or self._shard_bytes >= self.shard_bytes:
            self._roll()
        assert self._writer is not None
        self._writer.write_table(pa.Table.from_pylist(self._batch, schema=self.schema), row_group_size=len(self._batch))
        self._shard_bytes += self._batch_bytes
        self._batch, self._batch_bytes = [], 0

    def _roll(self) -> None:
        if self._writer is not None:
            self._writer.close()
        path = self.folder / f".{self.split}-{len(self._shards):05d}.parquet"
        self._shards.append(path)
        self._writer = pq.ParquetWriter(path, self.schema, compression="snappy")
        self._shard_bytes = 0

    def close(self) -> list[Path]:
        """Finish the last shard and give shards their final ``-of-N`` names; returns the final paths."""
        self._flush()
        if self._writer is None:
            self._roll()  # an empty split still gets one (empty) shard so the config loads
        assert self._writer is not None
        self._writer.close()
        total = len(self._shards)
        final = []
        for i, tmp in enumerate(self._shards):
            dest = self.folder / f"{self.split}-{i:05d}-of-{total:05d}.parquet"
            tmp.rename(dest)
            final.append(dest)
        return final


class NativeWriter(ParquetShards):
    """The native config of a source: one row per episode (see :data:`FEATURES`)."""

    def write(self, ep: Episode, sample_id: int) -> None:
        """Append one episode."""
        self.write_row(to_row(ep, sample_id), sum(len(f) for f in ep.frames))


def read_rows(paths: list[Path]):
    """Iterate the rows of parquet shards as dicts, one row group at a time."""
    for path in paths:
        pf = pq.ParquetFile(path)
        for rg in range(pf.num_row_groups):
            yield from pf.read_row_group(rg).to_pylist()


def head_rows(paths: list[Path], n: int) -> list[dict]:
    """The first ``n`` rows of parquet shards as dicts, decoding only the batch that holds them (a whole row
    group of frames took a tenth of a second)."""
    rows: list[dict] = []
    for path in paths:
        for batch in pq.ParquetFile(path).iter_batches(batch_size=n):
            rows += batch.to_pylist()
            if len(rows) >= n:
                return rows[:n]
    return rows
