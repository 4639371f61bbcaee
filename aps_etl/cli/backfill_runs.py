"""A date range as a Dagster asset backfill on the instance: submitted, waited for run by
run, canceled and closed. Nothing here starts a process: the daemon that runs the backfill
is the deployment's or the one in the command's own `dagster dev` (backfill_daemon.py).
`wait` follows a backfill through a `look` at it: the instance's (`look_in`) or a
webserver's GraphQL API's (backfill_graphql.py)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import dagster as dg
from dagster._core.execution.backfill import (
    BulkActionsFilter,
    BulkActionStatus,
    PartitionBackfill,
    cancel_backfill_runs_and_cancellation_complete,
)
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
    BACKFILL_ID_TAG,
    PARTITION_NAME_TAG,
)
from dagster._core.utils import make_new_backfill_id

from aps_etl.lib.tags import BACKFILL_OWNER_TAG, LAUNCHED_BY_TAG

# the backfill loop looks every 30 s: no run after this long means something is wrong
NO_RUN_HINT_S = 120
# How long canceled runs get to stop on their own (then `dagster dev` gets
# backfill_daemon.STOP_GRACE_S to stop, before SIGKILL): together under systemd's default 90 s.
CANCEL_GRACE_S = 30
FINISHED = ("SUCCESS", "FAILURE", "CANCELED")
IN_FLIGHT = [BulkActionStatus.REQUESTED, BulkActionStatus.CANCELING, BulkActionStatus.FAILING]
DONE = {
    BulkActionStatus.COMPLETED,
    BulkActionStatus.COMPLETED_SUCCESS,
    BulkActionStatus.COMPLETED_FAILED,
    BulkActionStatus.FAILED,
    BulkActionStatus.CANCELED,
}
DONE_NAMES = {status.value for status in DONE}


class BackfillError(RuntimeError):
    """A backfill that cannot be submitted or run (printed as one line by the CLI)."""


class BackfillStopped(BackfillError):
    """The wait ended before the backfill did: its dagster dev exited, or `--timeout` passed."""


def daily_partitions(first: str, last: str) -> list[str]:
    from aps_etl.lib.partitions import DAILY

    return list(DAILY.get_partition_keys_in_range(dg.PartitionKeyRange(first, last)))


def in_flight_overlap(instance: dg.DagsterInstance, days: set[str]) -> str | None:
    """A backfill still running on this instance that targets one of `days`: one run per
    partition at a time holds across backfills only if overlapping ones are not submitted
    (the queue sees runs, not backfills)."""
    for backfill in instance.get_backfills(filters=BulkActionsFilter(statuses=IN_FLIGHT)):
        data = backfill.asset_backfill_data
        if data is None:
            continue
        theirs = {
            key.partition_key
            for key in data.target_subset.iterate_asset_partitions()
            if key.partition_key
        }
        both = sorted(days & theirs)
        if both:
            return (
                f"backfill {backfill.backfill_id} ({backfill.status.value}) already targets "
                f"{both[0]}{'...' + both[-1] if len(both) > 1 else ''}: wait for it or cancel "
                "it in the UI"
            )
    return None


def submit(
    instance: dg.DagsterInstance,
    defs: dg.Definitions,
    first: str,
    last: str,
    title: str,
    owner: str | None = None,
) -> str:
    """The daily job's assets for [first, last] as one asset backfill: its id. `owner`
    (owner_id()) marks a backfill that the submitting process's own dagster dev runs."""
    from aps_etl.defs.jobs import aps_daily

    graph = defs.resolve_asset_graph()
    keys = sorted(aps_daily.selection.resolve(graph))
    days = daily_partitions(first, last)
    clash = in_flight_overlap(instance, set(days))
    if clash:
        raise BackfillError(clash)
    backfill_id = make_new_backfill_id()
    tags = {LAUNCHED_BY_TAG: "aps-etl backfill"} | ({BACKFILL_OWNER_TAG: owner} if owner else {})
    instance.add_backfill(
        PartitionBackfill.from_asset_partitions(
            backfill_id=backfill_id,
            asset_graph=graph,
            partition_names=days,
            asset_selection=keys,
            backfill_timestamp=time.time(),
            tags=tags,
            dynamic_partitions_store=instance,
            all_partitions=False,
            title=title,
            description=f"aps-etl backfill --from {first} --to {last}",
            run_config=None,
        )
    )
    return backfill_id


