"""The local dev stack: PostgreSQL, MariaDB, MinIO and Trino as plain processes on 127.0.0.1.

    infra/stack up|down|status [postgres|mariadb|minio|trino ...]
    infra/stack render [--check]    # the compose deployment's files from config.py

State (data, logs, pid files, generated credentials in stack.env) lives in $APS_STACK_HOME
(default <repo>/.stack); downloaded and built binaries are cached outside the repo in
${XDG_CACHE_HOME:-~/.cache}/aps-etl so that a second clone starts fast. `down` only stops
processes whose pid file points at a process running from this state dir.

No password or secret key is ever printed: every message goes through `common.redact`,
passwords reach the services through files with mode 600 or the environment, never argv.

Modules: common (constants, messages, processes and ports), state (the state folder,
stack.env, its lock, the TLS CA), config (Trino's and PostgreSQL's configuration for the
dev stack and the compose deployment; grants: the target database's grants beyond its
owner's), postgres, mariadb (the MariaDB form of the source),
minio, trino (one server each), cli (the commands). Importing it stays light: no Dagster,
only aps_etl.env.stack and aps_etl.lib.trino_session.
"""

import sys
from pathlib import Path

# The checkout's own aps_etl first, whatever else the interpreter could import.
REPO = Path(__file__).resolve().parent.parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
