"""A PostgreSQL database reached with ADBC, as a Dagster resource: the source (sources/)
and the target (warehouse/) both connect through it.

Connection settings arrive through dg.EnvVar (dev/prod) or from the embedded server
(local); the password never appears in an error: failures name host, port and database.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import dagster as dg
from pydantic import Field

from aps_etl.lib.redaction import redact

if TYPE_CHECKING:
    from collections.abc import Iterator

    import pyarrow as pa


# What libpq says when connecting failed for good: wrong credentials, a missing database,
# an untrusted or misnamed certificate. Retrying will not heal these.
PERMANENT_CONNECT_MARKERS = (
    "password authentication failed",
    "does not exist",
    "no pg_hba",
    "certificate verify failed",
    "does not match host name",
    "server does not support SSL",
    "root certificate file",
)

# A lost or refused connection, in any of libpq's attempts: transient whatever a later
# attempt says (with sslmode=prefer, a reset TLS attempt is followed by a plain one that
# pg_hba refuses: the reset is the cause).
TRANSIENT_CONNECT_MARKERS = (
    "server closed the connection unexpectedly",
    "Connection refused",
    "Connection reset",
    "SSL SYSCALL error",
    "timeout expired",
    "could not receive data",
    "could not send",
    "not currently accepting connections",
    "the database system is starting up",
    "the database system is shutting down",
    "the database system is in recovery mode",
    "terminating connection",
)


class DatabaseError(RuntimeError):
    """A database problem with its cause named (missing table, unreachable server, ...).
    `transient` ones (the server unreachable) are worth retrying; the rest are not."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient

    def within(self, what: str) -> DatabaseError:
        """The same error, named by what was being done (retryable as it was)."""
        return type(self)(f"{what}: {self}", transient=self.transient)


class PostgresConnection(dg.ConfigurableResource):
    """A PostgreSQL database reached with ADBC. Either host/port/user/password, or
    `embedded_pgdata` for the local environment's embedded server."""

    database: str
    host: str | None = None
    port: int = 5432
    user: str | None = None
    password: str | None = Field(default=None, description="set with dg.EnvVar")
    embedded_pgdata: str | None = Field(
        default=None, description="folder of the embedded PostgreSQL (local environment)"
    )
    sslmode: str | None = Field(
        default=None,
        description="libpq sslmode: verify-full in production (the server's certificate "
        "checked against sslrootcert and its host name); unset: libpq's default (prefer)",
    )
    sslrootcert: str | None = Field(
        default=None, description="CA certificate file the server's certificate must chain to"
    )

    def uri(self) -> str:
        if self.embedded_pgdata:
            from pathlib import Path

            from aps_etl.lib.embedded_postgres import start_embedded_postgres

            return start_embedded_postgres(Path(self.embedded_pgdata)).uri(self.database)
        if not (self.host and self.user):
            raise DatabaseError(f"database {self.database}: host and user must be configured")
        auth = quote(self.user, safe="")
        if self.password:
            auth += ":" + quote(self.password, safe="")
        uri = f"postgresql://{auth}@{self.host}:{self.port}/{quote(self.database, safe='')}"
        tls = {"sslmode": self.sslmode, "sslrootcert": self.sslrootcert}
        query = "&".join(f"{k}={quote(v, safe='/')}" for k, v in tls.items() if v)
        return f"{uri}?{query}" if query else uri

    def describe(self) -> str:
        """Where, without credentials: for messages and metadata."""
        if self.embedded_pgdata:
            return f"embedded PostgreSQL database {self.database!r}"
        tls = f" (sslmode={self.sslmode})" if self.sslmode else ""
        return f"PostgreSQL database {self.database!r} at {self.host}:{self.port}{tls}"

    def open(self, application_name: str | None = None, autocommit: bool = False) -> Any:
        """A new ADBC connection; errors name the database, never the credentials.
        `application_name` is what pg_stat_activity shows of the session."""
        import adbc_driver_postgresql.dbapi as adbc

        uri = self.uri()
        if application_name:
            sep = "&" if "?" in uri else "?"
            uri += f"{sep}application_name={quote(application_name[:63], safe='')}"
        try:
            return adbc.connect(uri, autocommit=autocommit)
        except Exception as exc:  # the driver's message may echo the URI: never re-raise it
            message = redact(str(exc), [self.password])
            # A refused or lost connection may heal; wrong credentials or a missing
            # database will not, so they are not retried.
            permanent = any(marker in message for marker in PERMANENT_CONNECT_MARKERS) and not any(
                marker in message for marker in TRANSIENT_CONNECT_MARKERS
            )
            raise DatabaseError(
                f"cannot connect to {self.describe()}: {message}", transient=not permanent
            ) from None

    @contextmanager
    def connect(self) -> Iterator[Any]:
        connection = self.open()
        try:
            yield connection
        finally:
            connection.close()

    def fetch_arrow(self, sql: str) -> pa.Table:
        with self.connect() as connection, connection.cursor() as cursor:  # type: ignore[attr-defined]
            cursor.execute(sql)
            return cursor.fetch_arrow_table()
