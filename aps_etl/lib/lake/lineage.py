"""Which extract snapshots a transform partition was computed from.

A transform partition's lineage maps each extract it read, directly or through another
transform, to that snapshot's version, row count, fingerprint and path:

    {"aps_input/process_result": {"version": 2, "rows": 76, "fingerprint": {...}, ...}, ...}

It travels with the data (the transform Parquet's footer, key `aps_etl.lineage`), so the
load reads it from the very file it loads and records it in the target's load log.
"""

from __future__ import annotations

import json
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
