"""Versioned, immutable extract snapshots: several per (source table, partition).

A partition's snapshots sit side by side in its table folder, each written once (create
only: of two writers of one version exactly one wins) and never overwritten or deleted
by the pipeline:

    extract/job_name=aps_input/date=2026-11-21/process_result/data.parquet      version 1
    extract/job_name=aps_input/date=2026-11-21/process_result/data.v2.parquet   version 2
    ...

Version 1 keeps the path that every snapshot had before versions existed, so older lakes
read on unchanged. Readers take the newest version; the older ones stay for audit and for
reprocessing an earlier state. Each file carries, in its Parquet footer, what it was
taken from (`aps_etl.snapshot`: the source fingerprint, when and how it was taken), so a
snapshot and its provenance are published together, in one atomic write.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass
from typing import Any

import polars as pl
import pyarrow.parquet as pq

from aps_etl.lake.atomic import ImmutablePartitionError, write_parquet
from aps_etl.lake.layout import DATA_FILE, LakeTable
from aps_etl.lake.storage import LakeResource
from aps_etl.sources.fingerprint import Fingerprint

FOOTER_KEY = "aps_etl.snapshot"
_FILE = re.compile(r"data(?:\.v([0-9]+))?\.parquet")


class SnapshotConflict(ImmutablePartitionError):
    """Another writer published the same snapshot version first."""


def file_name(version: int) -> str:
    if version < 1:
        raise ValueError(f"snapshot versions start at 1, got {version}")
    return DATA_FILE if version == 1 else f"data.v{version}.parquet"


def version_of(name: str) -> int | None:
    match = _FILE.fullmatch(name)
    if not match:
        return None
    return int(match.group(1)) if match.group(1) else 1


@dataclass(frozen=True)
class Snapshot:
    """One immutable snapshot of a partition and where it came from."""

    table: str
    partition: str
    version: int
    uri: str
    rows: int
    size_bytes: int
    fingerprint: Fingerprint | None  # None: written before fingerprints existed
    taken_at: str | None = None
    method: str = "full"  # full | incremental (composed: previous version + delta) | legacy
    base_version: int | None = None  # incremental: the version it was composed from
    delta_rows: int | None = None
    run_id: str | None = None

    def lineage(self) -> dict[str, Any]:
        """What a load records about the snapshot it was built on."""
        return {
            "version": self.version,
            "rows": self.rows,
            "taken_at": self.taken_at,
            "fingerprint": json.loads(self.fingerprint.to_json()) if self.fingerprint else None,
            "uri": self.uri,
        }


def _folder(lake: LakeResource, table: LakeTable, key: str) -> str:
    return lake.uri(*table.partition_parts(key))


def versions(lake: LakeResource, table: LakeTable, key: str) -> dict[int, str]:
    """{version: uri} of a partition's snapshots (one listing)."""
    folder = _folder(lake, table, key)
    try:
        entries = lake.fs.ls(folder, detail=False)
    except FileNotFoundError:
        return {}
    found: dict[int, str] = {}
    for entry in entries:
        version = version_of(str(entry).rstrip("/").rsplit("/", 1)[-1])
        if version is not None:
            found[version] = f"{folder}/{file_name(version)}"
    return dict(sorted(found.items()))


def newest_uri(lake: LakeResource, table: LakeTable, key: str) -> str | None:
    found = versions(lake, table, key)
    return found[max(found)] if found else None


def read(lake: LakeResource, table: LakeTable, key: str, version: int, uri: str) -> Snapshot:
    """A snapshot's provenance, from its Parquet footer (one ranged read)."""
    with lake.fs.open(uri, "rb") as handle:
        meta = pq.read_metadata(handle)
    size = lake.fs.size(uri)
    raw = (meta.metadata or {}).get(FOOTER_KEY.encode())
    if raw is None:
        return Snapshot(table.table, key, version, uri, meta.num_rows, size, None, method="legacy")
    info = json.loads(raw)
    fingerprint = info.get("fingerprint")
    return Snapshot(
        table=table.table,
        partition=key,
        version=version,
        uri=uri,
        rows=meta.num_rows,
        size_bytes=size,
        fingerprint=Fingerprint.from_dict(fingerprint) if fingerprint else None,
        taken_at=info.get("taken_at"),
        method=info.get("method", "full"),
        base_version=info.get("base_version"),
        delta_rows=info.get("delta_rows"),
        run_id=info.get("run_id"),
    )


def newest(lake: LakeResource, table: LakeTable, key: str) -> Snapshot | None:
    found = versions(lake, table, key)
    if not found:
        return None
    version = max(found)
    return read(lake, table, key, version, found[version])


def history(lake: LakeResource, table: LakeTable, key: str) -> list[Snapshot]:
    """Every snapshot of a partition, oldest first."""
    return [read(lake, table, key, v, uri) for v, uri in versions(lake, table, key).items()]


def write(
    lake: LakeResource,
    table: LakeTable,
    key: str,
    frame: pl.DataFrame | pl.LazyFrame,
    *,
    version: int,
    fingerprint: Fingerprint | None,
    method: str = "full",
    base_version: int | None = None,
    delta_rows: int | None = None,
    run_id: str | None = None,
) -> Snapshot:
    """Publishes `frame` as snapshot `version` of the partition, create-only: raises
    SnapshotConflict when that version exists (another writer got there first)."""
    taken_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    info = {
        "fingerprint": json.loads(fingerprint.to_json()) if fingerprint else None,
        "taken_at": taken_at,
        "method": method,
        "base_version": base_version,
        "delta_rows": delta_rows,
        "run_id": run_id,
    }
    parts = (*table.partition_parts(key), file_name(version))
    try:
        written = write_parquet(
            lake,
            parts,
            frame,
            immutable=True,
            metadata={FOOTER_KEY: json.dumps(info)},
            # the source counted these rows: the published file must hold exactly them
            expected_rows=fingerprint.rows if fingerprint else None,
        )
    except SnapshotConflict:
        raise
    except ImmutablePartitionError as exc:
        raise SnapshotConflict(str(exc)) from None
    return Snapshot(
        table.table,
        key,
        version,
        written.uri,
        written.rows,
        written.size_bytes,
        fingerprint,
        taken_at,
        method,
        base_version,
        delta_rows,
        run_id,
    )
