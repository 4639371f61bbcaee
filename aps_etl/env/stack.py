"""The dev stack's connection settings, as `infra/stack up` writes them.

`infra/stack` generates credentials into a git-ignored env file (``.stack/stack.env`` by
default, ``APS_STACK_HOME`` moves the whole state folder). The code and the tests read
that file through here; values already set in the process environment win, so a
production deployment sets the same variables and has no file at all.

Nothing in this module prints or logs a value: secrets stay in memory.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]

# Variables the stack file defines. Everything but the *_PASSWORD / *_SECRET_KEY ones
# is safe to show.
STACK_VARIABLES = (
    "APS_PG_HOST",
    "APS_PG_PORT",
    "APS_PG_SUPERUSER",
    "APS_PG_SUPERUSER_PASSWORD",
    "APS_MES_DB",
    "APS_MES_OWNER_USER",
    "APS_MES_OWNER_PASSWORD",
    "APS_MES_READER_USER",
    "APS_MES_READER_PASSWORD",
    "APS_APS_DB",
    "APS_APS_LOADER_USER",
    "APS_APS_LOADER_PASSWORD",
    # the planners' tools: SELECT on the target's tables, nothing else
    "APS_APS_READER_USER",
    "APS_APS_READER_PASSWORD",
    # Trino's `aps` catalog: writes the stages, reads the master dimensions (Trino's only)
    "APS_APS_STAGE_WRITER_USER",
    "APS_APS_STAGE_WRITER_PASSWORD",
    # The MariaDB source (infra/stack's mariadb): database `mes` with the same two roles,
    # TLS only, its server certificate signed by the stack's CA (APS_MARIADB_SSLROOTCERT).
    "APS_MARIADB_HOST",
    "APS_MARIADB_PORT",
    "APS_MARIADB_DB",
    "APS_MARIADB_OWNER_USER",
    "APS_MARIADB_OWNER_PASSWORD",
    "APS_MARIADB_READER_USER",
    "APS_MARIADB_READER_PASSWORD",
    "APS_MARIADB_SSLROOTCERT",
    "APS_S3_ENDPOINT",
    "APS_S3_REGION",
    "APS_S3_BUCKET",
    "APS_S3_ACCESS_KEY",
    "APS_S3_SECRET_KEY",
    "APS_TRINO_HOST",
    "APS_TRINO_PORT",
    "APS_TRINO_USER",
    # Trino serves HTTPS with a certificate of the stack's CA and asks for a password.
    "APS_TRINO_HTTP_SCHEME",
    "APS_TRINO_SSLROOTCERT",
    "APS_TRINO_PASSWORD",
    # Only Trino's own processes use these: the key its nodes sign internal requests with
    # (internal-communication.shared-secret) and the read-only MinIO user it reads the lake as.
    "APS_TRINO_SHARED_SECRET_KEY",
    "APS_TRINO_S3_ACCESS_KEY",
    "APS_TRINO_S3_SECRET_KEY",
    # Dagster's own storage (runs, events, schedules): database `dagster`, its own role, and
    # an endpoint of its own (the same server in dev; its own in production).
    "APS_DAGSTER_PG_HOST",
    "APS_DAGSTER_PG_PORT",
    "APS_DAGSTER_PG_USER",
    "APS_DAGSTER_PG_PASSWORD",
)


def stack_home() -> Path:
    return Path(os.environ.get("APS_STACK_HOME", REPO_ROOT / ".stack"))


def stack_env_file() -> Path:
    return stack_home() / "stack.env"


def parse_env_file(path: Path) -> dict[str, str]:
    """Reads KEY=VALUE lines; blank lines and # comments are skipped. No shell expansion."""
    values: dict[str, str] = {}
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            # The line may hold a secret: name the line, never its content.
            raise ValueError(f"{path}:{number}: expected KEY=VALUE")
        values[key.strip()] = value.strip()
    return values


class StackSettingsMissing(RuntimeError):
    """The dev stack's settings are not there (the stack never started here)."""


def load_stack_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The stack settings: the env file overlaid by the process environment."""
    environ = os.environ if environ is None else environ
    path = stack_env_file()
    values = parse_env_file(path) if path.exists() else {}
    values.update({k: v for k, v in environ.items() if k in STACK_VARIABLES})
    missing = [k for k in STACK_VARIABLES if k not in values]
    if missing:
        raise StackSettingsMissing(
            f"dev stack settings missing: {', '.join(missing)}. "
            f"Run `infra/stack up` (it writes {path}) or set them in the environment."
        )
    return values


# Trino's own secrets: only its processes get them (infra/stack), never a Dagster process.
TRINO_ONLY = (
    "APS_TRINO_SHARED_SECRET_KEY",
    "APS_TRINO_S3_ACCESS_KEY",
    "APS_TRINO_S3_SECRET_KEY",
    "APS_APS_STAGE_WRITER_PASSWORD",
)


def export_stack_env() -> dict[str, str]:
    """Loads the stack settings into os.environ (for dg.EnvVar) and returns them, but for
    Trino's own secrets."""
    values = {k: v for k, v in load_stack_env().items() if k not in TRINO_ONLY}
    os.environ.update(values)
    return values


def trino_settings(values: Mapping[str, str]) -> dict[str, Any]:
    """TrinoResource's connection fields from the stack settings (tests, benchmarks)."""
    return {
        "host": values["APS_TRINO_HOST"],
        "port": int(values["APS_TRINO_PORT"]),
        "user": values["APS_TRINO_USER"],
        "http_scheme": values["APS_TRINO_HTTP_SCHEME"],
        "password": values["APS_TRINO_PASSWORD"],
        "sslrootcert": values["APS_TRINO_SSLROOTCERT"],
    }


def trino_connect(values: Mapping[str, str], **kwargs: Any) -> Any:
    """A trino.dbapi connection as the pipeline's user: HTTPS, the stack's CA, the password."""
    import trino

    from aps_etl.lib.trino_session import http_session

    settings = trino_settings(values)
    return trino.dbapi.connect(
        host=settings["host"],
        port=settings["port"],
        user=settings["user"],
        http_scheme=settings["http_scheme"],
        auth=trino.auth.BasicAuthentication(settings["user"], settings["password"]),
        http_session=http_session(settings["sslrootcert"]),
        **kwargs,
    )


def postgres_uri(values: Mapping[str, str], database: str, role: str) -> str:
    """libpq URI for `role` in ('superuser', 'mes_owner', 'mes_reader', 'aps_loader',
    'dagster', 'aps_reader', 'aps_stage_writer')."""
    from urllib.parse import quote

    user_key, password_key = {
        "superuser": ("APS_PG_SUPERUSER", "APS_PG_SUPERUSER_PASSWORD"),
        "mes_owner": ("APS_MES_OWNER_USER", "APS_MES_OWNER_PASSWORD"),
        "mes_reader": ("APS_MES_READER_USER", "APS_MES_READER_PASSWORD"),
        "aps_loader": ("APS_APS_LOADER_USER", "APS_APS_LOADER_PASSWORD"),
        "dagster": ("APS_DAGSTER_PG_USER", "APS_DAGSTER_PG_PASSWORD"),
        "aps_reader": ("APS_APS_READER_USER", "APS_APS_READER_PASSWORD"),
        "aps_stage_writer": ("APS_APS_STAGE_WRITER_USER", "APS_APS_STAGE_WRITER_PASSWORD"),
    }[role]
    return (
        f"postgresql://{quote(values[user_key], safe='')}:{quote(values[password_key], safe='')}"
        f"@{values['APS_PG_HOST']}:{values['APS_PG_PORT']}/{quote(database, safe='')}"
    )
