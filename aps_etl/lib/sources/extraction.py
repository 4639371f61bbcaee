"""Snapshots of one (source table, partition): taken, checked, refreshed when the source
changed, and shared by the extract assets, the sensor, `aps-etl reconcile` and the assets
that must make sure a snapshot exists (the plan in force, a previous plan run).

How a partition is snapshotted (`snapshot_partition`):

1. No snapshot yet: a full extract, its source fingerprint taken in the same transaction.
2. A snapshot exists and the policy is `refresh`: the source's fingerprint now is compared
   with the snapshot's. Equal: the snapshot is current and reused. Different: a new
   version is taken, incrementally where the spec allows: the rows changed since the
   previous snapshot's watermark, kept as a delta on it (replacing rows by primary key)
   only when the result's fingerprint equals the source's; else a full re-extract
   (deletes, rows moved to another day, updated_at going backwards or set in the future
   all end there).
   A plan run (`key` mode) never gets a second version: it is immutable by contract, and a
   change is an error (PlanRunChanged) for the run's failure alert.
3. Policy `reuse` (reprocess from Parquet): the newest snapshot, no source query at all.

Every new snapshot is checked before it is published: its rows against the source's count
and fingerprint, the spec's declared rules (rules.py), and the completeness guard (0 rows,
or fewer than `min_fraction` of the median of the table's earlier days). A failed check
publishes nothing: the previous snapshot, if any, stays the newest.
"""

from __future__ import annotations

import datetime as dt
import statistics
from dataclasses import dataclass, field
from typing import Any, Literal

import polars as pl

from aps_etl.lib.business_days import business_day_window, parse_partition_key
from aps_etl.lib.lake import snapshots
from aps_etl.lib.lake.layout import LakeTable
from aps_etl.lib.lake.snapshots import Snapshot, SnapshotConflict
from aps_etl.lib.lake.storage import LakeResource
from aps_etl.lib.sources import fingerprint, rules
from aps_etl.lib.sources.database import ConsistentReads, SourceDatabase, SourceError
from aps_etl.lib.sources.fingerprint import Fingerprint, from_row
from aps_etl.lib.sources.specs import ExtractSpec

# refresh: follow the source (a new version when it changed); reuse: reprocess from the
# lake, no source query; full: a new version read whole, changed or not (an operator's
# choice: e.g. a correction the source made without moving updated_at).
Policy = Literal["refresh", "reuse", "full"]
POLICIES: tuple[Policy, ...] = ("refresh", "reuse", "full")
# Earlier business days whose snapshots give the completeness guard its median.
GUARD_HISTORY_DAYS = 7


