"""Is a run's worker still alive? The answer run monitoring and `aps-etl doctor` act on.

A run's worker is the process executing it: for a run the daemon launched, the one whose
pid the run's "Started process for run (pid: N)" engine event records (DefaultRunLauncher
starts it on this host, beside the code server); for a run `aps-etl run`/`backfill`
executed in its own process, the one its `aps_etl/worker_*` tags name. A STARTED run whose
worker is gone will never finish: it is marked FAILURE, which fires the failure alert.
"""

from __future__ import annotations

from dataclasses import dataclass

import dagster as dg
from dagster._core.events import DagsterEventType

from aps_etl.liveness import Owner, alive, hostname, process_started

IN_PROGRESS = [dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]


def worker_owner(instance: dg.DagsterInstance, run: dg.DagsterRun) -> Owner | None:
    owner = Owner.from_tags(dict(run.tags))
    if owner is not None:
        return owner
    for entry in instance.all_logs(run.run_id, of_type=DagsterEventType.ENGINE_EVENT):
        event = entry.dagster_event
        data = getattr(event, "engine_event_data", None) if event else None
        pid = (data.metadata or {}).get("pid") if data else None
        if pid is not None and "Started process for run" in (entry.message or ""):
            pid_value = int(getattr(pid, "value", pid))
            started = process_started(pid_value)
            # started after the event: the pid was reused, the worker is gone
            if started is not None and started > entry.timestamp + 1.0:
                return Owner(hostname(), pid_value, entry.timestamp)
            return Owner(hostname(), pid_value, started or entry.timestamp)
    return None


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
