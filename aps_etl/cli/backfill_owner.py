"""Who runs a backfill: `aps-etl backfill --policy` tags a backfill its own `dagster dev` runs
with its process (host, pid, start time), so that the next command can tell a backfill whose
command was killed (nothing runs it any more) from one a deployment's daemon runs. The same
mark is in that dagster dev's environment (OWNER_ENV), inherited by every process it
starts: what a killed command left is found by it (backfill_daemon.leftovers)."""

from __future__ import annotations

import json

from aps_etl.lib import liveness

# in the environment of a command's own dagster dev and all it starts: the owner_id()
OWNER_ENV = "APS_BACKFILL_OWNER"


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