class SnapshotRefused(RuntimeError):
    """A new snapshot that must not become the partition's data; retrying will not help."""

    def __init__(self, message: str, metadata: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.metadata = metadata or {}


class IncompleteExtract(SnapshotRefused):
    """0 rows, or far fewer than the table's earlier days: a lagging feed, not the day."""


class SourceRulesViolated(SnapshotRefused):
    """The source rows break the spec's declared rules (nulls, NaN, ranges)."""


class ReconciliationError(SnapshotRefused):
    """The extracted rows differ from what the source counted in the same transaction."""


class PlanRunChanged(SnapshotRefused):
    """A COMPLETED plan run's rows changed after its snapshot (immutable by contract)."""


@dataclass
class SnapshotResult:
    snapshot: Snapshot
    # reused: not checked (policy reuse); current: checked, source unchanged; new: taken now
    action: Literal["reused", "current", "new"]
    messages: list[tuple[str, str]] = field(default_factory=list)  # (level, text)

    def note(self, level: str, text: str) -> None:
        self.messages.append((level, text))


def _where(spec: ExtractSpec, table: LakeTable, key: str) -> dict[str, Any]:
    """select_sql's arguments for a partition: the business day's window, or the key."""
    if table.partition_name == "date":
        start, end = business_day_window(parse_partition_key(key))
        return {"start": start, "end": end}
    if spec.mode == "key":
        return {"key": key}
    return {}


def source_fingerprint(
    read: ConsistentReads, spec: ExtractSpec, where: dict[str, Any]
) -> Fingerprint:
    table = read.arrow(read.engine.fingerprint_sql(spec, read.select_sql(spec, **where)))
    return from_row(spec, tuple(table.to_pylist()[0].values()), read.engine)


def checked_by_refresh(spec: ExtractSpec, table: LakeTable) -> bool:
    """Daily partitions follow the source; of a plan run's partition only its own rows
    (`key` mode) are compared, to catch a change of an immutable plan. The full plan_run
    table kept with a plan run grows with every later run and is not compared."""
    return table.partition_name == "date" or spec.mode == "key"


def snapshot_partition(
    source: SourceDatabase,
    lake: LakeResource,
    spec: ExtractSpec,
    table: LakeTable,
    key: str,
    *,
    policy: Policy = "refresh",
    run_id: str | None = None,
    accept_incomplete: bool = False,
) -> SnapshotResult:
    """The partition's newest snapshot after bringing it up to date (see the module)."""
    current = snapshots.newest(lake, table, key)
    if current is not None and (policy == "reuse" or not checked_by_refresh(spec, table)):
        return SnapshotResult(current, "reused")
    where = _where(spec, table, key)
    messages: list[tuple[str, str]] = []
    method, base_version, delta_rows = "full", None, None
    with source.consistent_reads(spec) as read:
        now = source_fingerprint(read, spec, where)
        forced = policy == "full" and spec.mode != "key"  # a plan run is never re-taken
        if current is not None:
            if current.fingerprint == now and not forced:
                return SnapshotResult(current, "current")
            if spec.mode == "key":
                if current.fingerprint is None:  # taken before fingerprints: cannot compare
                    return SnapshotResult(current, "reused")
                raise PlanRunChanged(
                    f"{spec.name} of plan run {key} changed in the source after its snapshot "
                    f"(version {current.version}, {current.fingerprint.describe()}; the "
                    f"source now has {now.describe()}). A COMPLETED plan run is immutable "
                    "by contract: the snapshot is kept as it is; ask the APS team why the "
                    "run changed.",
                    {"snapshot": current.lineage(), "source_fingerprint": now.to_json()},
                )
            was = current.fingerprint.describe() if current.fingerprint else "no fingerprint"
            why = "read whole on request" if forced else "source changed"
            messages.append(
                (
                    "info",
                    f"{spec.name} {key}: {why} since version {current.version} "
                    f"({was} -> {now.describe()})",
                )
            )
        frame = None
        delta_key = None
        watermark = current.fingerprint.watermark() if current and current.fingerprint else None
        if current is not None and spec.deltas and not forced and watermark is not None:
            delta = read.rows(read.select_sql(spec, **where, changed_since=watermark))
            if not snapshots.delta_allowed(lake, table, current, delta.height):
                messages.append(
                    ("info", f"{spec.name} {key}: written whole again (long chain or big change)")
                )
            elif _explains(read, lake, table, current, delta, spec, now):
                frame, method, delta_key = delta, "incremental", spec.primary_key
                base_version, delta_rows = current.version, delta.height
            else:
                messages.append(
                    (
                        "info",
                        f"{spec.name} {key}: {delta.height} changed row(s) since "
                        f"{watermark.isoformat()} do not explain the change (rows deleted, "
                        "moved to another partition, or updated_at not moving forward): "
                        "full re-extract",
                    )
                )
        if frame is None:
            frame = read.rows(read.select_sql(spec, **where))
            _reconcile(spec, key, frame, now)
    # A delta was proven above: the previous version plus it has the source's fingerprint.
    _check_rules(spec, key, frame)
    if delta_key is None:  # a delta only adds or replaces rows: the version can only grow
        _guard(lake, spec, table, key, now.rows, messages, accept=accept_incomplete)
    version = current.version + 1 if current else 1
    try:
        snapshot = snapshots.write(
            lake, table, key, frame, version=version, fingerprint=now, method=method,
            base_version=base_version, delta_rows=delta_rows, run_id=run_id,
            delta_key=delta_key,
        )  # fmt: skip
    except SnapshotConflict:
        # Another run took this version meanwhile: fine if it holds what we saw.
        winner = snapshots.newest(lake, table, key)
        if winner is not None and winner.fingerprint == now:
            return SnapshotResult(winner, "current", messages)
        raise SourceError(
            f"{spec.name} {key}: another run published snapshot version {version} of a "
            "different source state meanwhile; retrying compares again",
            transient=True,
        ) from None
    how = (
        f"a delta of {delta_rows} changed row(s) on version {base_version}"
        if method == "incremental"
        else "full extract"
    )
    messages.append(
        ("info", f"{spec.name} {key}: snapshot version {version}, {now.rows} rows ({how})")
    )
    return SnapshotResult(snapshot, "new", messages)


def _explains(
    read: ConsistentReads,
    lake: LakeResource,
    table: LakeTable,
    previous: Snapshot,
    delta: pl.DataFrame,
    spec: ExtractSpec,
    now: Fingerprint,
) -> bool:
    """Whether the previous version with the delta's rows replacing theirs by primary key
    (the delta's are newer: only rows changed after the previous watermark) is exactly
    the source now: its fingerprint, worked out from the previous one (the checksum is a
    sum of row hashes), equals the source's."""
    was = previous.fingerprint
    if was is None or was.kind != now.kind:
        return False
    keys, wm = list(spec.primary_key), spec.watermark_column
    assert wm is not None  # called only when spec.deltas: composable, so it has updated_at
    replaced = (
        snapshots.scan(lake, table, previous)
        .select(*keys, wm)
        .join(delta.lazy().select(keys), on=keys, how="semi")
        .collect()
    )

    def hashes(rows: pl.DataFrame) -> int:
        if rows.is_empty():
            return 0
        return int(read.arrow(read.engine.rows_hash_sql(spec, rows)).column(0)[0].as_py())

    newest = max(filter(None, (was.max_updated_at, fingerprint.iso(delta[wm].max()))))  # type: ignore[arg-type]
    composed = Fingerprint(
        rows=was.rows - replaced.height + delta.height,
        max_updated_at=newest,
        checksum=str(int(was.checksum) - hashes(replaced) + hashes(delta)),
        kind=now.kind,
    )
    return composed == now


def _reconcile(spec: ExtractSpec, key: str, frame: pl.DataFrame, now: Fingerprint) -> None:
    """The rows about to be published are the rows the source counted (same transaction)."""
    wm = spec.watermark_column
    newest = fingerprint.iso(frame[wm].max()) if wm and frame.height else None  # type: ignore[arg-type]
    if frame.height != now.rows or (wm and newest != now.max_updated_at):
        raise ReconciliationError(
            f"extract {spec.name} {key}: {frame.height:,} rows extracted (newest change "
            f"{newest}) but the source counted {now.rows:,} (newest {now.max_updated_at}) "
            "in the same transaction; nothing was published"
        )


def _check_rules(spec: ExtractSpec, key: str, frame: pl.DataFrame) -> None:
    found = rules.violations(spec, frame)
    if found:
        raise SourceRulesViolated(
            f"source rows of {spec.name} for {key} break its declared rules, nothing was "
            f"published or transformed: {rules.describe(found)}",
            {
                "violation_counts": {v.rule: v.count for v in found},
                "sample_rows": {v.rule: v.samples for v in found},
            },
        )


def _earlier_rows(lake: LakeResource, table: LakeTable, key: str) -> list[int]:
    day = parse_partition_key(key)
    counts = []
    for back in range(1, GUARD_HISTORY_DAYS + 1):
        earlier = snapshots.newest(lake, table, (day - dt.timedelta(days=back)).isoformat())
        if earlier is not None:
            counts.append(earlier.rows)
    return counts


def _guard(
    lake: LakeResource,
    spec: ExtractSpec,
    table: LakeTable,
    key: str,
    rows: int,
    messages: list[tuple[str, str]],
    *,
    accept: bool = False,
) -> None:
    """0 rows, or fewer than min_fraction of the earlier days' median: `fail` refuses the
    snapshot, `warn` (or `accept`: the operator said so for this run) takes it with a
    warning."""
    problem = None
    median = None
    if rows == 0:
        problem = f"extract {spec.name} for {key} has 0 rows"
    elif table.partition_name == "date" and spec.mode != "full" and spec.min_fraction > 0:
        earlier = _earlier_rows(lake, table, key)
        if earlier:
            median = statistics.median(earlier)
            if rows < spec.min_fraction * median:
                problem = (
                    f"extract {spec.name} for {key} has {rows:,} rows, fewer than "
                    f"{spec.min_fraction:.0%} of the median {median:,.0f} of its "
                    f"{len(earlier)} earlier day(s)"
                )
    if problem is None:
        return
    if spec.guard == "warn" or accept:
        why = "accepted for this run" if accept else "guard policy: warn"
        messages.append(("warning", f"{problem}; taken anyway ({why})"))
        return
    raise IncompleteExtract(
        f"{problem}: looks incomplete (a lagging feed or replica?), so it does not become "
        "the day's data (guard policy: fail). Nothing was published; the previous snapshot, "
        "if any, stays in force. When the rows arrive, the source-change sensor (or "
        "`aps-etl reconcile`) snapshots and loads them; if the day really is empty, rerun "
        f"it with run config accept_incomplete: [{spec.name}] on the extract step.",
        {"rows": rows, "median_of_earlier_days": median, "min_fraction": spec.min_fraction},
    )


def ensure_extract(
    source: SourceDatabase, lake: LakeResource, spec: ExtractSpec, table: LakeTable, key: str
) -> Snapshot:
    """The partition's newest snapshot, taking the first one if there is none (a plan
    run's snapshot is immutable: an existing one is used as it is)."""
    existing = snapshots.newest(lake, table, key)
    if existing is not None:
        return existing
    from aps_etl.lib.sources.drift import check_drift  # drift imports database: keep it lazy

    check_drift(source, spec, spec.drift_policy, schema=None)
    return snapshot_partition(source, lake, spec, table, key).snapshot
