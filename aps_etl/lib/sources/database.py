"""The source RDB as a Dagster resource: ADBC to Arrow, no row-by-row Python.

Connection settings arrive through dg.EnvVar (dev/prod) or from the embedded server
(local); the password never appears in an error: failures name host, port and database.
"""

from __future__ import annotations

import datetime as dt
import re
import threading
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING, Any

import dagster as dg
import polars as pl
from pydantic import Field, PrivateAttr

from aps_etl.lib.postgres import DatabaseError, PostgresConnection
from aps_etl.lib.redaction import redact
from aps_etl.lib.sources.specs import ExtractSpec

if TYPE_CHECKING:
    from collections.abc import Iterator

    import pyarrow as pa


# Source connections kept for reuse (a few extracts or fingerprint queries run at once).
IDLE_CONNECTIONS = 4


# A source problem is a database problem with its cause named (aps_etl.lib.postgres).
SourceError = DatabaseError


class SourceDatabase(PostgresConnection):
    """The MES source. Its connections are kept for reuse while the resource lives (a
    step, a sensor tick, a command): setting one up costs ~45 ms, more than most
    fingerprint queries. Only read transactions use them, each ended with a rollback; a
    connection that saw an error is closed, never reused."""

    _idle: list[Any] = PrivateAttr(default_factory=list)
    _idle_lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    parallel_extracts: int = Field(
        default=3,
        description="extracts of a job run at once (each its own connection): the source "
        "answers one query while the lake takes the previous one's Parquet. Each holds one "
        "extracted table in memory until it is written",
    )

    def extract(
        self,
        spec: ExtractSpec,
        start: dt.datetime | None = None,
        end: dt.datetime | None = None,
        *,
        key: str | None = None,
    ) -> pl.DataFrame:
        """Rows of `spec` for the window [start, end) or the key, typed exactly as declared."""
        with self.consistent_reads(spec) as read:
            return read.rows(spec.select_sql(start, end, key=key))

    @contextmanager
    def connect(self) -> Iterator[Any]:
        with self._idle_lock:
            connection = self._idle.pop() if self._idle else None
        connection = connection or self.open()
        try:
            yield connection
        except BaseException:
            with suppress(Exception):
                connection.close()
            raise
        try:
            connection.rollback()  # nothing of this use carries over to the next
        except Exception:
            with suppress(Exception):
                connection.close()
            return
        with self._idle_lock:
            if len(self._idle) < IDLE_CONNECTIONS:
                self._idle.append(connection)
                return
        connection.close()

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        # a pool of this execution's own (a step, a sensor tick); its idle connections
        # close when it is let go
        self._idle = []
        self._idle_lock = threading.Lock()

    @contextmanager
    def consistent_reads(self, spec: ExtractSpec) -> Iterator[ConsistentReads]:
        """Queries about one spec that all see the same state of the source: one
        REPEATABLE READ, read-only transaction (a fingerprint and the rows it describes
        agree even while the MES writes), in UTC (timestamps render alike everywhere)."""
        with self.connect() as connection, connection.cursor() as cursor:
            try:
                cursor.execute("set transaction isolation level repeatable read, read only")
                cursor.execute("set local timezone = 'UTC'")
            except Exception as exc:
                raise _source_error(spec, self, exc) from None
            try:
                yield ConsistentReads(cursor, spec, self)
            finally:
                with suppress(Exception):  # a lost connection has nothing to roll back
                    connection.rollback()


class ConsistentReads:
    """The queries of one `consistent_reads` transaction."""

    def __init__(self, cursor: object, spec: ExtractSpec, db: SourceDatabase) -> None:
        self._cursor, self._spec, self._db = cursor, spec, db

    def arrow(self, sql: str) -> pa.Table:
        try:
            self._cursor.execute(sql)  # type: ignore[attr-defined]
            return self._cursor.fetch_arrow_table()  # type: ignore[attr-defined]
        except Exception as exc:
            raise _source_error(self._spec, self._db, exc) from None

    def rows(self, sql: str) -> pl.DataFrame:
        """The spec's rows from `sql`, typed exactly as declared."""
        frame = pl.from_arrow(self.arrow(sql))
        assert isinstance(frame, pl.DataFrame)  # from a table, never a single column
        return frame.cast(self._spec.polars_schema())


def _source_error(spec: ExtractSpec, db: PostgresConnection, exc: Exception) -> SourceError:
    if isinstance(exc, SourceError):
        return exc
    message = str(exc)
    return SourceError(_explain(spec, db, message), transient=is_transient(message))


# What a driver says when the connection was lost or the server went away: worth a retry.
# SQL errors are not.
_TRANSIENT_MARKERS = ("IO:", "server closed", "terminating connection", "Connection refused")


def is_transient(message: str) -> bool:
    return any(marker in message for marker in _TRANSIENT_MARKERS)


def _explain(spec: ExtractSpec, db: PostgresConnection, message: str) -> str:
    message = redact(message, [db.password])
    missing = re.search(r'relation "([^"]+)" does not exist', message)
    if missing:
        return (
            f"extract {spec.name}: source table {missing.group(1)!r} does not exist in "
            f"{db.describe()}"
        )
    missing_column = re.search(r"column (\S+) does not exist", message)
    if missing_column:
        return (
            f"extract {spec.name}: column {missing_column.group(1)} declared by the spec does "
            f"not exist in {spec.source_table} ({db.describe()}): the source schema drifted"
        )
    if "hash_record_extended" in message and "does not exist" in message:
        return (
            f"extract {spec.name}: {db.describe()} has no hash_record_extended(): source "
            "fingerprints need PostgreSQL 14 or later"
        )
    return f"extract {spec.name} failed on {db.describe()}: {message.splitlines()[0]}"
