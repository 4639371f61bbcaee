"""The source RDB as a Dagster resource: Arrow straight from the driver, no row-by-row
Python, on the engine the setting names (engines/: PostgreSQL through ADBC, MariaDB/MySQL
through arrow-odbc, Oracle, SQL Server).

Connection settings arrive through dg.EnvVar (dev/prod) or from the embedded server
(local); the password never appears in an error: failures name the engine, host, port and
database.
"""

from __future__ import annotations

import datetime as dt
import threading
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING, Any

import dagster as dg
import polars as pl
from pydantic import Field, PrivateAttr

from aps_etl.lib.postgres import TRANSIENT_CONNECT_MARKERS, DatabaseError, PostgresConnection
from aps_etl.lib.redaction import redact
from aps_etl.lib.sources.dialect import SqlDialect
from aps_etl.lib.sources.engines.base import Endpoint, Session, SourceEngine
from aps_etl.lib.sources.engines.registry import engine_for
from aps_etl.lib.sources.specs import ExtractSpec

if TYPE_CHECKING:
    from collections.abc import Iterator

    import pyarrow as pa


# Source connections kept for reuse (a few extracts or fingerprint queries run at once).
IDLE_CONNECTIONS = 4


# A source problem is a database problem with its cause named (aps_etl.lib.postgres).
SourceError = DatabaseError


class SourceDatabase(PostgresConnection):
    """The MES source, on the engine `engine` names. Its connections are kept for reuse
    while the resource lives (a step, a sensor tick, a command): setting one up costs
    ~45 ms, more than most
    fingerprint queries. Only read transactions use them, each ended with a rollback; a
    connection that saw an error is closed, never reused."""

    _idle: list[Session] = PrivateAttr(default_factory=list)
    _idle_lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    engine: str = Field(
        default="postgresql",
        description="the source's engine: postgresql, mariadb, mysql, oracle or sqlserver "
        "(APS_SOURCE_ENGINE)",
    )
    time_zone: str | None = Field(
        default=None,
        description="the zone of a wall-clock source's timestamps (MariaDB DATETIME, ...): "
        "+09:00 or Asia/Seoul; default the plant's +09:00. PostgreSQL's timestamptz are "
        "instants and ignore it (APS_SOURCE_TIME_ZONE)",
    )
    odbc_driver: str | None = Field(
        default=None,
        description="the ODBC driver's name in odbcinst.ini, for engines read through ODBC "
        "(default: Debian's MariaDB driver, Microsoft's ODBC Driver 18 for SQL Server)",
    )
    parallel_extracts: int = Field(
        default=3,
        description="extracts of a job run at once (each its own connection): the source "
        "answers one query while the lake takes the previous one's Parquet. Each holds one "
        "extracted table in memory until it is written",
    )

    @property
    def source_engine(self) -> SourceEngine:
        engine = engine_for(self.engine, self.time_zone)
        if self.odbc_driver and hasattr(engine, "driver"):
            engine.driver = self.odbc_driver
        return engine

    @property
    def dialect(self) -> SqlDialect:
        return self.source_engine.dialect

    def describe(self) -> str:
        """Where, without credentials: for messages and metadata."""
        engine = self.source_engine
        if engine.name == "PostgreSQL":
            return super().describe()
        tls = f" (tls {self.sslmode})" if self.sslmode else ""
        return f"{engine.name} database {self.database!r} at {self.host}:{self.port}{tls}"

    def open(self) -> Session:  # type: ignore[override]
        """A new session on the source; errors name the source, never the credentials."""
        engine = self.source_engine
        try:
            endpoint = Endpoint(
                database=self.database,
                host=self.host,
                port=self.port,
                user=self.user,
                password=self.password,
                tls=self.sslmode,
                ca_file=self.sslrootcert,
                uri=self.uri() if engine.name == "PostgreSQL" else None,
            )
            return engine.open(endpoint)
        except DatabaseError:
            raise
        except ImportError as exc:
            raise DatabaseError(
                f"cannot connect to {self.describe()}: its driver is not installed ({exc}); "
                "see docs/sources.md"
            ) from None
        except Exception as exc:  # the driver's message may echo the URI: never re-raise it
            message = redact(str(exc), [self.password])
            # a lost or refused attempt is the cause, whatever a later attempt says
            permanent = any(m in message for m in engine.permanent_connect_markers) and not any(
                m in message for m in TRANSIENT_CONNECT_MARKERS
            )
            first = " ".join(message.split())
            raise DatabaseError(
                f"cannot connect to {self.describe()}: {first}", transient=not permanent
            ) from None

    def fetch_arrow(self, sql: str) -> pa.Table:
        """One query's result; a failure names the source and the driver's cause in one
        line, never the credentials."""
        with self.connect() as session:
            try:
                return session.arrow(sql)
            except Exception as exc:
                message = redact(str(exc), [self.password])
                raise SourceError(
                    f"query on {self.describe()} failed: {' '.join(message.split())[:500]}",
                    transient=self.source_engine.is_transient(message),
                ) from None

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
            return read.rows(read.select_sql(spec, start, end, key=key))

    @contextmanager
    def connect(self) -> Iterator[Session]:  # type: ignore[override]
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
        read-only snapshot transaction (a fingerprint and the rows it describes agree even
        while the MES writes), timestamps rendered as the engine's dialect expects."""
        with self.connect() as session:
            try:
                for statement in self.source_engine.consistent_read_statements():
                    session.execute(statement)
            except Exception as exc:
                raise _source_error(spec, self, exc) from None
            try:
                yield ConsistentReads(session, spec, self)
            finally:
                with suppress(Exception):  # a lost connection has nothing to roll back
                    session.rollback()


