"""Is a run's worker still alive? The answer run monitoring and `aps-etl doctor` act on.

A run's worker is the process executing it: for a run the daemon launched, the one whose
pid the run's "Started process for run (pid: N)" engine event records, on the host of the
code server that started it (the launcher's `.dagster/grpc_info` tag; another host's
worker is never judged from here); for a run `aps-etl run`/`backfill`
executed in its own process, the one its `aps_etl/worker_*` tags name. A STARTED run whose
worker is gone will never finish: it is marked FAILURE, which fires the failure alert.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import dagster as dg
from dagster._core.events import DagsterEventType
from dagster._core.storage.tags import GRPC_INFO_TAG

from aps_etl.lib.liveness import Owner, alive, hostname, process_started

IN_PROGRESS = [dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]


def worker_owner(instance: dg.DagsterInstance, run: dg.DagsterRun) -> Owner | None:
    owner = Owner.from_tags(dict(run.tags))
    if owner is not None:
        return owner
    host = _code_server_host(dict(run.tags))
    if host is None:
        return None  # not launched through a code server we can see: cannot tell
    for entry in instance.all_logs(run.run_id, of_type=DagsterEventType.ENGINE_EVENT):
        event = entry.dagster_event
        data = getattr(event, "engine_event_data", None) if event else None
        pid = (data.metadata or {}).get("pid") if data else None
        if pid is not None and "Started process for run" in (entry.message or ""):
            pid_value = int(getattr(pid, "value", pid))
            started = process_started(pid_value)
            # started after the event: the pid was reused, the worker is gone
            if started is not None and started > entry.timestamp + 1.0:
                return Owner(host, pid_value, entry.timestamp)
            return Owner(host, pid_value, started or entry.timestamp)
    return None


LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", "0.0.0.0"}


def _code_server_host(tags: dict[str, str]) -> str | None:
    """Where the launcher's code server (which starts the worker) runs: this host for a
    unix socket or a loopback address (`dagster dev`), else the named host, whose pids
    this host cannot judge (alive() answers None for it)."""
    raw = tags.get(GRPC_INFO_TAG)
    if not raw:
        return None
    try:
        info = json.loads(raw)
    except ValueError:
        return None
    server = str(info.get("host") or "")
    if info.get("socket") or server in LOCAL_HOSTS or server == hostname():
        return hostname()
    return server or None


@dataclass(frozen=True)
class DeadRun:
    run: dg.DagsterRun
    reason: str


def worker_alive(instance: dg.DagsterInstance, run: dg.DagsterRun) -> tuple[bool | None, str]:
    """(alive, why): None when this host cannot tell (no worker recorded yet, or another
    host's)."""
    owner = worker_owner(instance, run)
    if owner is None:
        return None, "no worker process recorded"
    state = alive(owner)
    if state is None:
        return None, f"worker pid {owner.pid} runs on {owner.host}, not here"
    if state:
        return True, f"worker pid {owner.pid} is running"
    return False, f"its worker process (pid {owner.pid} on {owner.host}) is gone"


def dead_runs(instance: dg.DagsterInstance) -> list[DeadRun]:
    found = []
    for record in instance.get_run_records(filters=dg.RunsFilter(statuses=IN_PROGRESS)):
        state, why = worker_alive(instance, record.dagster_run)
        if state is False:
            found.append(DeadRun(record.dagster_run, why))
    return found


def fail_dead_run(instance: dg.DagsterInstance, dead: DeadRun) -> None:
    """Marks the run FAILURE (the failure alert fires on it; the queue frees its slot)."""
    instance.report_run_failed(
        dead.run, f"Run worker died: {dead.reason}. Nothing it had not committed is visible."
    )
