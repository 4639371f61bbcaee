"""Environments: one variable (`APS_ENV`) selects a complete set of resources.

| env             | source / target            | lake          | loader    |
| local (default) | embedded PostgreSQL        | local folder  | ADBC COPY |
| dev             | PostgreSQL from infra/     | MinIO         | Trino     |
| prod            | from the environment       | AWS S3        | Trino     |

Secrets are read only through dg.EnvVar, so Dagster shows the variable's name, never
its value. In `dev` the variables come from the stack's env file (`infra/stack up`).
"""

from __future__ import annotations

import os
from typing import Any

import dagster as dg
from dagster_duckdb import DuckDBResource

from aps_etl.env.embedded import SOURCE_DB, TARGET_DB, local_home
from aps_etl.env.transport import refuse_plaintext_in_prod
from aps_etl.lib.errors import ConfigurationError
from aps_etl.lib.lake import LakeIOManagerFactory, LakeResource
from aps_etl.lib.postgres import PostgresConnection
from aps_etl.lib.run_lock import RunLock
from aps_etl.lib.sources.database import SourceDatabase
from aps_etl.lib.warehouse.loaders import TargetLoader
from aps_etl.lib.warehouse.trino import TrinoResource

ENVIRONMENTS = ("local", "dev", "prod")


def current_environment() -> str:
    env = os.environ.get("APS_ENV", "local")
    if env not in ENVIRONMENTS:
        raise ConfigurationError(f"APS_ENV={env!r} is not one of {', '.join(ENVIRONMENTS)}")
    return env


