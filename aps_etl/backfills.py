"""`aps-etl backfill --policy`: a date range as a real Dagster backfill.

The range is submitted to the instance as an asset backfill of the daily job's assets, as
the UI's "Materialize..." does; the daemon's backfill loop splits it into runs by the
assets' backfill policy (APS_BACKFILL_POLICY, aps_etl/partitions.py) and queues them; the
queued run coordinator starts them, side by side up to its limits (dagster.yaml's
run_coordinator). This waits for every run, printing each run's progress, and reports.

When no dagster-daemon is running on the instance, one is started for the duration, on
aps_etl/backfill_location.py (the assets without the schedules and sensors), with the
policy asked for. When one is running (a deployment), the backfill is its to run, split by
its own code location's setting.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
from dagster._core.execution.backfill import BulkActionsFilter, BulkActionStatus, PartitionBackfill
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
    BACKFILL_ID_TAG,
    PARTITION_NAME_TAG,
)
from dagster._core.utils import make_new_backfill_id

from aps_etl.stack_env import REPO_ROOT

# The daemons a backfill needs: the backfill loop makes the runs, the queue starts them.
DAEMONS = ("BACKFILL", "QUEUED_RUN_COORDINATOR")
LOCATION_MODULE = "aps_etl.backfill_location"
# the backfill loop looks every 30 s: no run after this long means something is wrong
NO_RUN_HINT_S = 120
IN_FLIGHT = [BulkActionStatus.REQUESTED, BulkActionStatus.CANCELING, BulkActionStatus.FAILING]
DONE = {
    BulkActionStatus.COMPLETED,
    BulkActionStatus.COMPLETED_SUCCESS,
    BulkActionStatus.COMPLETED_FAILED,
    BulkActionStatus.FAILED,
    BulkActionStatus.CANCELED,
}


class BackfillError(RuntimeError):
    """A backfill that cannot be submitted or run (printed as one line by the CLI)."""


def parse_policy(text: str) -> dict[str, str]:
    """`single-run`, `multi-run` or `multi-run:N` as the APS_BACKFILL_* settings."""
    from aps_etl.partitions import BACKFILL_POLICY_VARIABLE, MAX_PARTITIONS_VARIABLE

    name, _, count = text.strip().lower().replace("_", "-").partition(":")
    if name == "single-run" and not count:
        # an inherited APS_BACKFILL_MAX_PARTITIONS_PER_RUN would be refused with single_run
        return {BACKFILL_POLICY_VARIABLE: "single_run", MAX_PARTITIONS_VARIABLE: ""}
    if name == "multi-run" and (not count or (count.isdigit() and int(count) >= 1)):
        return {BACKFILL_POLICY_VARIABLE: "multi_run", MAX_PARTITIONS_VARIABLE: count or "1"}
    raise ValueError(f"expected single-run, multi-run or multi-run:N (N >= 1 days): {text!r}")


def daemon_running(instance: dg.DagsterInstance) -> bool:
    """A dagster-daemon heartbeating on this instance with the backfill and queue loops
    (a heartbeat in the last minute: they beat every 30 s)."""
    from dagster._daemon.controller import get_daemon_statuses

    statuses = get_daemon_statuses(
        instance, DAEMONS, ignore_errors=True, heartbeat_tolerance_seconds=30
    )
    return all(status.healthy for status in statuses.values())


@contextmanager
def own_daemon(instance: dg.DagsterInstance, env: dict[str, str], log: Path) -> Iterator[int]:
    """A dagster-daemon on this instance for the duration: its process id. It serves the
    backfill location in a code server of its own; stopped (its process group, which it
    leads) on the way out."""
    daemon = Path(sys.executable).parent / "dagster-daemon"
    command = [str(daemon), "run", "-m", LOCATION_MODULE, "-d", str(REPO_ROOT)]
    with log.open("ab") as out:
        process = subprocess.Popen(
            command,
            env=env,
            cwd=REPO_ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 180
        while not daemon_running(instance):
            if process.poll() is not None:
                tail = log.read_text(errors="replace")[-2000:]
                raise BackfillError(f"dagster-daemon exited ({process.returncode}): {tail}")
            if time.monotonic() > deadline:
                raise BackfillError(f"dagster-daemon did not start within 180 s (log: {log})")
            time.sleep(0.5)
        yield process.pid
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)
        # Its heartbeats outlive it (a minute of "healthy"): the next backfill must not
        # take it for a running daemon. It ran only because none other did.
        instance.wipe_daemon_heartbeats()


def daily_partitions(first: str, last: str) -> list[str]:
    from aps_etl.partitions import DAILY

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
    instance: dg.DagsterInstance, defs: dg.Definitions, first: str, last: str, title: str
) -> str:
    """The daily job's assets for [first, last] as one asset backfill: its id."""
    from aps_etl.orchestration.jobs import aps_daily

    graph = defs.resolve_asset_graph()
    keys = sorted(aps_daily.selection.resolve(graph))
    days = daily_partitions(first, last)
    clash = in_flight_overlap(instance, set(days))
    if clash:
        raise BackfillError(clash)
    backfill_id = make_new_backfill_id()
    instance.add_backfill(
        PartitionBackfill.from_asset_partitions(
            backfill_id=backfill_id,
            asset_graph=graph,
            partition_names=days,
            asset_selection=keys,
            backfill_timestamp=time.time(),
            tags={"aps_etl/launched_by": "aps-etl backfill"},
            dynamic_partitions_store=instance,
            all_partitions=False,
            title=title,
            description=f"aps-etl backfill --from {first} --to {last}",
            run_config=None,
        )
    )
    return backfill_id


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


def _days(tags: Mapping[str, str]) -> str:
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


def wait(
    instance: dg.DagsterInstance,
    backfill_id: str,
    out: Callable[[str], None],
    poll_s: float = 1.0,
) -> Outcome:
    """Until the backfill is done and its runs have ended; a line per run each time its
    status changes, and a count of runs by status whenever it changes."""
    started = time.monotonic()
    seen: dict[str, str] = {}
    last_count = ""
    hinted = False
    while True:
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
                dagster_run.run_id, _days(dagster_run.tags), dagster_run.status.value, seconds
            )
            if dagster_run.status == dg.DagsterRunStatus.FAILURE:
                progress.error = _step_error(instance, dagster_run.run_id)
            runs.append(progress)
        runs.sort(key=lambda r: r.days)
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
            out(f"  {elapsed:7.1f} s  backfill {backfill.status.value.lower()}: {count}")
            last_count = count
        if not runs and not hinted and elapsed > NO_RUN_HINT_S:
            hinted = True
            out(
                f"  {elapsed:7.1f} s  no run yet: is the daemon's backfill loop healthy (the "
                "UI's Deployment > Daemons, or the daemon's log)?"
            )
        finished = all(seen[r.run_id] in ("SUCCESS", "FAILURE", "CANCELED") for r in runs)
        if backfill.status in DONE and finished:
            error = backfill.error.message.strip() if backfill.error else ""
            return Outcome(backfill_id, backfill.status.value, elapsed, runs, error)
        time.sleep(poll_s)
