"""`aps-etl backfill --policy`: a date range as a real Dagster backfill.

The range is submitted to the instance as an asset backfill of the daily job's assets, as
the UI's "Materialize..." does; the daemon's backfill loop splits it into runs by the
assets' backfill policy (APS_BACKFILL_POLICY, aps_etl/lib/partitions.py) and queues them; the
queued run coordinator starts them, side by side up to its limits (dagster.yaml's
run_coordinator). This waits for every run, printing each run's progress, and reports.

When no dagster-daemon is running on the instance, one is started for the duration, on
aps_etl/cli/backfill_location.py (the assets without the schedules and sensors), with the
policy asked for. When one is running (a deployment), the backfill is its to run, split by
its own code location's setting.

A backfill run by a daemon of the command's own ends with the command, whatever ends it:
the daemon exiting, `--timeout`, Ctrl-C or SIGTERM cancel its runs (through the daemon's
code server, while it is up), stop the daemon and its run workers, and mark what is left
canceled, so that nothing stays "in progress" in the UI or blocks the next range. If the
command itself is killed (SIGKILL), its daemon gets SIGTERM from the kernel, and the next
`aps-etl backfill` on the instance closes the backfill it left (`close_abandoned`). A
deployment's daemon is only watched: the command says when its heartbeats stop.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import json
import logging
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

from aps_etl.env.stack import REPO_ROOT
from aps_etl.lib import liveness

# The daemons a backfill needs: the backfill loop makes the runs, the queue starts them.
DAEMONS = ("BACKFILL", "QUEUED_RUN_COORDINATOR")
LOCATION_MODULE = "aps_etl.cli.backfill_location"
# the backfill loop looks every 30 s: no run after this long means something is wrong
NO_RUN_HINT_S = 120
# the process (host, pid, start time) whose own daemon runs a backfill: a tag on it and its runs
OWNER_TAG = "aps_etl/backfill_owner"
# How long canceled runs get to stop on their own, then the daemon's group before SIGKILL:
# together under systemd's default 90 s stop timeout.
CANCEL_GRACE_S = 30
STOP_GRACE_S = 30
# how often a deployment's daemon's heartbeats are looked at while waiting
HEARTBEAT_CHECK_S = 30
FINISHED = ("SUCCESS", "FAILURE", "CANCELED")
ABANDONED = "the aps-etl backfill whose daemon ran it was killed"
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


class BackfillStopped(BackfillError):
    """The wait ended before the backfill did: its daemon exited, or `--timeout` passed."""


def owner_id() -> str:
    """This process as the owner of a backfill its own daemon runs (host, pid, start time)."""
    return json.dumps(liveness.this_process().as_dict())


def owner_gone(owner: str) -> bool:
    """True only when the owner is surely gone: on this host, and its pid is free, a zombie
    or another (later) process's. An owner on another host is taken as alive."""
    try:
        found = liveness.Owner.from_mapping(json.loads(owner))
    except (ValueError, TypeError):
        return False
    return found is not None and liveness.alive(found) is False


def parse_policy(text: str) -> dict[str, str]:
    """`single-run`, `multi-run` or `multi-run:N` as the APS_BACKFILL_* settings."""
    from aps_etl.lib.partitions import BACKFILL_POLICY_VARIABLE, MAX_PARTITIONS_VARIABLE

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


def _terminate_with_parent(parent: int) -> Callable[[], None]:
    """For the daemon, between fork and exec: SIGTERM when the command that started it dies,
    even by SIGKILL (Linux's PR_SET_PDEATHSIG), so that no daemon outlives its command. libc
    is looked up here, in the parent; the child only calls it (and exits if its parent is
    already gone, which prctl would not notice)."""
    try:
        prctl = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True).prctl
    except (OSError, AttributeError):  # not Linux: the daemon stops with the command only
        return lambda: None

    def child() -> None:
        prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG = 1
        if os.getppid() != parent:
            os._exit(1)

    return child


def _daemons_file(instance: dg.DagsterInstance, backfill_id: str) -> Path:
    """While a command's own daemon runs: its process (the leader of its process group) and
    its heartbeats' ids, for close_abandoned if the command is killed."""
    return Path(instance.root_directory) / "aps-etl-backfill" / f"{backfill_id}.daemon.json"


