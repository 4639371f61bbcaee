"""Alerts about sensor ticks: a tick that fails for any reason, and input a sensor refuses.

Dagster shows a failed tick in red in the UI but tells nobody; a sensor that fails every
tick (an unreachable MES, a broken lake) would stop change detection silently. Each
sensor body runs inside `alerting_tick`: a failure alerts (once an hour while it lasts)
and still fails the tick; a tick that succeeds again clears the alert.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg

from aps_etl.defs.alerts import AlertSettings, alert_once_an_hour, clear_alert, deliver
from aps_etl.lib.redaction import redact


def tick_failure_message(name: str, exc: BaseException) -> str:
    """The first line of the error and its type, never a traceback (no credentials:
    `deliver` redacts URIs and secret values again)."""
    first = (str(exc).splitlines() or [""])[0][:500]
    return redact(f"{name}: tick failed: {type(exc).__name__}: {first}", [])


@contextmanager
def alerting_tick(
    instance: dg.DagsterInstance, name: str, settings: AlertSettings
) -> Iterator[None]:
    """Runs a sensor's evaluation: any exception alerts (once an hour) and is re-raised,
    so the tick stays red in the UI; a clean tick clears the alert."""
    try:
        yield
    except Exception as exc:
        alert_once_an_hour(instance, name, settings, tick_failure_message(name, exc))
        raise
    clear_alert(instance, name)


def _refusal_key(name: str, value: str) -> str:
    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:24]
    return f"aps_etl/refused/{name}/{digest}"


def alert_refusal_once(
    instance: dg.DagsterInstance, name: str, value: str, settings: AlertSettings, message: str
) -> bool:
    """Alerts once, ever, that `name` refused `value` (the instance's key-value store
    remembers it: a refused plan run stays COMPLETED in the MES, and an alert every tick or
    every hour would be noise). Returns whether this call alerted."""
    key = _refusal_key(name, value)
    if instance.run_storage.get_cursor_values({key}).get(key):
        return False
    deliver(settings, f"[aps-etl] {name} refused input", message + "\n")
    instance.run_storage.set_cursor_values({key: "alerted"})
    return True
