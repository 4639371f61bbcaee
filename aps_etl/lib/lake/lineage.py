"""Which extract snapshots a transform partition was computed from.

A transform partition's lineage maps each extract it read, directly or through another
transform, to that snapshot's version, row count, fingerprint and path:

    {"aps_input/process_result": {"version": 2, "rows": 76, "fingerprint": {...}, ...}, ...}

It travels with the data (the transform Parquet's footer, key `aps_etl.lineage`), so the
load reads it from the very file it loads and records it in the target's load log, and a
transform about to replace a partition sees what the partition in place was built from:
it refuses to roll it back to older snapshots (`refuse_older`).
"""

from __future__ import annotations

import json
import os
from typing import Any

import pyarrow.parquet as pq

from aps_etl.lib.lake.layout import LakeTable
from aps_etl.lib.lake.snapshots import Snapshot
from aps_etl.lib.lake.storage import LakeResource

FOOTER_KEY = "aps_etl.lineage"
# Output metadata key through which an asset that reads the lake itself (DuckDB) hands the
# IO manager the lineage of each partition it returns: {partition: lineage}.
OUTPUT_METADATA_KEY = "lineage"

Lineage = dict[str, dict[str, Any]]


def label(table: LakeTable) -> str:
    return f"{table.job_name}/{table.table}"


def of_snapshot(table: LakeTable, snapshot: Snapshot) -> Lineage:
    return {label(table): snapshot.lineage()}


def footer(lineage: Lineage) -> dict[str, str]:
    return {FOOTER_KEY: json.dumps(lineage, sort_keys=True, default=str)}


def read_file(lake: LakeResource, uri: str) -> tuple[int, Lineage]:
    """A lake file's row count and lineage, from its footer (one ranged read)."""
    with lake.fs.open(uri, "rb") as handle:
        meta = pq.read_metadata(handle)
    raw = (meta.metadata or {}).get(FOOTER_KEY.encode())
    return meta.num_rows, (json.loads(raw) if raw else {})


class OlderInputsError(RuntimeError):
    """A transform read older snapshots than the partition it would replace was built from:
    an overlapping or late run lost a race; the partition is left as the newer run wrote it."""


def newer_in(existing: Lineage, mine: Lineage) -> list[str]:
    """The snapshots `existing` was built from that are newer than what `mine` read, each as
    "job/table vN (this run read vM)". Only the same table's same partition is compared (a
    transform may read other days of a table)."""
    return [
        f"{name} v{theirs.get('version')} (this run read v{own.get('version')})"
        for name, own in mine.items()
        if (theirs := existing.get(name))
        and _same_folder(theirs, own)
        and int(theirs.get("version") or 0) > int(own.get("version") or 0)
    ]


def refuse_older(lake: LakeResource, uri: str, mine: Lineage) -> None:
    """Raises OlderInputsError if the file at `uri` was built from newer snapshots than
    `mine`. One footer read; nothing in place (or no lineage) passes."""
    if not mine:
        return
    try:
        existing = read_file(lake, uri)[1]
    except FileNotFoundError:  # the partition's first build
        return
    newer = newer_in(existing, mine)
    if newer:
        raise OlderInputsError(
            f"{uri} was built from newer snapshots ({', '.join(newer)}); not replaced. "
            "This run read its inputs before they changed: the partition stays as the newer "
            "run wrote it. Rerun the day to rebuild it from the newest snapshots."
        )


def _same_folder(a: dict[str, Any], b: dict[str, Any]) -> bool:
    ua, ub = a.get("uri"), b.get("uri")
    return bool(ua and ub) and os.path.dirname(str(ua)) == os.path.dirname(str(ub))