@contextmanager
def own_daemon(
    instance: dg.DagsterInstance, env: dict[str, str], log: Path, backfill_id: str
) -> Iterator[subprocess.Popen]:
    """A dagster-daemon on this instance for the duration, for backfill_id. It serves the
    backfill location in a code server of its own, whose run workers share its process
    group; the group is stopped on the way out, also when the daemon itself has already
    exited. Its heartbeats' ids are kept in a file while it runs: if the command is killed,
    close_abandoned tells the heartbeats it leaves from a deployment daemon's."""
    daemon = Path(sys.executable).parent / "dagster-daemon"
    command = [str(daemon), "run", "-m", LOCATION_MODULE, "-d", str(REPO_ROOT)]
    record = _daemons_file(instance, backfill_id)
    started = time.time()
    with log.open("ab") as out:
        process = subprocess.Popen(
            command,
            env=env,
            cwd=REPO_ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_terminate_with_parent(os.getpid()),
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
        beats = instance.get_daemon_heartbeats().values()
        started_at = liveness.process_started(process.pid) or 0.0
        leader = liveness.Owner(liveness.hostname(), process.pid, started_at)
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text(
            json.dumps(
                {
                    "daemon": leader.as_dict(),
                    "heartbeat_ids": sorted(
                        {b.daemon_id or "" for b in beats if b.timestamp >= started}
                    ),
                }
            )
        )
        yield process
    finally:
        try:
            _stop_group(process.pid, process)
        finally:
            # Its heartbeats outlive it (a minute of "healthy"): the next backfill must not
            # take it for a running daemon. It ran only because none other did.
            instance.wipe_daemon_heartbeats()
            record.unlink(missing_ok=True)


def _stop_group(pgid: int, leader: subprocess.Popen | None = None) -> None:
    """SIGTERM to a daemon's process group (the daemon, its code server, their run
    workers), SIGKILL to what is left after STOP_GRACE_S. `leader`, our child, is reaped."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    while time.monotonic() < deadline and _group_alive(pgid):
        if leader is not None and leader.poll() is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                leader.wait(0.5)
        else:
            time.sleep(0.5)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    if leader is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            leader.wait(10)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # members of another user: alive, not ours to signal
        return True
    return True


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
    (owner_id()) marks a backfill that the submitting process's own daemon runs."""
    from aps_etl.defs.jobs import aps_daily

    graph = defs.resolve_asset_graph()
    keys = sorted(aps_daily.selection.resolve(graph))
    days = daily_partitions(first, last)
    clash = in_flight_overlap(instance, set(days))
    if clash:
        raise BackfillError(clash)
    backfill_id = make_new_backfill_id()
    tags = {"aps_etl/launched_by": "aps-etl backfill"} | ({OWNER_TAG: owner} if owner else {})
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


def close_abandoned(instance: dg.DagsterInstance) -> list[tuple[str, list[str]]]:
    """Backfills left in flight by an `aps-etl backfill` that was killed (its owner process
    is gone): what is left of its daemon's process group (the code server waits for its
    runs, which could go on for hours beside the next command's) is stopped, its runs that
    did not end are closed and the backfill is canceled, as close() does; so are the
    heartbeats its daemon left. Returns (backfill id, days of the runs closed) for each."""
    found = []
    for backfill in instance.get_backfills(filters=BulkActionsFilter(statuses=IN_FLIGHT)):
        owner = backfill.tags.get(OWNER_TAG)
        if not owner or not owner_gone(owner):
            continue
        record_file = _daemons_file(instance, backfill.backfill_id)
        try:
            record = json.loads(record_file.read_text())
        except (OSError, ValueError):
            record = {}
        daemon = liveness.Owner.from_mapping(record.get("daemon") or {})
        if daemon is not None and _still_its_group(daemon):
            _stop_group(daemon.pid)
        closed = close(instance, backfill.backfill_id, ABANDONED)
        _wipe_heartbeats_of(instance, set(record.get("heartbeat_ids") or []))
        record_file.unlink(missing_ok=True)
        found.append((backfill.backfill_id, closed))
    return found


def another_commands_daemon(instance: dg.DagsterInstance) -> str | None:
    """The daemon heartbeating on the instance is another `aps-etl backfill`'s own: it stops
    when that command ends, and a backfill left to it would stall. Why, or None."""
    fresh = {
        beat.daemon_id
        for beat in instance.get_daemon_heartbeats().values()
        if beat.timestamp > time.time() - 60
    }
    for record_file in _daemons_file(instance, "-").parent.glob("*.daemon.json"):
        backfill_id = record_file.name.removesuffix(".daemon.json")
        try:
            record = json.loads(record_file.read_text())
        except (OSError, ValueError):
            continue
        backfill = instance.get_backfill(backfill_id)
        if backfill is None or backfill.status not in IN_FLIGHT:
            continue
        if fresh & set(record.get("heartbeat_ids") or []):
            owner = json.loads(backfill.tags.get(OWNER_TAG) or "{}")
            return (
                f"the dagster-daemon on this instance is the one another aps-etl backfill "
                f"(pid {owner.get('pid', '?')}) started for backfill {backfill_id}; it stops "
                "with that command. Wait for it, or run a dagster-daemon for the instance"
            )
    return None


def _still_its_group(daemon: liveness.Owner) -> bool:
    """The daemon's process group still has members, and they are its: Linux does not reuse
    a pid while a group of that id exists, so only a live leader needs its start time
    checked (a later process that took the pid)."""
    if daemon.host != liveness.hostname() or not _group_alive(daemon.pid):
        return False
    leader_started = liveness.process_started(daemon.pid)
    if leader_started is None:
        return True  # the leader is gone, its group is not: the code server, run workers
    return os.getpgid(daemon.pid) == daemon.pid and abs(leader_started - daemon.started) < 1


def _wipe_heartbeats_of(instance: dg.DagsterInstance, theirs: set[str]) -> None:
    """The heartbeats a killed command's daemon left read as a running daemon for a minute,
    and the next command would wait on it: wiped when every recent heartbeat is its own."""
    recent = [
        beat
        for beat in instance.get_daemon_heartbeats().values()
        if beat.timestamp > time.time() - 120
    ]
    if theirs and recent and all(beat.daemon_id in theirs for beat in recent):
        instance.wipe_daemon_heartbeats()


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


def wait(
    instance: dg.DagsterInstance,
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
        finished = all(seen[r.run_id] in FINISHED for r in runs)
        if backfill.status in DONE and finished:
            error = backfill.error.message.strip() if backfill.error else ""
            return Outcome(backfill_id, backfill.status.value, elapsed, runs, error)
        if check is not None:
            check(elapsed)
        time.sleep(poll_s)


def daemon_exit_check(process: subprocess.Popen, log: Path) -> Callable[[float], None]:
    """Stops the wait when the command's own daemon has exited: nothing would run the rest."""

    def check(elapsed: float) -> None:
        if process.poll() is not None:
            tail = log.read_text(errors="replace").strip().splitlines()[-1:] if log.exists() else []
            raise BackfillStopped(
                f"the dagster-daemon this command started exited ({process.returncode}) after "
                f"{elapsed:.0f} s (log: {log}{': ' + tail[0][:300] if tail else ''})"
            )

    return check


def timeout_check(timeout_s: float, continues: str) -> Callable[[float], None]:
    """Stops the wait after timeout_s; `continues` says what becomes of the backfill."""

    def check(elapsed: float) -> None:
        if elapsed > timeout_s:
            raise BackfillStopped(f"not done after --timeout {timeout_s:g} s: {continues}")

    return check


def heartbeat_watch(
    instance: dg.DagsterInstance, out: Callable[[str], None], every_s: float = HEARTBEAT_CHECK_S
) -> Callable[[float], None]:
    """A deployment's daemon runs the backfill: says when its heartbeats stop (the backfill
    waits for it; compose restarts it) and when they are back."""
    state = {"next": every_s, "silent": False}

    def check(elapsed: float) -> None:
        if elapsed < state["next"]:
            return
        state["next"] = elapsed + every_s
        healthy = daemon_running(instance)
        if not healthy and not state["silent"]:
            out(
                f"  {elapsed:7.1f} s  the deployment's dagster-daemon has not heartbeaten for "
                "30 s: its runs wait until it is back (Deployment > Daemons in the UI)"
            )
        elif healthy and state["silent"]:
            out(f"  {elapsed:7.1f} s  the deployment's dagster-daemon is back")
        state["silent"] = not healthy

    return check


def checks(*found: Callable[[float], None] | None) -> Callable[[float], None]:
    def check(elapsed: float) -> None:
        for one in found:
            if one is not None:
                one(elapsed)

    return check
