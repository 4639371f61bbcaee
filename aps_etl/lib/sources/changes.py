"""Change detection: the source's fingerprints beside the lake's newest snapshots.

Shared by the source-change sensor and `aps-etl reconcile`. For every source table of a
job and every business day of a window, one status:

- current: the newest snapshot's fingerprint equals the source's now;
- changed: they differ (rows corrected, late, deleted or moved), or the day has rows in
  the source and no snapshot yet (an earlier extract was refused as incomplete);
- absent: no snapshot and no source rows: nothing to take.

A day is also out of date when one of its newest snapshots is current but no load of the
day was built on it (`stale_tables`, from the target's load log): the run that took it
failed afterwards, say because another table of the day was refused.

Only days that were run before (at least one snapshot of the job in the lake) are looked
at: running a day for the first time is the schedule's or a backfill's work.

The fingerprints are computed in the source with the extract's own queries, so they
agree with the ones stored at extraction: per table one statement for the whole window
(`incremental` specs: one scan grouped by business day; `query` specs: the day's query
per day; `full` specs: once, the same for every day), in one consistent transaction.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal

from aps_etl.lib.business_days import PLANT_UTC_OFFSET, business_day_window, parse_partition_key
from aps_etl.lib.lake import snapshots
from aps_etl.lib.lake.layout import LakeTable
from aps_etl.lib.lake.snapshots import Snapshot
from aps_etl.lib.lake.storage import LakeResource
from aps_etl.lib.postgres import PostgresConnection
from aps_etl.lib.sources.database import SourceDatabase, SourceError
from aps_etl.lib.sources.fingerprint import Fingerprint, from_row
from aps_etl.lib.sources.specs import ExtractSpec

Status = Literal["current", "changed", "absent"]
# Parallel lake reads (listings, footers): each is a round trip to S3.
_LAKE_THREADS = 8
# Source tables fingerprinted at once: a small server answers a few queries side by side.
_SOURCE_THREADS = 3


@dataclass(frozen=True)
class PartitionState:
    table: str
    partition: str
    source: Fingerprint
    snapshot: Snapshot | None

    @property
    def status(self) -> Status:
        if self.snapshot is None:
            return "changed" if self.source.rows else "absent"
        return "current" if self.snapshot.fingerprint == self.source else "changed"


def source_fingerprints(
    source: SourceDatabase, spec: ExtractSpec, days: Sequence[str]
) -> dict[str, Fingerprint]:
    """{day: the source's fingerprint of the spec's rows for that day}."""
    if not days:
        return {}
    windows = {day: business_day_window(parse_partition_key(day)) for day in days}
    with source.consistent_reads(spec) as read:
        engine = read.engine
        if spec.mode == "full":
            sql = engine.fingerprint_sql(spec, read.select_sql(spec))
            (row,) = read.arrow(sql).to_pylist()
            return dict.fromkeys(days, from_row(spec, tuple(row.values()), engine))
        if spec.mode == "incremental":
            # one scan for every day of the window, grouped by business day
            start = min(w[0] for w in windows.values())
            end = max(w[1] for w in windows.values())
            offset = PLANT_UTC_OFFSET.utcoffset(None)
            assert offset is not None  # a fixed offset
            bucket = engine.day_bucket(spec, offset)
            sql = engine.fingerprint_sql(spec, read.select_sql(spec, start, end), bucket=bucket)
            found = {_day(r[0]): r[1:] for r in _tuples(read.arrow(sql))}
            empty = from_row(spec, (0, None, "0"))
            return {
                day: from_row(spec, found[day], engine) if day in found else empty for day in days
            }
        parts = [
            f"select {engine.dialect.string(day)} as bucket, d{i}.* from "
            f"({engine.fingerprint_sql(spec, read.select_sql(spec, *w))}) d{i}"
            for i, (day, w) in enumerate(windows.items())
        ]
        rows = _tuples(read.arrow(" union all ".join(parts)))
        return {_day(r[0]): from_row(spec, r[1:], engine) for r in rows}


def _tuples(table: Any) -> list[tuple]:
    """A result's rows as tuples, by position (engines spell and case aliases their way)."""
    return [tuple(row.values()) for row in table.to_pylist()]


def _day(bucket: object) -> str:
    """A business-day bucket as its partition key, whatever type the engine returns."""
    if isinstance(bucket, dt.datetime):
        return bucket.date().isoformat()
    if isinstance(bucket, dt.date):
        return bucket.isoformat()
    return str(bucket)


def key_fingerprints(
    source: SourceDatabase, spec: ExtractSpec, keys: Sequence[str]
) -> dict[str, Fingerprint]:
    """{key: the source's fingerprint of a `key` spec's rows for that key (a plan run)}."""
    if not keys:
        return {}
    with source.consistent_reads(spec) as read:
        engine = read.engine
        parts = []
        for i, key in enumerate(keys):
            inner = engine.fingerprint_sql(spec, read.select_sql(spec, key=key))
            literal = engine.dialect.string(key)
            parts.append(f"select {literal} as bucket, k{i}.* from ({inner}) k{i}")
        rows = _tuples(read.arrow(" union all ".join(parts)))
        return {str(r[0]): from_row(spec, r[1:], engine) for r in rows}


def _newest_all(
    lake: LakeResource, tables: dict[str, LakeTable], keys: Sequence[str]
) -> dict[tuple[str, str], Snapshot | None]:
    pairs = [(name, key) for name in tables for key in keys]
    with ThreadPoolExecutor(max_workers=_LAKE_THREADS) as pool:
        found = pool.map(lambda p: snapshots.newest(lake, tables[p[0]], p[1]), pairs)
        return dict(zip(pairs, found, strict=True))