class ConsistentReads:
    """The queries of one `consistent_reads` transaction."""

    def __init__(self, session: Session, spec: ExtractSpec, db: SourceDatabase) -> None:
        self._session, self._spec, self._db = session, spec, db
        self.engine = db.source_engine

    def select_sql(
        self,
        spec: ExtractSpec,
        start: dt.datetime | None = None,
        end: dt.datetime | None = None,
        **kwargs: Any,
    ) -> str:
        """`spec`'s extract query in this source's dialect (ExtractSpec.select_sql)."""
        return spec.select_sql(start, end, dialect=self.engine.dialect, **kwargs)

    def arrow(self, sql: str) -> pa.Table:
        try:
            return self._session.arrow(sql)
        except Exception as exc:
            raise _source_error(self._spec, self._db, exc) from None

    def rows(self, sql: str) -> pl.DataFrame:
        """The spec's rows from `sql`, typed exactly as declared (UTC instants)."""
        table = self.arrow(sql)
        try:
            return self.engine.declared(table, self._spec)
        except Exception as exc:  # a value the declared type cannot hold: name the spec
            raise SourceError(
                f"extract {self._spec.name}: a source value does not fit its declared type "
                f"({' '.join(str(exc).split())[:300]})"
            ) from None


def _source_error(spec: ExtractSpec, db: SourceDatabase, exc: Exception) -> SourceError:
    if isinstance(exc, SourceError):
        return exc
    message = str(exc)
    transient = db.source_engine.is_transient(message)
    return SourceError(_explain(spec, db, message), transient=transient)


def is_transient(message: str) -> bool:
    """Whether any engine's driver says the connection was lost or refused (worth a
    retry); SQL errors are not."""
    from aps_etl.lib.sources.engines.mariadb import MariaDB
    from aps_etl.lib.sources.engines.postgres import POSTGRES

    return POSTGRES.is_transient(message) or any(
        marker in message for marker in MariaDB.transient_markers
    )


def _explain(spec: ExtractSpec, db: SourceDatabase, message: str) -> str:
    message = redact(message, [db.password])
    found = db.source_engine.explain(message)
    if found and found[0] == "table":
        return f"extract {spec.name}: source table {found[1]!r} does not exist in {db.describe()}"
    if found and found[0] == "column":
        return (
            f"extract {spec.name}: column {found[1]} declared by the spec does "
            f"not exist in {spec.source_table} ({db.describe()}): the source schema drifted"
        )
    if "hash_record_extended" in message and "does not exist" in message:
        return (
            f"extract {spec.name}: {db.describe()} has no hash_record_extended(): source "
            "fingerprints need PostgreSQL 14 or later"
        )
    first = " ".join(message.split())[:500]
    return f"extract {spec.name} failed on {db.describe()}: {first}"
