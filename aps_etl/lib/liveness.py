"""Is the process that owns something (a run, a stage table, a temp file) still alive?

An owner is recorded as host, pid and the process's start time (seconds since the epoch,
from /proc via psutil): a pid reused by a later process does not pass for the owner.
Only the host that recorded an owner can tell; elsewhere the answer is "unknown" (None).
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import Any

import psutil

from aps_etl.lib.tags import WORKER_HOST_TAG, WORKER_PID_TAG, WORKER_STARTED_TAG


@dataclass(frozen=True)
class Owner:
    host: str
    pid: int
    started: float

    def tags(self) -> dict[str, str]:
        return {
            WORKER_PID_TAG: str(self.pid),
            WORKER_HOST_TAG: self.host,
            WORKER_STARTED_TAG: f"{self.started:.2f}",
        }

    def as_dict(self) -> dict[str, Any]:
        return {"host": self.host, "pid": self.pid, "started": round(self.started, 2)}

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> Owner | None:
        try:
            return cls(str(values["host"]), int(values["pid"]), float(values["started"]))
        except (KeyError, TypeError, ValueError):
            return None

    @classmethod
    def from_tags(cls, tags: dict[str, str]) -> Owner | None:
        return cls.from_mapping(
            {
                "host": tags.get(WORKER_HOST_TAG),
                "pid": tags.get(WORKER_PID_TAG),
                "started": tags.get(WORKER_STARTED_TAG),
            }
        )


def hostname() -> str:
    return socket.gethostname()


def process_started(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def this_process() -> Owner:
    pid = os.getpid()
    return Owner(hostname(), pid, process_started(pid) or 0.0)


def alive(owner: Owner) -> bool | None:
    """True or False on the owner's host; None elsewhere (cannot tell)."""
    if owner.host != hostname():
        return None
    started = process_started(owner.pid)
    if started is None:
        return False
    try:
        if psutil.Process(owner.pid).status() == psutil.STATUS_ZOMBIE:
            return False
    except psutil.NoSuchProcess:
        return False
    # the same pid started later is another process
    return abs(started - owner.started) < 1.0 or owner.started == 0.0
