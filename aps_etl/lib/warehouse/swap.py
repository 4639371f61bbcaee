"""The day-atomic swap: every staged table of one partition becomes visible together.

Stages are filled and checked side by side (loaders.py, stages.prepare_stage); this module
then makes all of them the partition's rows in ONE short PostgreSQL transaction, so a
reader sees the previous version of the whole day or the new one, never a mix, and a run
killed at any moment leaves the previous version (PostgreSQL rolls the transaction back
when the connection dies).

Readers first. Replacing a loaded partition detaches it, which takes an ACCESS EXCLUSIVE
lock on the table: a waiting swap would queue every later reader of that table behind the
one that holds it. So the swap
- first waits, without queuing, while another session has held a lock on a table it must
  lock exclusively for longer than a short query would (a poll of pg_locks with backoff);
- then takes its locks under a short `lock_timeout` (200 ms): a reader that slips in
  between delays the swap, and the readers queued behind the swap wait at most that long;
- on a lock timeout rolls back and tries again; past half of `budget_s` it waits up to the
  configured `lock_timeout_ms` (default 2 s) per try, so a table that is never free still
  gets its swap; when the budget runs out the load fails naming the sessions in the way
  (pid, application, user, age).
A first load of a partition only attaches (SHARE UPDATE EXCLUSIVE): readers never wait.
docs/reliability.md has the measured alternatives and why this one.

Two runs that load the same partition serialize on an advisory lock per (table,
partition); the later swap refuses to replace rows built from NEWER snapshots than its own
(the load log says what is loaded), so an overlapping older run fails clearly instead of
rolling a day back.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aps_etl.lib.warehouse import target
from aps_etl.lib.warehouse.merge import MergeCounts, is_merge, merge_rows
from aps_etl.lib.warehouse.stages import StagedTable, partition_table_name
from aps_etl.lib.warehouse.target import (
    LOAD_LOG,
    PARTITION_SCHEMA,
    STAGE_SCHEMA,
    TARGET_SCHEMA,
    PermanentLoadError,
    ident,
)

log = logging.getLogger(__name__)

LOCK_NOT_AVAILABLE = "55P03"


@dataclass(frozen=True)
class SwapPolicy:
    """How long a swap may wait for readers."""

    lock_timeout_ms: int = 2_000
    budget_s: float = 120.0
    # A holder younger than this is a short query: queue behind it (it will be gone in
    # moments) rather than wait for a gap that a busy table may never show.
    long_holder_s: float = 0.5
    # While there is time, each try waits at most this long for a lock (a reader that just
    # began looks short); past half the budget, lock_timeout_ms: the swap forces its way.
    probe_lock_timeout_ms: int = 200
    first_backoff_s: float = 0.2
    max_backoff_s: float = 5.0


@dataclass(frozen=True)
class Blocker:
    pid: int
    application: str
    user: str
    age_s: float
    relation: str
    mode: str

    def describe(self) -> str:
        app = self.application or "no application_name"
        return (
            f"pid {self.pid} ({app}, user {self.user}) holding {self.mode} on "
            f"{self.relation} for {self.age_s:.0f} s"
        )


class SwapBlocked(RuntimeError):
    """Readers held the tables for the whole retry budget: nothing was swapped (transient:
    a later retry of the step may find them gone)."""

    def __init__(self, message: str, blockers: Sequence[Blocker]) -> None:
        super().__init__(message)
        self.blockers = list(blockers)


class StaleLoad(PermanentLoadError):
    """The partition already holds rows built from newer snapshots than this run's."""


@dataclass
class SwapOutcome:
    rows: dict[str, int] = field(default_factory=dict)
    attempts: int = 0
    waited_s: float = 0.0
    merges: dict[str, MergeCounts] = field(default_factory=dict)  # the merge tables'


def _sqlstate(exc: BaseException) -> str | None:
    return getattr(exc, "sqlstate", None)


