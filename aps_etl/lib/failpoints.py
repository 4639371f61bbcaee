"""Named points where a fault-injection test can freeze the process to kill it there.

`APS_FAILPOINT=load.swap` (comma-separated names) makes the process reaching that point
write its pid to `$APS_FAILPOINT_MARKER` (if set) and sleep, so the test can `kill -9` it at
exactly that spot: inside the swap's transaction, between filling the stages and swapping,
before publishing an extract. Unset (always, outside the tests) a failpoint is a no-op.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

FAILPOINT_ENV = "APS_FAILPOINT"
MARKER_ENV = "APS_FAILPOINT_MARKER"


_fired: set[str] = set()


def failpoint(name: str) -> None:
    """Fires once per process: a step retried after the fault runs on."""
    wanted = os.environ.get(FAILPOINT_ENV)
    if not wanted or name not in wanted.split(",") or name in _fired:
        return
    _fired.add(name)
    marker = os.environ.get(MARKER_ENV)
    if marker:
        Path(marker).write_text(f"{os.getpid()} {name}\n")
    time.sleep(float(os.environ.get("APS_FAILPOINT_SLEEP_S", "3600")))
