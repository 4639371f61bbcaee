"""A dagster-daemon of `aps-etl backfill --policy`'s own, when none runs on the instance:
started on aps_etl/cli/backfill_location.py (the assets without the schedules and sensors),
watched, and stopped with its whole process group (its code server and run workers)
whatever ends the command; what the daemon of a command that was killed (SIGKILL) left
is stopped and closed by the next command (`close_abandoned`). A deployment's daemon is
only watched: `heartbeat_watch` says when its heartbeats stop.

If the command is killed, its daemon gets SIGTERM from the kernel (PR_SET_PDEATHSIG); its
process and heartbeats' ids are kept in a file meanwhile, so that the next command can
tell what it left from a deployment daemon's.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
from dagster._core.execution.backfill import BulkActionsFilter

from aps_etl.cli.backfill_owner import owner_gone
from aps_etl.cli.backfill_runs import IN_FLIGHT, BackfillError, BackfillStopped, close
from aps_etl.env.stack import REPO_ROOT
from aps_etl.lib import liveness
from aps_etl.lib.tags import BACKFILL_OWNER_TAG

# The daemons a backfill needs: the backfill loop makes the runs, the queue starts them.
DAEMONS = ("BACKFILL", "QUEUED_RUN_COORDINATOR")
LOCATION_MODULE = "aps_etl.cli.backfill_location"
# How long the daemon's process group gets after SIGTERM before SIGKILL (after the runs'
# backfill_runs.CANCEL_GRACE_S): together under systemd's default 90 s stop timeout.
STOP_GRACE_S = 30
# how often a deployment's daemon's heartbeats are looked at while waiting
HEARTBEAT_CHECK_S = 30
ABANDONED = "the aps-etl backfill whose daemon ran it was killed"


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


def close_abandoned(instance: dg.DagsterInstance) -> list[tuple[str, list[str]]]:
    """Backfills left in flight by an `aps-etl backfill` that was killed (its owner process
    is gone): what is left of its daemon's process group (the code server waits for its
    runs, which could go on for hours beside the next command's) is stopped, its runs that
    did not end are closed and the backfill is canceled, as close() does; so are the
    heartbeats its daemon left. Returns (backfill id, days of the runs closed) for each."""
    found = []
    for backfill in instance.get_backfills(filters=BulkActionsFilter(statuses=IN_FLIGHT)):
        owner = backfill.tags.get(BACKFILL_OWNER_TAG)
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
            owner = json.loads(backfill.tags.get(BACKFILL_OWNER_TAG) or "{}")
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
