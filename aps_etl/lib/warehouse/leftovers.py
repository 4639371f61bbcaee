"""What killed runs leave behind in the warehouse, and how to recognise it.

Every stage table carries its owner (run id, host, pid, process start) in its comment and
every Trino query its owner in its `source`; a stage or query whose owner process is gone
(on this host) or whose run has ended belongs to nobody and is removed: at the start of
each load, and by `aps-etl doctor --fix`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aps_etl.lib.liveness import Owner, alive, this_process

log = logging.getLogger(__name__)

SOURCE_PREFIX = "aps-etl/"
KILL_WAIT_S = 15.0
# Runs in these states may still own a stage or a query.
LIVE_RUN_STATUSES = {"QUEUED", "NOT_STARTED", "STARTING", "STARTED", "CANCELING"}


def owner_alive(owner: dict[str, Any]) -> bool:
    """A stage's owner lives unless its process is known dead; a stage from before owners
    were recorded (no owner) is kept: only an operator removes it (doctor --fix --all)."""
    recorded = Owner.from_mapping(owner)
    if recorded is None:
        return True
    return alive(recorded) is not False


def run_aware(run_status: Callable[[str], str | None]) -> Callable[[dict[str, Any]], bool]:
    """owner_alive, and also dead when the owning run has ended (`run_status` gives a run's
    status name, None if the instance does not know it)."""

    def is_live(owner: dict[str, Any]) -> bool:
        if not owner_alive(owner):
            return False
        run_id = owner.get("run_id")
        if not run_id:
            return True
        status = run_status(str(run_id))
        return status is None or status in LIVE_RUN_STATUSES

    return is_live


def run_status_in(instance: Any) -> Callable[[str], str | None]:
    """A run's status name in a Dagster instance (None if unknown), for run_aware."""

    def status(run_id: str) -> str | None:
        run = instance.get_run_by_id(run_id)
        return run.status.value if run else None

    return status


def query_source(run_id: str | None) -> str:
    """The `source` a load's Trino query carries: its owner, parseable."""
    me = this_process()
    return f"{SOURCE_PREFIX}{me.host}/{me.pid}/{me.started:.2f}/{run_id or '-'}"


def parse_source(source: str) -> tuple[Owner, str | None] | None:
    if not source.startswith(SOURCE_PREFIX):
        return None
    try:
        host, pid, started, run_id = source[len(SOURCE_PREFIX) :].split("/", 3)
        return Owner(host, int(pid), float(started)), (None if run_id == "-" else run_id)
    except ValueError:
        return None


@dataclass(frozen=True)
class TrinoQuery:
    query_id: str
    state: str
    source: str
    owner: Owner
    run_id: str | None


def running_queries(trino: Any) -> list[TrinoQuery]:
    """The project's unfinished Trino queries, with their owners."""
    rows = trino.execute(
        "SELECT query_id, state, source FROM system.runtime.queries "
        f"WHERE source LIKE '{SOURCE_PREFIX}%' AND state NOT IN ('FINISHED', 'FAILED')",
    )
    found = []
    for query_id, state, source in rows:
        parsed = parse_source(source or "")
        if parsed is not None:
            found.append(TrinoQuery(query_id, state, source, *parsed))
    return found


def kill_orphan_queries(
    trino: Any, is_live: Callable[[dict[str, Any]], bool] = owner_alive
) -> list[str]:
    """Kills the unfinished queries whose owner is gone; returns their ids."""
    killed = []
    try:
        queries = running_queries(trino)
    except Exception as exc:  # a cleanup must not fail a load
        log.warning("could not list Trino queries: %s", exc)
        return []
    for query in queries:
        if is_live({**query.owner.as_dict(), "run_id": query.run_id}):
            continue
        try:
            trino.execute(
                f"CALL system.runtime.kill_query(query_id => '{query.query_id}', "
                "message => 'its aps-etl run died')"
            )
            killed.append(query.query_id)
        except Exception as exc:
            log.warning("could not kill Trino query %s: %s", query.query_id, exc)
    # A killed query lets go of its stage (a PostgreSQL lock) only once it has stopped.
    deadline = time.monotonic() + KILL_WAIT_S
    while killed and time.monotonic() < deadline:
        try:
            if not {q.query_id for q in running_queries(trino)} & set(killed):
                break
        except Exception:
            break
        time.sleep(0.5)
    return killed