def daily_states(
    source: SourceDatabase,
    lake: LakeResource,
    specs: Sequence[ExtractSpec],
    tables: dict[str, LakeTable],
    days: Sequence[str],
) -> list[PartitionState]:
    """The state of every (spec, day) of the days that were run before."""
    newest = _newest_all(lake, tables, days)
    ran = [day for day in days if any(newest[(s.name, day)] for s in specs)]
    now = fingerprints_of(source, specs, ran)
    return [
        PartitionState(spec.name, day, now[spec.name][day], newest[(spec.name, day)])
        for spec in specs
        for day in ran
    ]


def fingerprints_of(
    source: SourceDatabase,
    specs: Sequence[ExtractSpec],
    days: Sequence[str],
    timings: dict[str, float] | None = None,
) -> dict[str, dict[str, Fingerprint]]:
    """{table: {day: fingerprint}}, the tables side by side (each its own connection and
    transaction): the source answers one while it scans another. `timings` gets each
    table's seconds."""

    def one(spec: ExtractSpec) -> dict[str, Fingerprint]:
        started = time.perf_counter()
        try:
            return source_fingerprints(source, spec, days)
        except SourceError as exc:
            raise exc.within(f"source-change check of {spec.name} for {', '.join(days)}") from None
        finally:
            if timings is not None:
                timings[spec.name] = time.perf_counter() - started

    if not days:
        return {spec.name: {} for spec in specs}
    with ThreadPoolExecutor(max_workers=_SOURCE_THREADS) as pool:
        found = dict(zip([s.name for s in specs], pool.map(one, specs), strict=True))
    return found


def plan_states(
    source: SourceDatabase,
    lake: LakeResource,
    specs: Sequence[ExtractSpec],
    tables: dict[str, LakeTable],
    run_ids: Sequence[str],
) -> list[PartitionState]:
    """The state of every snapshotted plan run's own rows (key-mode specs)."""
    newest = _newest_all(lake, tables, run_ids)
    states = []
    for spec in specs:
        taken = [r for r in run_ids if newest[(spec.name, r)] is not None]
        try:
            now = key_fingerprints(source, spec, taken)
        except SourceError as exc:
            what = f"immutability check of {spec.name} for plan runs {', '.join(taken)}"
            raise exc.within(what) from None
        states += [PartitionState(spec.name, r, now[r], newest[(spec.name, r)]) for r in taken]
    return states


def change_digest(states: Sequence[PartitionState]) -> str:
    """A short digest of the source state of changed partitions: a run key that repeats
    only while the source stays as it is (one run per distinct change)."""
    text = "|".join(
        f"{s.table}:{s.partition}:{s.source.to_json()}:{s.snapshot.version if s.snapshot else 0}"
        for s in sorted(states, key=lambda s: (s.partition, s.table))
    )
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def loaded_versions(target: PostgresConnection, days: Sequence[str]) -> dict[str, dict[str, int]]:
    """{day: {extract label: snapshot version}} that the day's loaded tables were built
    on, from the target's load log (the newest load of each table)."""
    if not days:
        return {}
    from aps_etl.lib.warehouse.target import LOAD_LOG, TARGET_SCHEMA, ident

    sql = (
        f"select distinct on (table_name, partition_key) partition_key, snapshots::text "
        f"from {ident(TARGET_SCHEMA, LOAD_LOG)} where partition_key = any($1) "
        "order by table_name, partition_key, load_id desc"
    )
    with target.connect() as connection, connection.cursor() as cursor:  # type: ignore[attr-defined]
        cursor.execute(
            "select to_regclass($1) is not null", parameters=(f"{TARGET_SCHEMA}.{LOAD_LOG}",)
        )
        (exists,) = cursor.fetchone()
        if not exists:
            return {day: {} for day in days}
        cursor.execute(sql, parameters=(list(days),))
        rows = cursor.fetchall()
    found: dict[str, dict[str, int]] = {day: {} for day in days}
    for day, text in rows:
        for label, info in json.loads(text).items():
            version = int(info.get("version") or 0)
            found[day][label] = max(found[day].get(label, 0), version)
    return found


def stale_tables(
    states: Sequence[PartitionState], job: str, loaded: dict[str, dict[str, int]]
) -> dict[str, list[PartitionState]]:
    """{day: states of tables whose newest snapshot no load of the day was built on}: a
    snapshot taken by a run that failed later (another table refused), for instance."""
    stale: dict[str, list[PartitionState]] = {}
    for state in states:
        if state.snapshot is None or state.status != "current":
            continue
        used = loaded.get(state.partition, {}).get(f"{job}/{state.table}", 0)
        if state.snapshot.version > used:
            stale.setdefault(state.partition, []).append(state)
    return stale


def recent_plan_runs(source: SourceDatabase, first_day: str) -> list[str]:
    """COMPLETED plan runs whose plan starts on or after `first_day`, oldest first."""
    from aps_etl.lib.sources.mes import PLAN_RUN

    sql = (
        "select run_id from plan_run where status = 'COMPLETED' "
        f"and base_date >= date '{parse_partition_key(first_day).isoformat()}' "
        "order by created_at, run_id"
    )
    with source.consistent_reads(PLAN_RUN) as read:
        return read.arrow(sql).column("run_id").to_pylist()


def days_to_run(
    states: Sequence[PartitionState], target: PostgresConnection, job: str
) -> dict[str, list[PartitionState]]:
    """{day: the tables that make it worth a run}: the source changed under their newest
    snapshot, or no load of the day was built on it yet."""
    found: dict[str, list[PartitionState]] = {}
    for state in states:
        if state.status == "changed":
            found.setdefault(state.partition, []).append(state)
    ran = sorted({s.partition for s in states})
    for day, stale in stale_tables(states, job, loaded_versions(target, ran)).items():
        found.setdefault(day, []).extend(stale)
    return found
