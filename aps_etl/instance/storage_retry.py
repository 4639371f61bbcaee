"""Riding out a dropped connection to Dagster's own PostgreSQL storage.

dagster-postgres retries getting a connection (`retry_pg_connection_fn`, ~11 s) but never a
statement: a connection that drops during a call, or died idle in the pool, fails the call,
and Dagster re-raises a failed write of its own events into the step that emitted it (the
step then fails with `SSL SYSCALL error: EOF detected`, outside any RetryPolicy). Here a
whole storage call is the unit that is run again: each is one autocommit statement, a few
idempotent ones, or one transaction (postgres_storage.py makes `add_run` and `store_event`
safe to repeat), never half of a transaction.
"""

from __future__ import annotations

import functools
import logging
import os
import random
import time
from collections.abc import Callable
from typing import Any, TypeVar

import sqlalchemy.exc as sa_exc
from dagster_postgres.utils import DagsterPostgresException

log = logging.getLogger("aps_etl.instance")

T = TypeVar("T")

BUDGET_VARIABLE = "APS_DAGSTER_STORAGE_RETRY_S"
# Long enough for a failover or a restarted container; a longer outage fails the call.
DEFAULT_BUDGET_S = 60.0
FIRST_DELAY_S = 0.25
MAX_DELAY_S = 5.0

# Calls that only read: always safe to run again.
READ_PREFIXES = ("get_", "fetch_", "has_", "all_", "check_", "can_", "is_")
# Writes that leave the same state when run twice (an UPDATE, an upsert, an insert whose
# duplicate is taken as "exists", ON CONFLICT DO NOTHING).
IDEMPOTENT_WRITES = frozenset(
    {
        "handle_run_event",
        "add_run_tags",
        "add_snapshot",
        "add_job_snapshot",
        "add_execution_plan_snapshot",
        "add_daemon_heartbeat",
        "update_backfill",
        "set_cursor_values",
        "add_dynamic_partitions",
        "update_instigator_state",
        "update_tick",
        "free_concurrency_slots_for_run",
        "free_concurrency_slot_for_step",
    }
)


def budget_s() -> float:
    raw = os.environ.get(BUDGET_VARIABLE, "").strip()
    if not raw:
        return DEFAULT_BUDGET_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise ValueError(f"{BUDGET_VARIABLE}={raw!r}: give the retry budget in seconds")
    return value


def is_dropped_connection(exc: BaseException) -> bool:
    """The connection dropped or could not be made: the call's outcome is unknown or nil.
    A statement's own error (a constraint, a syntax error) is not."""
    if isinstance(exc, DagsterPostgresException):  # its connect retries gave up
        return True
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return True  # SQLAlchemy's is_disconnect: "SSL SYSCALL error: EOF detected", ...
    return isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError)


def retry_call(call: Callable[[int], T], what: str) -> T:
    """`call(attempt)` until it ends without a dropped connection, within the budget; one
    warning line per retry (no traceback, no URL: the URL holds the password)."""
    deadline = time.monotonic() + budget_s()
    attempt = 0
    while True:
        attempt += 1
        try:
            return call(attempt)
        except Exception as exc:
            if not is_dropped_connection(exc) or time.monotonic() >= deadline:
                raise
            delay = min(FIRST_DELAY_S * 2 ** (attempt - 1), MAX_DELAY_S)
            delay *= 0.5 + random.random()  # storages of many processes do not retry in step
            cause = str(getattr(exc, "orig", None) or exc).strip().splitlines()
            log.warning(
                "Dagster storage: %s lost its connection (%s); retry %d in %.1f s",
                what,
                cause[0][:160] if cause else type(exc).__name__,
                attempt,
                delay,
            )
            time.sleep(delay)


def retrying(method: Callable[..., T], name: str) -> Callable[..., T]:
    @functools.wraps(method)
    def call(self: Any, *args: Any, **kwargs: Any) -> T:
        return retry_call(lambda _attempt: method(self, *args, **kwargs), name)

    return call


def retry_safe_calls(cls: type) -> type:
    """Class decorator: every public read and idempotent write of the storage `cls` (as
    the storage base classes name them) is retried whole on a dropped connection. Methods
    `cls` defines itself are left as written (they retry what they must themselves)."""
    from dagster._core.storage.event_log.base import EventLogStorage
    from dagster._core.storage.runs.base import RunStorage
    from dagster._core.storage.schedules.base import ScheduleStorage

    names = {
        name
        for base in (RunStorage, EventLogStorage, ScheduleStorage)
        if issubclass(cls, base)
        for name, value in vars(base).items()
        if callable(value)
        and not name.startswith("_")
        and (name.startswith(READ_PREFIXES) or name in IDEMPOTENT_WRITES)
    }
    for name in sorted(names - set(vars(cls))):
        method = getattr(cls, name, None)
        if callable(method):
            setattr(cls, name, retrying(method, name))
    return cls
