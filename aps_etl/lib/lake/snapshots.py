"""Versioned, immutable extract snapshots: several per (source table, partition).

A partition's snapshots sit side by side in its table folder, each written once (create
only: of two writers of one version exactly one wins) and never overwritten or deleted
by the pipeline:

    extract/job_name=aps_input/date=2026-11-21/process_result/data.parquet      version 1
    extract/job_name=aps_input/date=2026-11-21/process_result/delta.v2.parquet  version 2
    extract/job_name=aps_input/date=2026-11-21/process_result/data.v3.parquet   version 3
    ...

A `data` file holds the whole partition. A `delta` file holds only the rows that changed
since the version before it (the previous version plus these rows, replaced by primary key,
is exactly the source's state: checked by fingerprint when it was taken), so a correction
of a few rows costs a few rows. `scan` resolves a version to its rows; after
MAX_DELTAS deltas in a row, or a delta of more than a quarter of the rows, the next
version is written whole again.

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

from aps_etl.lib.lake.atomic import ImmutablePartitionError, write_parquet
from aps_etl.lib.lake.layout import DATA_FILE, LakeTable
from aps_etl.lib.lake.source_fingerprint import Fingerprint
from aps_etl.lib.lake.storage import LakeResource

FOOTER_KEY = "aps_etl.snapshot"
_FILE = re.compile(r"(data|delta)(?:\.v([0-9]+))?\.parquet")
# Deltas in a row before a version is written whole again; and the largest delta, as a
# share of the partition's rows, worth keeping as a delta.
MAX_DELTAS = 8
MAX_DELTA_SHARE = 0.25
# ... and in rows: a delta is checked by handing its rows' keys back to the source.
MAX_DELTA_ROWS = 100_000


class SnapshotConflict(ImmutablePartitionError):
    """Another writer published the same snapshot version first."""


def file_name(version: int, *, delta: bool = False) -> str:
    if version < 1 or (delta and version < 2):
        raise ValueError(f"no snapshot version {version} (a delta needs a version before it)")
    if delta:
        return f"delta.v{version}.parquet"
    return DATA_FILE if version == 1 else f"data.v{version}.parquet"


def version_of(name: str) -> int | None:
    match = _FILE.fullmatch(name)
    if not match or (match.group(1) == "delta" and not match.group(2)):
        return None
    return int(match.group(2)) if match.group(2) else 1


@dataclass(frozen=True)
class Snapshot:
    """One immutable snapshot of a partition and where it came from."""

    table: str
    partition: str
    version: int
    uri: str
    rows: int  # of the whole version (for a delta: the previous version's plus changes)
    size_bytes: int
    fingerprint: Fingerprint | None  # None: written before fingerprints existed
    taken_at: str | None = None
    # full | incremental (a delta on base_version) | legacy (before fingerprints)
    method: str = "full"
    base_version: int | None = None  # incremental: the version the delta applies to
    delta_rows: int | None = None
    run_id: str | None = None
    key: tuple[str, ...] | None = None  # incremental: the primary key a delta replaces by

    @property
    def is_delta(self) -> bool:
        return self.method == "incremental" and self.uri.rsplit("/", 1)[-1].startswith("delta")

    def lineage(self) -> dict[str, Any]:
        """What a load records about the snapshot it was built on."""
        return {
            "version": self.version,
            "rows": self.rows,
            "taken_at": self.taken_at,
            "fingerprint": json.loads(self.fingerprint.to_json()) if self.fingerprint else None,
            "uri": self.uri,
            "method": self.method,
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
        name = str(entry).rstrip("/").rsplit("/", 1)[-1]
        version = version_of(name)
        if version is not None:
            found[version] = f"{folder}/{name}"
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
        rows=int(info.get("rows", meta.num_rows)),
        size_bytes=size,
        fingerprint=Fingerprint.from_dict(fingerprint) if fingerprint else None,
        taken_at=info.get("taken_at"),
        method=info.get("method", "full"),
        base_version=info.get("base_version"),
        delta_rows=info.get("delta_rows"),
        run_id=info.get("run_id"),
        key=tuple(info["key"]) if info.get("key") else None,
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


def chain(lake: LakeResource, table: LakeTable, snapshot: Snapshot) -> list[Snapshot]:
    """The files that make up a version: the whole version it builds on, then its deltas
    in order (a whole version alone is its own chain)."""
    files = [snapshot]
    found = versions(lake, table, snapshot.partition) if snapshot.is_delta else {}
    while files[0].is_delta:
        base = files[0].base_version
        if base is None or base not in found:
            raise FileNotFoundError(
                f"snapshot version {files[0].version} of {table.table} "
                f"{snapshot.partition} builds on version {base}, which is not in the lake"
            )
        files.insert(0, read(lake, table, snapshot.partition, base, found[base]))
    return files


def scan(lake: LakeResource, table: LakeTable, snapshot: Snapshot) -> pl.LazyFrame:
    """The rows of a snapshot version, lazily: a whole file, or the whole version below
    it with each delta's rows replacing theirs by primary key."""
    options = lake.polars_storage_options()
    files = chain(lake, table, snapshot)
    frame = pl.scan_parquet(files[0].uri, storage_options=options)
    for delta in files[1:]:
        key = list(delta.key or ())
        changed = pl.scan_parquet(delta.uri, storage_options=options)
        kept = frame.join(changed.select(key), on=key, how="anti")
        frame = pl.concat([kept, changed], how="vertical")
    return frame


def delta_allowed(lake: LakeResource, table: LakeTable, base: Snapshot, delta_rows: int) -> bool:
    """Whether a delta on `base` keeps reads cheap: a short chain, a small change."""
    if base.fingerprint is None or delta_rows > MAX_DELTA_ROWS:
        return False
    if delta_rows > MAX_DELTA_SHARE * max(base.rows, 1):
        return False
    return len(chain(lake, table, base)) <= MAX_DELTAS


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
    delta_key: tuple[str, ...] | None = None,
) -> Snapshot:
    """Publishes `frame` as snapshot `version` of the partition, create-only: raises
    SnapshotConflict when that version exists (another writer got there first). With
    `delta_key`, `frame` holds only the rows changed since `base_version` (a delta)."""
    taken_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    delta = delta_key is not None
    if delta and (base_version is None or fingerprint is None):
        raise ValueError("a delta snapshot needs the version it builds on and a fingerprint")
    info = {
        "fingerprint": json.loads(fingerprint.to_json()) if fingerprint else None,
        "taken_at": taken_at,
        "method": method,
        "base_version": base_version,
        "delta_rows": delta_rows,
        "run_id": run_id,
        "key": list(delta_key) if delta_key else None,
    }
    if fingerprint is not None:
        info["rows"] = fingerprint.rows
    parts = (*table.partition_parts(key), file_name(version, delta=delta))
    try:
        written = write_parquet(
            lake,
            parts,
            frame,
            immutable=True,
            metadata={FOOTER_KEY: json.dumps(info)},
            # the source counted these rows: the published file must hold exactly them
            expected_rows=delta_rows if delta else (fingerprint.rows if fingerprint else None),
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
        fingerprint.rows if fingerprint else written.rows,
        written.size_bytes,
        fingerprint,
        taken_at,
        method,
        base_version,
        delta_rows,
        run_id,
        delta_key,
    )
