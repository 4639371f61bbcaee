"""One run per partition (a business day, a plan run) at a time, whatever started it.

The run queue keeps two launched runs of one day apart (dagster.yaml's tag limits), but
`aps-etl run`, `reconcile` and a single-run backfill execute in their own process, and a
range run carries range tags, not `dagster/partition`: none of them passes the queue. So
every run takes, before its first step, a PostgreSQL session advisory lock per
partition it covers, on the target database every environment has, and holds it to
its end; the session's `application_name` names the run, so a run refused the lock says
which run holds it and since when. A run whose process dies loses its session, and with it
its locks: nothing is left to clean up.

Taken by the lake IO manager's factory (every step of both jobs writes through it), which
Dagster sets up once per run for the in-process executor both jobs use. The same set-up
refuses a run of more days than APS_SINGLE_RUN_MAX_DAYS. A target that cannot be reached
at the run's start (a transient failure) leaves the run without the lock, with a warning,
rather than failing it: its steps' retries ride the outage out, as they did before.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

import dagster as dg

from aps_etl.lib.postgres import DatabaseError, PostgresConnection

RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"
PARTITION = "dagster/partition"
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
APPLICATION = "aps-etl run "  # + the run id: what pg_stat_activity shows of the holder

LOCK_SQL = "select pg_try_advisory_lock(hashtextextended($1, 0))"
# pg_locks shows a bigint advisory key as classid (high 32 bits) and objid (low 32 bits)
HOLDER_SQL = (
    "select a.application_name, a.backend_start from pg_locks l "
    "join pg_stat_activity a on a.pid = l.pid "
    "where l.locktype = 'advisory' and l.granted and l.objsubid = 1 "
    "and ((l.classid::bigint << 32) | l.objid::bigint) = hashtextextended($1, 0)"
)


class RunLockHeld(RuntimeError):
    """Another run holds a partition this run covers."""


class RunTooLong(RuntimeError):
    """A run covers more days than APS_SINGLE_RUN_MAX_DAYS."""


def lock_name(job: str, partition: str) -> str:
    """Per partition, not per job name: a UI "Materialize" of some of a day's assets runs
    as Dagster's own asset job, and must not run beside that day's aps_daily either."""
    kind = "day" if _DAY.fullmatch(partition) else "plan_run"
    return f"aps_etl/run/{kind}/{partition}"


def run_partitions(run: Any, daily: dg.PartitionsDefinition | None = None) -> list[str]:
    """The partition keys a run covers: its `dagster/partition`, or every key of its range
    (a single-run backfill) in the daily partitions."""
    tags = run.tags or {}
    if tags.get(PARTITION):
        return [tags[PARTITION]]
    start, end = tags.get(RANGE_START), tags.get(RANGE_END)
    if not (start and end):
        return []
    if daily is None:
        from aps_etl.lib.partitions import DAILY

        daily = DAILY
    try:
        return list(daily.get_partition_keys_in_range(dg.PartitionKeyRange(start, end)))
    except Exception:
        return sorted({start, end})  # keys outside the definition: at least the ends


class RunLock(dg.ConfigurableResource):
    """Holds the run's partition locks from set-up to tear-down (see the module)."""

    target: PostgresConnection

    _connection: Any = None

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        run = context.run
        if run is None:
            return
        keys = run_partitions(run)
        if not keys:
            return
        _check_size(keys)
        try:
            self._connection = self.take(run.job_name, keys, run.run_id)
        except DatabaseError as exc:
            if not exc.transient:
                raise
            # The target is down at the run's start: the run goes on without the lock, as
            # before it, so its steps' retries can ride the outage out (a load cannot run
            # without the target anyway; its swaps serialize on their own locks).
            if context.log:
                context.log.warning(f"run lock not taken, the run goes on without it: {exc}")

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._connection is not None:
            with suppress(Exception):  # closing the session releases every lock
                self._connection.close()
            self._connection = None

    def take(self, job: str, keys: list[str], run_id: str) -> Any:
        """A session holding the lock of every key, or RunLockHeld naming the holder."""
        connection = self.target.open(application_name=APPLICATION + run_id, autocommit=True)
        try:
            with connection.cursor() as cursor:
                for key in sorted(keys):
                    name = lock_name(job, key)
                    cursor.execute(LOCK_SQL, parameters=(name,))
                    (taken,) = cursor.fetchone()
                    if not taken:
                        raise RunLockHeld(_held_message(cursor, job, key, name))
            return connection
        except BaseException:
            with suppress(Exception):
                connection.close()
            raise


def _check_size(keys: list[str]) -> None:
    from aps_etl.lib.partitions import SINGLE_RUN_MAX_DAYS_VARIABLE, single_run_max_days

    most = single_run_max_days()
    if len(keys) > most:
        raise RunTooLong(
            f"this run covers {len(keys)} days ({keys[0]}...{keys[-1]}); a run takes at most "
            f"{most} ({SINGLE_RUN_MAX_DAYS_VARIABLE}): backfill it with "
            "APS_BACKFILL_POLICY=multi_run, or in ranges of at most that many days "
            "(`aps-etl backfill` splits it so)"
        )


def _held_message(cursor: Any, job: str, key: str, name: str) -> str:
    cursor.execute(HOLDER_SQL, parameters=(name,))
    row = cursor.fetchone()
    holder, since = (row[0] or "", row[1]) if row else ("", None)
    who = (
        f"run {holder[len(APPLICATION) :]}"
        if holder.startswith(APPLICATION)
        else "another run (it ended a moment ago, or its session is not visible)"
    )
    when = f" since {since.astimezone(dt.UTC):%Y-%m-%d %H:%M:%S} UTC" if since else ""
    return (
        f"{job} {key} is already being run by {who}{when}: one run per day at a time; "
        "wait for it to end (or cancel it in the UI), then run again"
    )


@contextmanager
def holding(target: PostgresConnection, job: str, keys: list[str], run_id: str) -> Iterator[None]:
    """The same locks for a block of code (tests, tools)."""
    connection = RunLock(target=target).take(job, keys, run_id)
    try:
        yield
    finally:
        with suppress(Exception):
            connection.close()
