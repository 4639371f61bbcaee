"""What every source engine supplies (one module each: postgres.py, mariadb.py, oracle.py,
sqlserver.py), and the neutral parts they share.

An engine is pure SQL generation plus a thin session: everything above it (snapshots,
change detection, drift policy, guards) is written once. Its SQL is checked in unit tests
without a server (sqlglot parses it back in the engine's dialect); the sessions of the
engines this machine can run (PostgreSQL, MariaDB) are tested against real servers.
"""

from __future__ import annotations

import datetime as dt
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import polars as pl

from aps_etl.lib.sources.dialect import SqlDialect, WallClock
from aps_etl.lib.sources.source_types import SourceType

if TYPE_CHECKING:
    import pyarrow as pa

    from aps_etl.lib.sources.specs import ExtractSpec


class Session(Protocol):
    """One open connection of an engine: statements, Arrow results, and its transaction."""

    def execute(self, sql: str) -> None: ...

    def arrow(self, sql: str) -> pa.Table: ...

    def rollback(self) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Endpoint:
    """Where a source is and who reads it: what an engine's `open` needs (the password
    stays here and in the driver, never in a message)."""

    database: str
    host: str | None
    port: int | None
    user: str | None
    password: str | None
    tls: str | None  # disable | require | verify-ca | verify-full (libpq's names)
    ca_file: str | None
    uri: str | None = None  # PostgreSQL: a ready URI (the embedded server's)


class SourceEngine(ABC):
    """An engine family. Subclasses set `dialect` and implement the abstract methods."""

    dialect: SqlDialect
    default_port: int | None = None
    # the first words of the messages of a lost or refused connection: worth a retry
    transient_markers: tuple[str, ...] = ()
    # connect failures that retrying cannot heal (credentials, certificates, no database)
    permanent_connect_markers: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.dialect.name

    # --- the session -----------------------------------------------------------------

    @abstractmethod
    def open(self, endpoint: Endpoint) -> Session:
        """A new session; raises the driver's error (the caller names the source)."""

    @abstractmethod
    def consistent_read_statements(self) -> list[str]:
        """Run first in a session: one read-only transaction whose queries all see the same
        state of the source, with timestamps rendered as the dialect expects."""

    # --- SQL ---------------------------------------------------------------------------

    @abstractmethod
    def fingerprint_sql(self, spec: ExtractSpec, select_sql: str, bucket: str | None = None) -> str:
        """(count, max updated_at, checksum as text) of the rows `select_sql` yields, or one
        such row per `bucket` (a SQL expression over the query's columns `f`), bucket first."""

    @abstractmethod
    def rows_hash_sql(self, spec: ExtractSpec, rows: pl.DataFrame) -> str:
        """The sum of the row hashes of `rows` (primary key and updated_at), computed by the
        source from literals of the declared types, as `fingerprint_sql` hashes them."""

    @abstractmethod
    def day_bucket(self, spec: ExtractSpec, plant_offset: dt.timedelta) -> str:
        """SQL for the business day (a date) of an incremental spec's partition column."""

    @abstractmethod
    def table_columns(
        self, session: Session, table: str, schema: str | None
    ) -> list[tuple[str, SourceType]] | None:
        """A table's columns in order with their types in the neutral names of
        source_types.py; None when there is no such table."""

    @abstractmethod
    def query_columns(self, session: Session, sql: str) -> list[tuple[str, SourceType]]:
        """The columns a query yields, without reading its rows."""

    @abstractmethod
    def explain(self, message: str) -> tuple[str, str] | None:
        """("table", name) or ("column", name) when the driver's message says a table or
        a column does not exist; None otherwise."""

    # --- values ------------------------------------------------------------------------

    def is_transient(self, message: str) -> bool:
        return any(marker in message for marker in self.transient_markers)

    def to_utc(self, value: dt.datetime | None) -> dt.datetime | None:
        """A timestamp the source returned, as a UTC instant (naive ones are the source's
        wall clock for WallClock engines, UTC for the others)."""
        if value is None:
            return None
        if value.tzinfo is None:
            zone = self.dialect.time_zone if isinstance(self.dialect, WallClock) else dt.UTC
            value = value.replace(tzinfo=zone)
        return value.astimezone(dt.UTC)

    def declared(self, table: pa.Table, spec: ExtractSpec) -> pl.DataFrame:
        """The extracted Arrow table as the spec's declared types. A wall-clock timestamp is
        localized in the source's zone and converted to UTC; a time that does not exist or
        is ambiguous there (a DST change) is refused by name rather than guessed."""
        frame = pl.from_arrow(table)
        assert isinstance(frame, pl.DataFrame)  # from a table, never a single column
        if isinstance(self.dialect, WallClock):
            from aps_etl.lib.sources.dialect import zone_name

            zone = zone_name(self.dialect.time_zone)
            frame = frame.with_columns(
                pl.col(name).dt.replace_time_zone(zone, non_existent="raise")
                for name, dtype in frame.schema.items()
                if isinstance(dtype, pl.Datetime) and dtype.time_zone is None
            )
        return frame.cast(spec.polars_schema())  # type: ignore[arg-type]


def literal_columns(rows: pl.DataFrame, columns: list[str], render: Any) -> list[str]:
    """Each row of `columns` as a comma-separated list of SQL literals, built column-wise by
    Polars (thousands of rows): `render(expr, dtype)` writes one column's literals."""
    exprs = [render(pl.col(c), rows.schema[c]) for c in columns]
    return rows.select(pl.concat_str(exprs, separator=", ")).to_series().to_list()


def quoted_text(column: pl.Expr, *, backslash: bool = False) -> pl.Expr:
    """A string column as SQL string literals ('' doubled; backslashes doubled too for
    engines that read them as escapes)."""
    text = column.cast(pl.String)
    if backslash:
        text = text.str.replace_all("\\", "\\\\", literal=True)
    return "'" + text.str.replace_all("'", "''", literal=True) + "'"