def swap_partition_tables(
    connection: Any,
    staged: Sequence[StagedTable],
    policy: SwapPolicy = SwapPolicy(),
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> SwapOutcome:
    """Swaps every stage of `staged` (one partition, any number of tables) in at once."""
    if not staged:
        return SwapOutcome()
    keys = {s.partition_key for s in staged}
    if len(keys) != 1:
        raise ValueError(f"one partition per swap, got {sorted(keys)}")
    ordered = sorted(staged, key=lambda s: s.table.name)  # one lock order: no deadlocks
    outcome = SwapOutcome()
    started = time.monotonic()
    backoff = policy.first_backoff_s
    blockers: list[Blocker] = []
    while True:
        outcome.attempts += 1
        spent = time.monotonic() - started
        # Wait without queuing while someone holds what we must lock exclusively; past
        # half the budget, queue anyway (under lock_timeout) so a steady stream of short
        # readers cannot starve the load.
        blockers = _holders(connection, ordered)
        long_holders = [b for b in blockers if b.age_s >= policy.long_holder_s]
        forcing = spent > policy.budget_s / 2
        if not long_holders or forcing:
            timeout_ms = (
                policy.lock_timeout_ms
                if forcing
                else min(policy.probe_lock_timeout_ms, policy.lock_timeout_ms)
            )
            try:
                outcome.rows = _swap_once(connection, ordered, timeout_ms, outcome.merges)
                outcome.waited_s = time.monotonic() - started
                return outcome
            except Exception as exc:
                connection.rollback()
                if _sqlstate(exc) != LOCK_NOT_AVAILABLE and "lock timeout" not in str(exc):
                    raise
                blockers = _holders(connection, ordered) or blockers
        if time.monotonic() - started + backoff > policy.budget_s:
            break
        log.info(
            "swap of %s waits %.1f s for %s",
            ordered[0].partition_key,
            backoff,
            "; ".join(b.describe() for b in blockers) or "a lock",
        )
        sleep(backoff)
        backoff = min(backoff * 2, policy.max_backoff_s)
    names = ", ".join(s.table.name for s in ordered)
    raise SwapBlocked(
        f"could not swap partition {ordered[0].partition_key} of {names} within "
        f"{policy.budget_s:.0f} s: other sessions hold the tables"
        + ("".join(f"\n  {b.describe()}" for b in blockers) or " (they left before we looked)")
        + "\nnothing was swapped; the previous version of the day is intact",
        blockers,
    )


def _old_partition(staged: StagedTable) -> str:
    return partition_table_name(staged.table, staged.partition_key)


def _holders(connection: Any, staged: Sequence[StagedTable]) -> list[Blocker]:
    """Other sessions holding a lock that a swap would have to wait for: any lock on a
    table whose loaded partition will be detached (ACCESS EXCLUSIVE), a lock stronger
    than a reader's on a table only attached to."""
    exclusive = [
        f"{TARGET_SCHEMA}.{s.table.name}"
        for s in staged
        if s.partitioned and _exists(connection, f"{PARTITION_SCHEMA}.{_old_partition(s)}")
    ]
    exclusive += [f"{PARTITION_SCHEMA}.{_old_partition(s)}" for s in staged if s.partitioned]
    shared = [f"{TARGET_SCHEMA}.{s.table.name}" for s in staged]
    with connection.cursor() as cursor:
        cursor.execute(
            "select l.pid, coalesce(a.application_name, ''), coalesce(a.usename, ''), "
            "  extract(epoch from now() - coalesce(a.xact_start, a.backend_start))::float8, "
            "  n.nspname || '.' || c.relname, l.mode "
            "from pg_locks l join pg_class c on c.oid = l.relation "
            "join pg_namespace n on n.oid = c.relnamespace "
            "left join pg_stat_activity a on a.pid = l.pid "
            "where l.granted and l.pid <> pg_backend_pid() and l.locktype = 'relation' "
            "and l.database = (select oid from pg_database where datname = current_database()) "
            "and ((n.nspname || '.' || c.relname) = any($1::text[]) "
            "  or ((n.nspname || '.' || c.relname) = any($2::text[]) "
            "      and l.mode not in ('AccessShareLock', 'RowShareLock', 'RowExclusiveLock'))) "
            "order by 4 desc",
            parameters=(exclusive, shared),
        )
        found = cursor.fetchall()
    connection.commit()
    seen: dict[int, Blocker] = {}
    for pid, app, user, age, relation, mode in found:
        seen.setdefault(int(pid), Blocker(int(pid), app, user, float(age or 0), relation, mode))
    return list(seen.values())


def _exists(connection: Any, qualified: str) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("select to_regclass($1) is not null", parameters=(qualified,))
        (exists,) = cursor.fetchone()
    return bool(exists)


def _swap_once(
    connection: Any,
    staged: Sequence[StagedTable],
    timeout_ms: int,
    merges: dict[str, MergeCounts],
) -> dict[str, int]:
    from aps_etl.lib.failpoints import failpoint

    rows: dict[str, int] = {}
    merges.clear()  # an earlier try's counts were rolled back with it
    with connection.cursor() as cursor:
        cursor.execute(f"set local lock_timeout = '{int(timeout_ms)}ms'")
        for s in staged:  # serializes two runs' swaps of the same partition
            cursor.execute(
                "select pg_advisory_xact_lock(hashtextextended($1, 0))",
                parameters=(f"aps_etl.swap:{s.table.name}:{s.partition_key}",),
            )
            cursor.fetchall()
        for s in staged:
            _refuse_stale(cursor, s)
        for index, s in enumerate(staged):
            changed = None
            if is_merge(s.table):
                partition_rows = s.log.rows if s.log is not None else s.rows
                counts = merge_rows(
                    cursor,
                    s.table,
                    s.stage,
                    s.partition_key,
                    s.partition_value,
                    partition_rows,
                    s.shipped,
                    s.rows,
                    s.log.snapshots if s.log is not None else None,
                )
                merges[s.table.name], rows[s.table.name] = counts, counts.rows
                changed = (counts.inserted, counts.updated, counts.deleted)
                for used in (s.stage, s.shipped.gone if s.shipped else None):
                    if used:
                        cursor.execute(f"drop table {ident(STAGE_SCHEMA, used)}")
            elif s.partitioned:
                rows[s.table.name] = _attach(cursor, s)
            else:
                rows[s.table.name] = _replace_rows(cursor, s)
            if s.log is not None:
                target.log_load(cursor, s.table, s.partition_key, s.log, changed)
            if index == len(staged) - 1:
                # a kill here: every table swapped or merged, nothing committed
                failpoint("load.swap")
    connection.commit()
    return rows


def _attach(cursor: Any, s: StagedTable) -> int:
    parent = ident(TARGET_SCHEMA, s.table.name)
    name = _old_partition(s)
    old, moved = ident(PARTITION_SCHEMA, name), ident(PARTITION_SCHEMA, s.stage)
    cursor.execute("select to_regclass($1) is not null", parameters=(f"{PARTITION_SCHEMA}.{name}",))
    (exists,) = cursor.fetchone()
    if exists:
        cursor.execute(f"alter table {parent} detach partition {old}")
        cursor.execute(f"drop table {old}")
    cursor.execute(
        f"alter table {ident(STAGE_SCHEMA, s.stage)} set schema {ident(PARTITION_SCHEMA)}"
    )
    cursor.execute(f"alter table {moved} rename to {ident(name)}")
    cursor.execute(
        f"alter table {parent} attach partition {old} "
        f"for values in ({target.literal(s.partition_value)})"
    )
    return s.rows


def _replace_rows(cursor: Any, s: StagedTable) -> int:
    """A plain target made by an earlier version: the partition's rows replaced."""
    columns = ", ".join(ident(c.name) for c in s.table.columns)
    parent, partition = ident(TARGET_SCHEMA, s.table.name), ident(s.table.partition_column)
    cursor.execute(f"delete from {parent} where {partition} = $1", parameters=(s.partition_value,))
    cursor.execute(
        f"insert into {parent} ({columns}) select {columns} from {ident(STAGE_SCHEMA, s.stage)}"
    )
    cursor.execute(
        f"select count(*) from {parent} where {partition} = $1", parameters=(s.partition_value,)
    )
    (count,) = cursor.fetchone()
    return int(count)


def _refuse_stale(cursor: Any, s: StagedTable) -> None:
    if s.log is None or not s.log.snapshots:
        return
    cursor.execute(
        f"select snapshots, dagster_run_id, loaded_at from {ident(TARGET_SCHEMA, LOAD_LOG)} "
        "where table_name = $1 and partition_key = $2 order by load_id desc limit 1",
        parameters=(s.table.name, s.partition_key),
    )
    last = cursor.fetchone()
    if last is None:
        return
    loaded = json.loads(last[0]) if isinstance(last[0], str) else last[0]
    newer = [
        f"{name} v{info.get('version')} (this run read v{mine.get('version')})"
        for name, mine in s.log.snapshots.items()
        if (info := loaded.get(name))
        and _same_partition(info, mine)
        and int(info.get("version") or 0) > int(mine.get("version") or 0)
    ]
    if newer:
        raise StaleLoad(
            f"{s.table.name} {s.partition_key} already holds rows built from newer snapshots "
            f"({', '.join(newer)}), loaded by run {last[1]} at {last[2]}; nothing was swapped. "
            "An overlapping older run lost the race: the day is as the newer run left it."
        )


def _same_partition(a: dict[str, Any], b: dict[str, Any]) -> bool:
    ua, ub = a.get("uri"), b.get("uri")
    return bool(ua and ub) and os.path.dirname(str(ua)) == os.path.dirname(str(ub))