def _required(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise ConfigurationError(f"environment variable {name} is not set (APS_ENV needs it)")
    return value


def _env_int(name: str) -> int:
    value = _required(name)
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ConfigurationError(f"{name} must be an integer port number") from None


SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


def _postgres_endpoint(role: str) -> dict[str, Any]:
    """Host, port and TLS of the source or the target: APS_<ROLE>_PG_HOST / _PORT /
    _SSLMODE / _SSLROOTCERT, each falling back to the shared APS_PG_* (one server in dev;
    in production the MES and the APS database are usually different servers)."""

    def setting(name: str) -> str | None:
        return os.environ.get(f"APS_{role}_PG_{name}") or os.environ.get(f"APS_PG_{name}")

    host, port = setting("HOST"), setting("PORT")
    if not host or not port:
        raise ConfigurationError(
            f"set APS_{role}_PG_HOST and APS_{role}_PG_PORT (or the shared APS_PG_HOST and "
            "APS_PG_PORT)"
        )
    sslmode, rootcert = setting("SSLMODE"), setting("SSLROOTCERT")
    if sslmode and sslmode not in SSLMODES:
        raise ConfigurationError(f"APS_{role}_PG_SSLMODE={sslmode!r}: one of {SSLMODES}")
    if rootcert and not os.path.isfile(rootcert):
        raise ConfigurationError(
            f"APS_{role}_PG_SSLROOTCERT (or APS_PG_SSLROOTCERT): no CA file at {rootcert}"
        )
    if sslmode in ("verify-ca", "verify-full") and not rootcert:
        raise ConfigurationError(
            f"sslmode {sslmode} for the {role.lower()} needs APS_{role}_PG_SSLROOTCERT "
            "(or APS_PG_SSLROOTCERT): the CA its certificate must chain to"
        )
    try:
        number = int(port)
    except ValueError:
        raise ConfigurationError(f"APS_{role}_PG_PORT={port!r} is not a port number") from None
    return {"host": host, "port": number, "sslmode": sslmode, "sslrootcert": rootcert}


HTTP_SCHEMES = ("http", "https")


def _trino(env: str) -> TrinoResource:
    """Trino's endpoint, user and security: APS_TRINO_HTTP_SCHEME (https when a password is
    set), APS_TRINO_PASSWORD (a dg.EnvVar; required in prod), APS_TRINO_SSLROOTCERT (the CA
    file its certificate must chain to; unset: the system's CAs). Checked here, so a bad
    setting stops the process at start with the variable's name."""
    password = os.environ.get("APS_TRINO_PASSWORD")
    if env == "prod" and not password:
        _required("APS_TRINO_PASSWORD")
    scheme = os.environ.get("APS_TRINO_HTTP_SCHEME") or ("https" if password else "http")
    if scheme not in HTTP_SCHEMES:
        raise ConfigurationError(f"APS_TRINO_HTTP_SCHEME={scheme!r}: one of {HTTP_SCHEMES}")
    if password and scheme != "https":
        raise ConfigurationError(
            "APS_TRINO_PASSWORD is set but APS_TRINO_HTTP_SCHEME is http: Trino takes a "
            "password over https only"
        )
    rootcert = os.environ.get("APS_TRINO_SSLROOTCERT")
    if rootcert and not os.path.isfile(rootcert):
        raise ConfigurationError(f"APS_TRINO_SSLROOTCERT: no CA file at {rootcert}")
    if rootcert and scheme != "https":
        raise ConfigurationError("APS_TRINO_SSLROOTCERT is set but APS_TRINO_HTTP_SCHEME is http")
    return TrinoResource(
        host=_required("APS_TRINO_HOST"),
        port=_env_int("APS_TRINO_PORT"),
        user=dg.EnvVar("APS_TRINO_USER"),
        http_scheme=scheme,
        password=dg.EnvVar("APS_TRINO_PASSWORD") if password else None,
        sslrootcert=rootcert,
        lake_schema_prefix=os.environ.get("APS_TRINO_LAKE_SCHEMA_PREFIX", ""),
    )


# The stack's MariaDB, for a dev run with APS_SOURCE_ENGINE=mariadb (or mysql): the
# APS_SOURCE_* settings it fills when they are not set.
_STACK_MARIADB = {
    "APS_SOURCE_HOST": "APS_MARIADB_HOST",
    "APS_SOURCE_PORT": "APS_MARIADB_PORT",
    "APS_SOURCE_DB": "APS_MARIADB_DB",
    "APS_SOURCE_USER": "APS_MARIADB_READER_USER",
    "APS_SOURCE_PASSWORD": "APS_MARIADB_READER_PASSWORD",
    "APS_SOURCE_SSLROOTCERT": "APS_MARIADB_SSLROOTCERT",
}
SOURCE_TLS = ("disable", "require", "verify-ca", "verify-full")


def source_database(env: str) -> SourceDatabase:
    """The MES source on the engine APS_SOURCE_ENGINE names (default postgresql).

    PostgreSQL: APS_MES_DB, APS_MES_READER_USER / _PASSWORD and APS_SOURCE_PG_* (or the
    shared APS_PG_*), as before. Any other engine: APS_SOURCE_HOST, _PORT, _DB, _USER,
    _PASSWORD, _TLS (verify-full when APS_SOURCE_SSLROOTCERT is set, else require),
    _SSLROOTCERT, _TIME_ZONE (its timestamps' zone, default +09:00) and _ODBC_DRIVER; in
    dev the stack's MariaDB fills what is not set. Credentials are dg.EnvVar: Dagster shows
    their names, never their values. An unknown engine is refused here, by name."""
    from aps_etl.lib.sources.engines.registry import engine_for

    name = (os.environ.get("APS_SOURCE_ENGINE") or "postgresql").strip().lower()
    zone = os.environ.get("APS_SOURCE_TIME_ZONE") or None
    try:
        engine_for(name, zone)
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from None
    if name == "postgresql":
        return SourceDatabase(
            database=dg.EnvVar("APS_MES_DB"),
            user=dg.EnvVar("APS_MES_READER_USER"),
            password=dg.EnvVar("APS_MES_READER_PASSWORD"),
            **_postgres_endpoint("SOURCE"),
        )
    if env == "dev" and name in ("mariadb", "mysql"):
        for variable, stack_variable in _STACK_MARIADB.items():
            if not os.environ.get(variable) and os.environ.get(stack_variable):
                os.environ[variable] = os.environ[stack_variable]
    host, port = _required("APS_SOURCE_HOST"), _env_int("APS_SOURCE_PORT")
    _required("APS_SOURCE_DB")
    rootcert = os.environ.get("APS_SOURCE_SSLROOTCERT") or None
    tls = os.environ.get("APS_SOURCE_TLS") or ("verify-full" if rootcert else "require")
    if tls not in SOURCE_TLS:
        raise ConfigurationError(f"APS_SOURCE_TLS={tls!r}: one of {', '.join(SOURCE_TLS)}")
    if rootcert and not os.path.isfile(rootcert):
        raise ConfigurationError(f"APS_SOURCE_SSLROOTCERT: no CA file at {rootcert}")
    if tls in ("verify-ca", "verify-full") and not rootcert:
        raise ConfigurationError(
            f"APS_SOURCE_TLS={tls} needs APS_SOURCE_SSLROOTCERT: the CA the source's "
            "certificate must chain to"
        )
    return SourceDatabase(
        engine=name,
        time_zone=zone,
        odbc_driver=os.environ.get("APS_SOURCE_ODBC_DRIVER") or None,
        database=dg.EnvVar("APS_SOURCE_DB"),
        user=dg.EnvVar("APS_SOURCE_USER"),
        password=dg.EnvVar("APS_SOURCE_PASSWORD"),
        host=host,
        port=port,
        sslmode=tls,
        sslrootcert=rootcert,
    )


def resources_for(env: str | None = None) -> dict[str, Any]:
    env = env or current_environment()
    if env == "local":
        engine = (os.environ.get("APS_SOURCE_ENGINE") or "postgresql").strip().lower()
        if engine != "postgresql":
            raise ConfigurationError(
                f"APS_SOURCE_ENGINE={engine}: APS_ENV=local reads its embedded PostgreSQL "
                "source; another engine needs APS_ENV=dev (the stack) or prod"
            )
        home = local_home()
        pgdata = str(home / "postgres")
        lake = LakeResource(root=os.environ.get("APS_LAKE_ROOT") or str(home / "lake"))
        source = SourceDatabase(database=SOURCE_DB, embedded_pgdata=pgdata)
        target = PostgresConnection(database=TARGET_DB, embedded_pgdata=pgdata)
        trino = None
    else:
        if env == "dev":
            from aps_etl.env.stack import export_stack_env

            export_stack_env()
        else:  # prod: nothing crosses the network in the clear (env/transport.py)
            refuse_plaintext_in_prod({**os.environ, "APS_ENV": "prod"})
        lake = LakeResource(
            # APS_LAKE_ROOT may add a prefix inside the bucket (tests use their own).
            root=os.environ.get("APS_LAKE_ROOT") or "s3://" + _required("APS_S3_BUCKET"),
            s3_endpoint=os.environ.get("APS_S3_ENDPOINT"),
            s3_region=os.environ.get("APS_S3_REGION", "us-east-1"),
            s3_access_key=dg.EnvVar("APS_S3_ACCESS_KEY"),
            s3_secret_key=dg.EnvVar("APS_S3_SECRET_KEY"),
        )
        source = source_database(env)
        target = PostgresConnection(
            database=dg.EnvVar("APS_APS_DB"),
            user=dg.EnvVar("APS_APS_LOADER_USER"),
            password=dg.EnvVar("APS_APS_LOADER_PASSWORD"),
            **_postgres_endpoint("TARGET"),
        )
        trino = _trino(env)
    batch = int(os.environ.get("APS_LOAD_BATCH_SIZE", "10000"))
    return {
        # The plan-vs-actual joins run in an in-process DuckDB reading the lake in place.
        "duckdb": DuckDBResource(database=":memory:"),
        "lake": lake,
        "io_manager": LakeIOManagerFactory(lake=lake, run_lock=RunLock(target=target)),
        "source": source,
        "loader": TargetLoader(
            target=target,
            lake=lake,
            trino=trino,
            batch_size=batch,
            writers=int(os.environ.get("APS_LOAD_WRITERS", "4")),
            # how long a reload waits for readers (docs/reliability.md)
            lock_timeout_ms=int(os.environ.get("APS_SWAP_LOCK_TIMEOUT_MS", "2000")),
            swap_budget_s=float(os.environ.get("APS_SWAP_BUDGET_S", "120")),
        ),
    }
