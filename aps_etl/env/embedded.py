"""The `local` environment: the embedded PostgreSQL (source `mes` and target `aps`) and the
local lake, both under one folder (`APS_LOCAL_HOME`, default `.aps-etl/` in the checkout)."""

from __future__ import annotations

import os
from pathlib import Path

from aps_etl.env.stack import REPO_ROOT
from aps_etl.lib.embedded_postgres import (
    SOURCE_DB,
    TARGET_DB,
    EmbeddedPostgres,
    start_embedded_postgres,
    stop_orphaned_server,
)

__all__ = [
    "SOURCE_DB",
    "TARGET_DB",
    "EmbeddedPostgres",
    "local_home",
    "start_embedded_postgres",
    "start_local_postgres",
    "stop_orphaned_server",
]


def local_home() -> Path:
    """Folder of the embedded default: PostgreSQL data and the local lake."""
    return Path(os.environ.get("APS_LOCAL_HOME", REPO_ROOT / ".aps-etl"))


def start_local_postgres() -> EmbeddedPostgres:
    """The `local` environment's server (started, or attached to), `mes` and `aps` in it."""
    return start_embedded_postgres(local_home() / "postgres")