def _unfinished_runs(instance: dg.DagsterInstance, backfill_id: str) -> list[dg.DagsterRun]:
    from dagster._core.storage.dagster_run import NOT_FINISHED_STATUSES

    return list(
        instance.get_runs(
            filters=dg.RunsFilter(
                tags={BACKFILL_ID_TAG: backfill_id}, statuses=NOT_FINISHED_STATUSES
            )
        )
    )


def cancel_runs(instance: dg.DagsterInstance, backfill_id: str, grace_s: float) -> None:
    """Marks the backfill CANCELING (its daemon launches nothing more) and cancels its runs
    as the UI's "Cancel backfill" does: queued ones at once, running ones through their code
    server (the run worker stops between steps and records CANCELED). Waits up to grace_s
    for them to end."""
    quiet = logging.getLogger("aps_etl.cli.backfill")
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        # at every pass: the daemon's loop may write back the REQUESTED copy it read
        backfill = instance.get_backfill(backfill_id)
        if backfill is not None and backfill.status == BulkActionStatus.REQUESTED:
            instance.update_backfill(backfill.with_status(BulkActionStatus.CANCELING))
        try:
            if cancel_backfill_runs_and_cancellation_complete(instance, backfill_id, quiet):
                return
        except Exception:  # a code server already gone: its runs are stopped with it
            return
        time.sleep(1)


def close(instance: dg.DagsterInstance, backfill_id: str, why: str) -> list[str]:
    """After every process that ran the backfill is gone: its runs that did not end are
    recorded CANCELED (their workers are dead) and the backfill CANCELED, so it holds no
    day. The days of the runs so closed."""
    closed = []
    for run in _unfinished_runs(instance, backfill_id):
        instance.report_run_canceled(run, message=f"Canceled: {why}")
        closed.append(run_days(run.tags))
    backfill = instance.get_backfill(backfill_id)
    if backfill is not None and backfill.status not in DONE:
        instance.update_backfill(
            backfill.with_status(BulkActionStatus.CANCELED).with_end_timestamp(time.time())
        )
    return sorted(closed)


def cancel_if_untouched(instance: dg.DagsterInstance, backfill_id: str) -> None:
    """A backfill whose daemon never came, or whose waiter was interrupted before any run
    was made, is canceled rather than left for a daemon that starts later."""
    backfill = instance.get_backfill(backfill_id)
    if backfill is None or backfill.status != BulkActionStatus.REQUESTED:
        return
    if instance.get_run_ids(filters=dg.RunsFilter(tags={BACKFILL_ID_TAG: backfill_id}), limit=1):
        return  # its runs are under way: the UI shows and cancels them
    instance.update_backfill(backfill.with_status(BulkActionStatus.CANCELED))


@dataclass
class RunProgress:
    run_id: str
    days: str
    status: str
    seconds: float | None = None
    error: str = ""


@dataclass
class Outcome:
    backfill_id: str
    status: str
    seconds: float
    runs: list[RunProgress] = field(default_factory=list)
    error: str = ""

    @property
    def success(self) -> bool:
        # A run that died of infrastructure and was run again (run_retries) counts by its
        # last attempt: Dagster's backfill status already does, so trust a clean verdict.
        if self.status == "COMPLETED_SUCCESS":
            return bool(self.runs)
        return (
            self.status == "COMPLETED"
            and bool(self.runs)
            and all(run.status == "SUCCESS" for run in self.runs)
        )


def days_done(instance: dg.DagsterInstance, backfill_id: str) -> str:
    """The days of a backfill's runs that succeeded, as a short list."""
    runs = instance.get_runs(
        filters=dg.RunsFilter(
            tags={BACKFILL_ID_TAG: backfill_id}, statuses=[dg.DagsterRunStatus.SUCCESS]
        )
    )
    return ", ".join(sorted(run_days(run.tags) for run in runs))


def run_days(tags: Mapping[str, str]) -> str:
    if PARTITION_NAME_TAG in tags:
        return tags[PARTITION_NAME_TAG]
    start = tags.get(ASSET_PARTITION_RANGE_START_TAG, "?")
    end = tags.get(ASSET_PARTITION_RANGE_END_TAG, "?")
    return start if start == end else f"{start}...{end}"


