"""The daemon that runs `aps-etl backfill --policy`'s backfill: a deployment's, only watched
(`heartbeat_watch` says when its heartbeats stop), or, when none runs on the instance,
Dagster's own local deployment, `dagster dev`, started for the duration on
aps_etl/cli/backfill_location.py (the assets without the schedules and sensors).

`dagster dev` supervises its webserver, daemon and code server itself: on SIGTERM or SIGINT
it stops them (the daemon and webserver within seconds; the code server once the runs it
started have ended), and when one of them dies it stops the others and exits. What it does
not cover, measured on dagster 1.13 (docs/deployment.md#backfilling-a-range), is kept here:

- its parent's death: when the command is SIGKILLed, `dagster dev` and its children run on
  (the backfill with them) unless told; the kernel sends it SIGTERM (PR_SET_PDEATHSIG);
- the runs in flight: on SIGTERM its code server lets them run to their end, so the command
  cancels them first (backfill_runs.cancel_runs), and the next command stops what a killed
  one left: every process carrying the killed command's owner mark in its environment
  (APS_BACKFILL_OWNER, inherited by dagster dev's children and their run workers), then
  closes its backfill (`close_abandoned`);
- its heartbeats: the daemon leaves them behind, read as a running daemon for a minute, so
  they are wiped once it is gone (`settle_heartbeats` for the killed command's).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import psutil
from dagster._core.execution.backfill import BulkActionsFilter

from aps_etl.cli.backfill_owner import OWNER_ENV, owner_gone
from aps_etl.cli.backfill_runs import IN_FLIGHT, BackfillError, BackfillStopped, close
from aps_etl.env.stack import REPO_ROOT
from aps_etl.lib.tags import BACKFILL_OWNER_TAG

# The daemons a backfill needs: the backfill loop makes the runs, the queue starts them.
DAEMONS = ("BACKFILL", "QUEUED_RUN_COORDINATOR")
LOCATION_MODULE = "aps_etl.cli.backfill_location"
# How long `dagster dev` gets after SIGTERM (after the runs' backfill_runs.CANCEL_GRACE_S)
# before what is left of it gets SIGKILL: together under systemd's default 90 s.
STOP_GRACE_S = 30
# how often a deployment's daemon's heartbeats are looked at while waiting
HEARTBEAT_CHECK_S = 30
# A live daemon writes a heartbeat every 30 s (Dagster's DEFAULT_HEARTBEAT_INTERVAL_SECONDS)
HEARTBEAT_INTERVAL_S = 30
ABANDONED = "the aps-etl backfill whose dagster dev ran it was killed"


def daemon_running(instance: dg.DagsterInstance) -> bool:
    """A dagster-daemon heartbeating on this instance with the backfill and queue loops
    (a heartbeat in the last minute: they beat every 30 s)."""
    from dagster._daemon.controller import get_daemon_statuses

    statuses = get_daemon_statuses(
        instance, DAEMONS, ignore_errors=True, heartbeat_tolerance_seconds=30
    )
    return all(status.healthy for status in statuses.values())


def _terminate_with_parent(parent: int) -> Callable[[], None]:
    """For `dagster dev`, between fork and exec: SIGTERM when the command that started it
    dies, even by SIGKILL (Linux's PR_SET_PDEATHSIG); nothing in Dagster stops it then. libc
    is looked up here, in the parent; the child only calls it (and exits if its parent is
    already gone, which prctl would not notice)."""
    try:
        prctl = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True).prctl
    except (OSError, AttributeError):  # not Linux: dagster dev stops with the command only
        return lambda: None

    def child() -> None:
        prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG = 1
        if os.getppid() != parent:
            os._exit(1)

    return child


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def own_dagster_dev(
    instance: dg.DagsterInstance, env: dict[str, str], log: Path, owner: str
) -> Iterator[tuple[subprocess.Popen, str]]:
    """`dagster dev` on this instance for the duration, serving the backfill location; its
    process and its webserver's URL. It runs in a session of its own (a Ctrl-C in the
    terminal reaches the command, which cancels the runs first, not it), marked with
    `owner` in its environment. On the way out it gets SIGTERM and stops its children
    itself; what is left after STOP_GRACE_S is killed, and its heartbeats are wiped."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    dev = Path(sys.executable).parent / "dagster"
    command = [str(dev), "dev", "-m", LOCATION_MODULE, "-d", str(REPO_ROOT),
               "-h", "127.0.0.1", "-p", str(port)]  # fmt: skip
    with log.open("ab") as out:
        process = subprocess.Popen(
            command,
            env={**env, OWNER_ENV: owner},
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
                raise BackfillError(f"dagster dev exited ({process.returncode}): {tail}")
            if time.monotonic() > deadline:
                raise BackfillError(f"dagster dev's daemon did not start within 180 s (log: {log})")
            time.sleep(0.5)
        yield process, url
    finally:
        try:
            process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(STOP_GRACE_S)
            # what did not stop in time, or was still ending after it (a code server)
            stop_leftovers(owner, grace_s=10)
            process.wait(10)
        finally:
            # Its daemon's heartbeats outlive it (a minute of "healthy"): the next backfill
            # must not take it for a running daemon. It ran only because none other did.
            instance.wipe_daemon_heartbeats()


def leftovers(owner: str) -> list[psutil.Process]:
    """This host's processes marked with `owner` (a command's dagster dev, its webserver,
    daemon, code servers and their run workers)."""
    found = []
    for process in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if process.environ().get(OWNER_ENV) == owner:
                found.append(process)
    return found


def stop_leftovers(owner: str, grace_s: float = STOP_GRACE_S) -> int:
    """SIGTERM to the processes marked with `owner`, SIGKILL to what is left after
    grace_s. How many there were."""
    found = leftovers(owner)
    for process in found:
        with contextlib.suppress(psutil.Error):
            process.terminate()
    _, alive = psutil.wait_procs(found, timeout=grace_s)
    for process in alive:
        with contextlib.suppress(psutil.Error):
            process.kill()
    psutil.wait_procs(alive, timeout=10)
    return len(found)


def dev_exit_check(process: subprocess.Popen, log: Path) -> Callable[[float], None]:
    """Stops the wait when the command's own dagster dev has exited (it does when its daemon,
    webserver or code server dies): nothing would run the rest."""

    def check(elapsed: float) -> None:
        if process.poll() is not None:
            tail = log.read_text(errors="replace").strip().splitlines()[-1:] if log.exists() else []
            raise BackfillStopped(
                f"the dagster dev this command started exited ({process.returncode}) after "
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
    is gone): what is left of its dagster dev (its code server lets its runs go on, for
    hours maybe, beside the next command's) is stopped, its runs that did not end are
    closed and the backfill is canceled, as close() does; the heartbeats its daemon left
    are settled (settle_heartbeats). Returns (backfill id, days of the runs closed) for
    each."""
    found = []
    for backfill in instance.get_backfills(filters=BulkActionsFilter(statuses=IN_FLIGHT)):
        owner = backfill.tags.get(BACKFILL_OWNER_TAG)
        if not owner or not owner_gone(owner):
            continue
        stop_leftovers(owner)
        found.append((backfill.backfill_id, close(instance, backfill.backfill_id, ABANDONED)))
    if found:
        settle_heartbeats(instance, time.time(), HEARTBEAT_INTERVAL_S)
    return found


def settle_heartbeats(
    instance: dg.DagsterInstance, since: float, interval_s: float = HEARTBEAT_INTERVAL_S
) -> bool:
    """After a killed command's dagster dev is gone (at `since`), the heartbeats its daemon
    left read as a running daemon for a minute. A live daemon beats again within an
    interval: if none does, they are the dead one's, and wiped. True when wiped."""
    deadline = time.time() + interval_s + 5
    while daemon_running(instance):
        beats = instance.get_daemon_heartbeats().values()
        if any(beat.timestamp > since for beat in beats):
            return False  # a live daemon (a deployment's) beats on this instance
        if time.time() > deadline:
            instance.wipe_daemon_heartbeats()
            return True
        time.sleep(1)
    return False


def another_commands_dev(instance: dg.DagsterInstance) -> str | None:
    """A backfill in flight that another, live `aps-etl backfill` runs in a dagster dev of
    its own: a second daemon must not start beside it, and a backfill left to it would
    stall when that command ends. Why, or None."""
    import json

    for backfill in instance.get_backfills(filters=BulkActionsFilter(statuses=IN_FLIGHT)):
        owner = backfill.tags.get(BACKFILL_OWNER_TAG)
        if owner and not owner_gone(owner):
            pid = json.loads(owner).get("pid", "?") if owner.startswith("{") else "?"
            return (
                f"another aps-etl backfill (pid {pid}) runs backfill {backfill.backfill_id} "
                "in a dagster dev of its own on this instance; it stops with that command. "
                "Wait for it, or run a dagster-daemon for the instance"
            )
    return None
