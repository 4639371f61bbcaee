"""PostgreSQL sources: ADBC (binary COPY-speed Arrow), hash_record_extended fingerprints,
the catalog (pg_class / pg_attribute / pg_type) for drift, timestamptz instants in UTC."""

from __future__ import annotations

import datetime as dt
import re
from typing import TYPE_CHECKING, Any

import polars as pl
from sqlglot import exp

from aps_etl.lib.postgres import PERMANENT_CONNECT_MARKERS
from aps_etl.lib.sources.dialect import ZonedInstants
from aps_etl.lib.sources.engines.base import Endpoint, Session, SourceEngine, literal_columns
from aps_etl.lib.sources.source_types import KNOWN_TYPES, SQL_NAMES, SourceType
from aps_etl.lib.type_map import SQL_TYPES

if TYPE_CHECKING:
    import pyarrow as pa

    from aps_etl.lib.sources.specs import ExtractSpec

DIALECT = ZonedInstants(
    name="PostgreSQL",
    sqlglot="postgres",
    casts={dtype: sql.postgres for dtype, sql in SQL_TYPES.items()},
)

# One row per column of the relation (one row with a null column for a table without any,
# none when there is no such table). Domains are resolved to their base type and typmod.
_CATALOG_SQL = """
select a.attname::text as column_name,
       format_type(a.atttypid, a.atttypmod) as display,
       coalesce(b.typname, t.typname)::text as type_name,
       case when t.typtype = 'd' then t.typtypmod else a.atttypmod end as type_mod,
       coalesce(b.typtype, t.typtype)::text as type_kind
from pg_class c
left join pg_attribute a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
left join pg_type t on t.oid = a.atttypid
left join pg_type b on t.typtype = 'd' and b.oid = t.typbasetype
where c.oid = to_regclass({regclass})
  and c.relkind in ('r', 'p', 'v', 'm', 'f')
order by a.attnum
"""


