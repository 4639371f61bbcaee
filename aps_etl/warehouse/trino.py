"""Trino as a Dagster resource (the dev/prod loader's engine)."""

from __future__ import annotations

from typing import Any

import dagster as dg
from pydantic import Field


class TrinoError(RuntimeError):
    """A Trino statement failed; the message names the statement's purpose and cause.
    `error_name` is Trino's own (NOT_FOUND, ALREADY_EXISTS, ...) when it answered one."""

    def __init__(self, message: str, error_name: str | None = None) -> None:
        super().__init__(message)
        self.error_name = error_name


class TrinoResource(dg.ConfigurableResource):
    host: str
    port: int = 8080
    user: str = "aps_etl"
    http_scheme: str = "http"
    password: str | None = Field(default=None, description="set with dg.EnvVar (https only)")
    lake_catalog: str = "lake"
    target_catalog: str = "aps"
    # Lake tables live in schema `<prefix><stage>_<job>`; a prefix keeps test runs apart.
    lake_schema_prefix: str = ""
    request_timeout_s: float = 600.0

    def connect(
        self, session_properties: dict[str, str] | None = None, source: str | None = None
    ) -> Any:
        import trino

        auth = None
        if self.password:
            auth = trino.auth.BasicAuthentication(self.user, self.password)
        return trino.dbapi.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            http_scheme=self.http_scheme,
            auth=auth,
            session_properties=session_properties or {},
            request_timeout=self.request_timeout_s,
            # who sent a query: `aps-etl doctor` finds the queries of dead runs by it
            source=source or "aps-etl",
        )

    def execute(
        self,
        statement: str,
        session_properties: dict[str, str] | None = None,
        source: str | None = None,
    ) -> list[tuple[Any, ...]]:
        from aps_etl.failpoints import failpoint

        connection = self.connect(session_properties, source)
        try:
            cursor = connection.cursor()
            cursor.execute(statement)
            # a kill here: the query runs in Trino, its client is gone (trino.insert, ...)
            failpoint(f"trino.{statement.split(None, 1)[0].lower()}")
            return cursor.fetchall()
        except Exception as exc:
            first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise TrinoError(
                f"Trino at {self.host}:{self.port} failed: {first_line}\nstatement: {statement}",
                getattr(exc, "error_name", None),
            ) from None
        finally:
            connection.close()
