"""The operator's view of a fault in a service (issue 29): one line naming the service, its
endpoint and the cause, no traceback, and an exit status of its own (3), apart from bad
input (2) and a run that failed on its data (1): a database failing over at 6 a.m. is not
the operator's mistake, and a rerun later is the cure."""

from __future__ import annotations

import os

# A service could not be reached or dropped the connection (after the retries).
FAULT_EXIT = 3


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return (text.splitlines() or [type(exc).__name__])[0][:300]


def _dagster_storage() -> str:
    host = os.environ.get("APS_DAGSTER_PG_HOST")
    if host:
        return f"PostgreSQL at {host}:{os.environ.get('APS_DAGSTER_PG_PORT', '5432')}"
    return f"under {os.environ.get('DAGSTER_HOME', '$DAGSTER_HOME')}"


def describe(exc: BaseException) -> str | None:
    """One line for an exception a service's fault raised, else None (not a fault)."""
    from aps_etl.lib.failure_kind import kind_of

    if kind_of(exc) != "transient":
        return None
    from aps_etl.lib.redaction import redact

    names = {cls.__name__ for cls in type(exc).__mro__}
    module = type(exc).__module__
    if module.startswith(("sqlalchemy", "dagster_postgres")) or "DagsterPostgresException" in names:
        where = f"Dagster's instance storage ({_dagster_storage()})"
    elif module.startswith(("botocore", "aiobotocore", "s3fs", "aiohttp")):
        where = f"the lake ({os.environ.get('APS_S3_ENDPOINT') or 'S3'})"
    else:  # the project's own errors name their service and endpoint themselves
        where = ""
    cause = redact(_first_line(exc), [])
    text = f"{where}: {cause}" if where else cause
    return f"{text} (a service's fault, not the input: run the command again once it is back)"