class _AdbcSession:
    """An ADBC connection; a cursor per statement (ADBC refuses to close a connection
    whose cursor is open, and an idle session may be let go without a close)."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection

    def execute(self, sql: str) -> None:
        with self.connection.cursor() as cursor:
            cursor.execute(sql)

    def arrow(self, sql: str) -> pa.Table:
        with self.connection.cursor() as cursor:
            cursor.execute(sql)
            return cursor.fetch_arrow_table()

    def rollback(self) -> None:
        self.connection.rollback()

    def close(self) -> None:
        self.connection.close()


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class Postgres(SourceEngine):
    dialect = DIALECT
    default_port = 5432
    transient_markers = ("IO:", "server closed", "terminating connection", "Connection refused")
    permanent_connect_markers = PERMANENT_CONNECT_MARKERS

    def open(self, endpoint: Endpoint) -> Session:
        import adbc_driver_postgresql.dbapi as adbc

        assert endpoint.uri is not None  # SourceDatabase builds PostgreSQL's URI
        return _AdbcSession(adbc.connect(endpoint.uri))

    def consistent_read_statements(self) -> list[str]:
        return ["set transaction isolation level repeatable read, read only",
                "set local timezone = 'UTC'"]  # fmt: skip

    def _row_hash(self, spec: ExtractSpec) -> str:
        if spec.composable:
            assert spec.watermark_column is not None  # composable: it has updated_at
            keys = (*spec.primary_key, spec.watermark_column)
            return f"hash_record_extended(row({', '.join(f'f.{_q(c)}' for c in keys)}), 0)"
        return "hash_record_extended(f, 0)"

    def fingerprint_sql(self, spec: ExtractSpec, select_sql: str, bucket: str | None = None) -> str:
        # hash_record_extended: the hash PostgreSQL partitions by, stable across sessions,
        # time zones and versions; the checksum is the sum of the rows' hashes
        wm = spec.watermark_column
        newest = f"max(f.{_q(wm)})" if wm else "null::timestamptz"
        aggregates = f"count(*), {newest}, coalesce(sum({self._row_hash(spec)}), 0)::text"
        if bucket is None:
            return f"select {aggregates} from ({select_sql}) f"
        return f"select {bucket} as bucket, {aggregates} from ({select_sql}) f group by 1"

    def rows_hash_sql(self, spec: ExtractSpec, rows: pl.DataFrame) -> str:
        if not spec.composable:
            raise ValueError(f"extract spec {spec.name} has no primary key and updated_at")
        assert spec.watermark_column is not None  # composable: it has updated_at
        columns = [*spec.primary_key, spec.watermark_column]
        casts = [
            f"v.c{i}::{self.dialect.casts[spec.columns[c].base_type()]}"
            for i, c in enumerate(columns)
        ]
        values = "(" + "), (".join(literal_columns(rows, columns, _literal)) + ")"
        names = ", ".join(f"c{i}" for i in range(len(columns)))
        return (
            f"select coalesce(sum(hash_record_extended(row({', '.join(casts)}), 0)), 0)::text "
            f"from (values {values}) v({names})"
        )

    def day_bucket(self, spec: ExtractSpec, plant_offset: dt.timedelta) -> str:
        # the transaction runs in UTC; W(D) is a fixed offset from it
        minutes = int(plant_offset.total_seconds() // 60)
        column = f"f.{_q(spec.partition_column or '')}"
        return f"(({column} at time zone 'UTC') + interval '{minutes} minutes')::date"

    def table_columns(
        self, session: Session, table: str, schema: str | None
    ) -> list[tuple[str, SourceType]] | None:
        parts = [table] if schema is None else [schema, table]
        regclass = "format({}, {})".format(
            _string(".".join(["%I"] * len(parts))), ", ".join(_string(p) for p in parts)
        )
        rows = session.arrow(_CATALOG_SQL.format(regclass=regclass)).to_pylist()
        if not rows:
            return None
        return [
            (
                row["column_name"],
                source_type(
                    row["type_name"],
                    row["type_mod"],
                    display=row["display"],
                    enum=row["type_kind"] == "e",
                ),
            )  # fmt: skip
            for row in rows
            if row["column_name"] is not None
        ]

    def query_columns(self, session: Session, sql: str) -> list[tuple[str, SourceType]]:
        # Parse/Describe of the prepared statement: nothing is executed, no row is read
        described = []
        with session.connection.cursor() as cursor:  # type: ignore[attr-defined]
            schema = cursor.adbc_execute_schema(sql)
        for field in schema:
            meta = {k.decode(): v.decode() for k, v in (field.metadata or {}).items()}
            typmod = meta.get("POSTGRESQL:typmod")
            described.append(
                (field.name, meta.get("POSTGRESQL:type", ""), int(typmod) if typmod else -1)
            )
        enums = _enum_types(session, {t for _, t, _ in described if t not in KNOWN_TYPES})
        return [(n, source_type(t, m, enum=t in enums)) for n, t, m in described]

    def explain(self, message: str) -> tuple[str, str] | None:
        table = re.search(r'relation "([^"]+)" does not exist', message)
        if table:
            return ("table", table.group(1))
        column = re.search(r"column (\S+) does not exist", message)
        if column:
            return ("column", column.group(1))
        return None


def _enum_types(session: Session, names: set[str]) -> set[str]:
    """Which of these type names are enums (a query's description names types only)."""
    if not names:
        return set()
    listed = ", ".join(_string(n) for n in sorted(names))
    table = session.arrow(
        f"select typname::text from pg_type where typtype = 'e' and typname in ({listed})"
    )
    return set(table.column(0).to_pylist())


def source_type(
    name: str, typmod: int | None, *, display: str | None = None, enum: bool = False
) -> SourceType:
    precision = scale = None
    if name == "numeric" and typmod is not None and typmod >= 4:
        # PostgreSQL's numeric typmod: ((precision << 16) | (scale & 0x7ff)) + 4, the scale
        # an 11-bit signed number (negative scales exist since PostgreSQL 15).
        packed = typmod - 4
        precision = (packed >> 16) & 0xFFFF
        scale = packed & 0x7FF
        scale = scale - 0x800 if scale & 0x400 else scale
    if display is None:
        if precision is not None:
            display = f"numeric({precision},{scale})"
        elif name.startswith("_"):
            display = SQL_NAMES.get(name[1:], name[1:]) + "[]"
        else:
            display = SQL_NAMES.get(name, name)
    return SourceType(name, display, precision, scale, enum)


def _string(value: str) -> str:
    return exp.Literal.string(value).sql(dialect="postgres")


def _literal(column: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    """A column's values as PostgreSQL literals (null as null)."""
    if dtype.is_integer() or dtype == pl.Boolean:
        text = column.cast(pl.String)
    elif isinstance(dtype, pl.Datetime):
        # exact microseconds, in UTC (the transaction's time zone)
        utc = column.dt.convert_time_zone("UTC") if dtype.time_zone else column
        text = "'" + utc.dt.strftime("%Y-%m-%d %H:%M:%S%.6f") + "+00'"
    elif dtype == pl.Date:
        text = "'" + column.dt.strftime("%Y-%m-%d") + "'"
    else:
        text = "'" + column.cast(pl.String).str.replace_all("'", "''", literal=True) + "'"
    return text.fill_null("null")


POSTGRES = Postgres()
