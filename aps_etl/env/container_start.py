"""The aps-etl image's entry point: check the container's settings, then run its command.

    ENTRYPOINT ["python", "-m", "aps_etl.env.container_start"]   (Dockerfile)

A container given the wrong settings stops here, at start, with the variable's name,
instead of failing with a traceback deep inside a run hours later:

- `APS_ENV` must be `dev` or `prod`; `local` (the embedded default, whose data lives
  inside the container and dies with it) only with `APS_ALLOW_LOCAL=1`.
- Every variable the container's role uses must be set. The role comes from its command:
  the code server, the webserver, the daemon or a run worker.
- No PostgreSQL superuser or `mes_owner` password may be in a Dagster container: they
  belong to the database's own container, and a leaked run worker must not hold them.
- Dagster's storage is reached at start, so a wrong password or an untrusted certificate
  is named now (and not retried: it would fail the same way).

Dagster's storage has its own endpoint (`APS_DAGSTER_PG_HOST`, `_PORT`, `_USER`,
`_PASSWORD`, `_SSLMODE`, `_SSLROOTCERT`); the connection URL dagster.yaml reads
(`APS_DAGSTER_PG_URL`) is composed here from those parts, quoted.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.parse import quote, urlencode

from aps_etl.env.transport import plaintext_settings

EXIT_CONFIG = 78  # sysexits.h EX_CONFIG: a restart policy will not make it go away

# Every Dagster process loads the instance: its storage, and where the compute logs' bucket
# is (its name is dagster.yaml's own).
DAGSTER_STORAGE = (
    "APS_DAGSTER_PG_HOST",
    "APS_DAGSTER_PG_USER",
    "APS_DAGSTER_PG_PASSWORD",
    "APS_S3_ENDPOINT",
    "APS_S3_REGION",
)
# Where the pipeline's systems are: the definitions need these to load ("A|B": either).
ENDPOINTS = (
    "APS_TARGET_PG_HOST|APS_PG_HOST",
    "APS_TARGET_PG_PORT|APS_PG_PORT",
    "APS_APS_DB",
    "APS_S3_BUCKET",
    "APS_TRINO_HOST",
    "APS_TRINO_PORT",
)
# What a run reads and writes with.
CREDENTIALS = (
    "APS_APS_LOADER_USER",
    "APS_APS_LOADER_PASSWORD",
    "APS_S3_ACCESS_KEY",
    "APS_S3_SECRET_KEY",
    "APS_TRINO_USER",
    "APS_TRINO_PASSWORD",
)
# The MES source, by its engine (APS_SOURCE_ENGINE, docs/sources.md): where and as whom.
SOURCE_NEEDS = {
    "postgresql": (
        "APS_SOURCE_PG_HOST|APS_PG_HOST",
        "APS_SOURCE_PG_PORT|APS_PG_PORT",
        "APS_MES_DB",
        "APS_MES_READER_USER",
        "APS_MES_READER_PASSWORD",
    ),
    "other": (
        "APS_SOURCE_HOST",
        "APS_SOURCE_PORT",
        "APS_SOURCE_DB",
        "APS_SOURCE_USER",
        "APS_SOURCE_PASSWORD",
    ),
}
# What each role reads (those with the pipeline's settings, the source's too: role_needs).
# The daemon launches every run's container and hands it the pipeline's settings
# (DockerRunLauncher's env_vars); the code server builds each run's execution plan, which
# resolves every EnvVar of the resources' config.
ROLE_NEEDS: dict[str, tuple[str, ...]] = {
    "code-server": DAGSTER_STORAGE + ENDPOINTS + CREDENTIALS,
    "webserver": DAGSTER_STORAGE,
    "daemon": DAGSTER_STORAGE + ENDPOINTS + CREDENTIALS,
    "run": DAGSTER_STORAGE + ENDPOINTS + CREDENTIALS,
    "other": (),
}
FORBIDDEN = (
    "APS_PG_SUPERUSER_PASSWORD",
    "APS_MES_OWNER_PASSWORD",
    "POSTGRES_PASSWORD",
    "APS_MINIO_ROOT_PASSWORD",
    "MINIO_ROOT_PASSWORD",
    # Trino's own: with the nodes' shared secret a process could sign internal requests
    "APS_TRINO_SHARED_SECRET_KEY",
    "APS_APS_STAGE_WRITER_PASSWORD",
)


class StartRefused(Exception):
    pass


def role_of(command: Sequence[str]) -> str:
    name = Path(command[0]).name if command else ""
    args = list(command[1:])
    if name == "dagster-webserver":
        return "webserver"
    if name == "dagster-daemon":
        return "daemon"
    if name == "dagster" and args[:1] == ["code-server"]:
        return "code-server"
    if name == "dagster" and args[:1] == ["api"]:
        return "run"  # execute_run, resume_run, execute_step: a run worker
    return "other"


def role_needs(role: str, env: Mapping[str, str]) -> tuple[str, ...]:
    """The settings a role needs; a role with the pipeline's settings needs the source's
    too, as its engine names them."""
    needs = ROLE_NEEDS[role]
    if role in ("code-server", "daemon", "run"):
        engine = (env.get("APS_SOURCE_ENGINE") or "postgresql").strip().lower()
        needs += SOURCE_NEEDS["postgresql" if engine == "postgresql" else "other"]
    return needs


def _missing(needs: Sequence[str], env: Mapping[str, str]) -> list[str]:
    # "A|B": either is enough (the source's own host, or the shared one)
    return [n for n in needs if not any(env.get(alt) for alt in n.split("|"))]


def check_settings(command: Sequence[str], env: Mapping[str, str]) -> str:
    """The container's role; StartRefused naming the variable when a setting is wrong."""
    aps_env = env.get("APS_ENV", "local")
    if aps_env not in ("local", "dev", "prod"):
        raise StartRefused(f"APS_ENV={aps_env!r} is not one of local, dev, prod")
    if aps_env == "local" and env.get("APS_ALLOW_LOCAL") != "1":
        raise StartRefused(
            "APS_ENV=local keeps its databases and lake inside this container, lost with it; "
            "set APS_ENV=dev or prod (or APS_ALLOW_LOCAL=1 for a throwaway container)"
        )
    role = role_of(command)
    # Dagster's roles only: a one-shot setup command (minio-init) needs MinIO's root
    leaked = [n for n in FORBIDDEN if env.get(n)] if role != "other" else []
    if leaked and aps_env != "local":
        raise StartRefused(
            f"{', '.join(leaked)} must not reach a Dagster container (the database's own "
            "container needs it, the pipeline does not)"
        )
    if aps_env == "local":
        return role
    missing = _missing(role_needs(role, env), env)
    if missing:
        names = ", ".join(m.replace("|", " or ") for m in missing)
        raise StartRefused(f"the {role} container needs {names}: not set")
    found = plaintext_settings(env) if aps_env == "prod" else []
    if found:
        raise StartRefused("APS_ENV=prod refuses unencrypted connections: " + "; ".join(found))
    for name in ("APS_DAGSTER_PG_SSLROOTCERT",):
        path = env.get(name)
        if path and not Path(path).is_file():
            raise StartRefused(f"{name}={path}: no such file")
    return role


