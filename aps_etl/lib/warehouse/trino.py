"""Trino as a Dagster resource (the dev/prod loader's engine).

In dev and prod Trino is reached over HTTPS with a password: `http_scheme` https, the
password from dg.EnvVar, the server's certificate checked against `sslrootcert` (a CA file)
or the system's CAs. A refused password, an untrusted certificate or a scheme that does not
match the server, and an access-control refusal fail at once with the cause named, and are
marked `permanent`: the load's retry policy does not retry what retrying cannot heal.
"""

from __future__ import annotations

from typing import Any

import dagster as dg
from pydantic import Field

from aps_etl.lib.redaction import redact
from aps_etl.lib.trino_session import http_session

# Causes that retrying will not heal, as the client and the server word them; each with
# what the message says about it.
_PERMANENT_CAUSES = (
    (("error 401",), "Trino refused the credentials (HTTP 401): wrong user or password"),
    (
        ("CERTIFICATE_VERIFY_FAILED", "certificate verify failed"),
        "Trino's TLS certificate is not trusted: it does not chain to the CA file "
        "(sslrootcert) or the system's CAs",
    ),
    (
        ("Hostname mismatch", "hostname mismatch", "doesn't match either of"),
        "Trino's TLS certificate is not for this host name",
    ),
    (
        ("WRONG_VERSION_NUMBER", "record layer failure", "wrong version number"),
        "https to a port that speaks plain HTTP: check the port and the scheme",
    ),
    (
        ("cannot use authentication with HTTP", "Authentication over HTTP is not enabled"),
        "Trino takes clients over https only (with a password): set the scheme to https",
    ),
    (
        # a TLS alert record (type 21, version 3.x) where an HTTP status line was expected
        ("BadStatusLine('\\x15\\x03",),
        "plain http to a port that speaks https: set the scheme to https",
    ),
)


class TrinoError(RuntimeError):
    """A Trino statement failed; the message names the statement's purpose and cause.
    `error_name` is Trino's own (NOT_FOUND, ALREADY_EXISTS, PERMISSION_DENIED, ...) when it
    answered one; `permanent` when retrying cannot help (credentials, certificate, scheme,
    access denied)."""

    def __init__(
        self, message: str, error_name: str | None = None, *, permanent: bool = False
    ) -> None:
        super().__init__(message)
        self.error_name = error_name
        self.permanent = permanent


class TrinoResource(dg.ConfigurableResource):
    host: str
    port: int = 8080
    user: str = "aps_etl"
    http_scheme: str = "http"
    password: str | None = Field(default=None, description="set with dg.EnvVar (https only)")
    sslrootcert: str | None = Field(
        default=None,
        description="CA certificate file Trino's HTTPS certificate must chain to (unset: the "
        "system's CAs)",
    )
    lake_catalog: str = "lake"
    target_catalog: str = "aps"
    # Lake tables live in schema `<prefix><stage>_<job>`; a prefix keeps test runs apart.
    lake_schema_prefix: str = ""
    request_timeout_s: float = 600.0

    def describe(self) -> str:
        """Where, without credentials: for messages."""
        return f"Trino at {self.host}:{self.port} ({self.http_scheme}, user {self.user!r})"

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
            http_session=http_session(self.sslrootcert),
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
        from aps_etl.lib.failpoints import failpoint

        connection = None
        try:
            connection = self.connect(session_properties, source)
            cursor = connection.cursor()
            cursor.execute(statement)
            # a kill here: the query runs in Trino, its client is gone (trino.insert, ...)
            failpoint(f"trino.{statement.split(None, 1)[0].lower()}")
            return cursor.fetchall()
        except Exception as exc:
            raise self.error(exc, statement) from None
        finally:
            if connection is not None:
                connection.close()

    def error(self, exc: BaseException, statement: str) -> TrinoError:
        """`exc` as a TrinoError naming its cause, the password never in it."""
        text = redact(str(exc), [self.password])
        first_line = text.splitlines()[0] if text else type(exc).__name__
        error_name = getattr(exc, "error_name", None)
        cause = next(
            (why for markers, why in _PERMANENT_CAUSES if any(m in text for m in markers)),
            None,
        )
        if error_name == "PERMISSION_DENIED":
            cause = f"user {self.user!r} is not allowed to do this (Trino's access control)"
        if cause:
            first_line = f"{cause} [{first_line}]"
        return TrinoError(
            f"{self.describe()} failed: {first_line}\nstatement: {statement}",
            error_name,
            permanent=cause is not None,
        )