def _step_error(instance: dg.DagsterInstance, run_id: str) -> str:
    from dagster._core.events import DagsterEventType

    for entry in instance.all_logs(run_id, of_type=DagsterEventType.STEP_FAILURE):
        event = entry.dagster_event
        data = event.step_failure_data if event else None
        if data and data.error:
            return f"{event.step_key if event else ''}: {data.error.message.strip()}"
    return ""


@dataclass
class Snapshot:
    """A backfill as `wait` sees it at one look: its status's name, its error, its runs."""

    status: str
    error: str
    runs: list[RunProgress]


def look_in(instance: dg.DagsterInstance, backfill_id: str) -> Callable[[], Snapshot]:
    """The backfill and its runs, read from the instance."""

    def look() -> Snapshot:
        backfill = instance.get_backfill(backfill_id)
        if backfill is None:
            raise BackfillError(f"backfill {backfill_id} is not in the instance")
        records = instance.get_run_records(
            filters=dg.RunsFilter(tags={BACKFILL_ID_TAG: backfill_id})
        )
        runs = []
        for record in records:
            dagster_run = record.dagster_run
            seconds = (
                record.end_time - record.start_time
                if record.start_time and record.end_time
                else None
            )
            progress = RunProgress(
                dagster_run.run_id, run_days(dagster_run.tags), dagster_run.status.value, seconds
            )
            if dagster_run.status == dg.DagsterRunStatus.FAILURE:
                progress.error = _step_error(instance, dagster_run.run_id)
            runs.append(progress)
        error = backfill.error.message.strip() if backfill.error else ""
        return Snapshot(backfill.status.value, error, runs)

    return look


def wait(
    look: Callable[[], Snapshot],
    backfill_id: str,
    out: Callable[[str], None],
    poll_s: float = 1.0,
    check: Callable[[float], None] | None = None,
) -> Outcome:
    """Until the backfill is done and its runs have ended; a line per run each time its
    status changes, and a count of runs by status whenever it changes. `check(elapsed)`
    runs at every poll: it may say something, or raise BackfillStopped to stop waiting."""
    started = time.monotonic()
    seen: dict[str, str] = {}
    last_count = ""
    hinted = False
    while True:
        snapshot = look()
        runs = sorted(snapshot.runs, key=lambda r: r.days)
        elapsed = time.monotonic() - started
        for run in runs:
            if seen.get(run.run_id) != run.status:
                seen[run.run_id] = run.status
                took = f" in {run.seconds:.1f} s" if run.seconds is not None else ""
                out(f"  {elapsed:7.1f} s  run {run.run_id[:8]}  {run.days:<23} {run.status}{took}")
                if run.error:
                    out(f"             {run.error}")
        counts: dict[str, int] = {}
        for run in runs:
            counts[run.status] = counts.get(run.status, 0) + 1
        count = ", ".join(f"{n} {status.lower()}" for status, n in sorted(counts.items()))
        if count != last_count and runs:
            out(f"  {elapsed:7.1f} s  backfill {snapshot.status.lower()}: {count}")
            last_count = count
        if not runs and not hinted and elapsed > NO_RUN_HINT_S:
            hinted = True
            out(
                f"  {elapsed:7.1f} s  no run yet: is the daemon's backfill loop healthy (the "
                "UI's Deployment > Daemons, or the daemon's log)?"
            )
        finished = all(seen[r.run_id] in FINISHED for r in runs)
        if snapshot.status in DONE_NAMES and finished:
            return Outcome(backfill_id, snapshot.status, elapsed, runs, snapshot.error)
        if check is not None:
            check(elapsed)
        time.sleep(poll_s)


def timeout_check(timeout_s: float, continues: str) -> Callable[[float], None]:
    """Stops the wait after timeout_s; `continues` says what becomes of the backfill."""

    def check(elapsed: float) -> None:
        if elapsed > timeout_s:
            raise BackfillStopped(f"not done after --timeout {timeout_s:g} s: {continues}")

    return check


def checks(*found: Callable[[float], None] | None) -> Callable[[float], None]:
    def check(elapsed: float) -> None:
        for one in found:
            if one is not None:
                one(elapsed)

    return check