def dagster_storage_url(env: Mapping[str, str]) -> str:
    """The SQLAlchemy URL of Dagster's storage, from its own settings."""
    user = quote(env["APS_DAGSTER_PG_USER"], safe="")
    password = quote(env["APS_DAGSTER_PG_PASSWORD"], safe="")
    host, port = env["APS_DAGSTER_PG_HOST"], env.get("APS_DAGSTER_PG_PORT", "5432")
    database = env.get("APS_DAGSTER_PG_DB", "dagster")
    params = {
        k: v
        for k, v in (
            ("sslmode", env.get("APS_DAGSTER_PG_SSLMODE")),
            ("sslrootcert", env.get("APS_DAGSTER_PG_SSLROOTCERT")),
        )
        if v
    }
    query = f"?{urlencode(params)}" if params else ""
    return f"postgresql+psycopg2://{user}:{password}@{host}:{port}/{database}{query}"


def reach_dagster_storage(env: Mapping[str, str], wait_s: float = 60.0) -> None:
    """Connect once; refused credentials or certificates are reported, not retried."""
    import psycopg2

    params = {
        "host": env["APS_DAGSTER_PG_HOST"],
        "port": env.get("APS_DAGSTER_PG_PORT", "5432"),
        "dbname": env.get("APS_DAGSTER_PG_DB", "dagster"),
        "user": env["APS_DAGSTER_PG_USER"],
        "password": env["APS_DAGSTER_PG_PASSWORD"],
        "connect_timeout": 5,
    }
    for key in ("sslmode", "sslrootcert"):
        if env.get(f"APS_DAGSTER_PG_{key.upper()}"):
            params[key] = env[f"APS_DAGSTER_PG_{key.upper()}"]
    where = f"{params['host']}:{params['port']}/{params['dbname']}"
    deadline = time.monotonic() + wait_s
    while True:
        try:
            psycopg2.connect(**params).close()
            return
        except psycopg2.OperationalError as e:
            text = str(e)
            # refusals a retry cannot heal (not "SSL SYSCALL error", a restarting server)
            permanent = (
                "password authentication failed",
                "certificate verify failed",
                "root certificate file",
                "server does not support SSL",
                "does not match host name",
                "does not exist",
                "no pg_hba.conf entry",
            )
            if any(p in text for p in permanent):
                first = text.strip().splitlines()[0] if text.strip() else type(e).__name__
                raise StartRefused(f"Dagster's storage at {where} refused us: {first}") from None
            if time.monotonic() > deadline:
                raise StartRefused(f"Dagster's storage at {where} is unreachable") from None
            time.sleep(2)


def main(argv: Sequence[str]) -> int:
    command = list(argv)
    if not command:
        print("container start: no command to run", file=sys.stderr)
        return EXIT_CONFIG
    env = dict(os.environ)
    try:
        role = check_settings(command, env)
        if role != "other" and env.get("APS_DAGSTER_PG_HOST"):
            os.environ["APS_DAGSTER_PG_URL"] = dagster_storage_url(env)
            reach_dagster_storage(env)
    except StartRefused as e:
        from aps_etl.lib.redaction import redact

        print(f"container start refused: {redact(str(e))}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        os.execvp(command[0], command)
    except OSError as e:
        print(f"container start: cannot run {command[0]!r}: {e.strerror}", file=sys.stderr)
        return 127
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
