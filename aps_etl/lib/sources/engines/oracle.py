"""Oracle sources: python-oracledb in thin mode (pure Python, no Instant Client), Arrow
through `Connection.fetch_df_all`, STANDARD_HASH fingerprints, ALL_TAB_COLUMNS for drift,
TIMESTAMP/DATE wall clocks in the source's zone.

Identifiers: an Oracle MES creates its tables unquoted, so the dictionary holds them in
upper case (PROCESS_RESULT.TRACK_OUT_TS). The extract SELECT (specs.py) quotes the spec's
lower-case names; rendered as is, "src"."track_out_ts" would name no column. The dialect
here (`OracleWallClock`) rewrites the references to the source's columns as upper-case
quoted identifiers ("SRC"."TRACK_OUT_TS": reserved words stay safe) and keeps the output
aliases lower case ("track_out_ts"), the names the lake and the fingerprints use. The
drift query looks the table up in upper case and reports its columns in lower case.

Time: MES timestamps are TIMESTAMP(6) or DATE columns holding the plant's wall clock.
Bounds are written as that wall clock with TO_TIMESTAMP and an explicit format (never
through NLS_TIMESTAMP_FORMAT); the session's TIME_ZONE is the source zone so that
TIMESTAMP WITH LOCAL TIME ZONE columns render the same wall clock. A TIMESTAMP WITH TIME
ZONE column is compared as an instant in the WHERE, but its projection (CAST to TIMESTAMP)
keeps each value's own local time: such a column must hold the source zone's offset.

Dates: Oracle's DATE has a time of day, and MES schemas use it both for calendar days and
for timestamps to the second. Drift accepts it for a declared `pl.Date` and for a declared
timestamp (the neutral name `oracle_date`). A declared date is read as CAST(x AS DATE) and
`declared()` makes it a date before any time zone is applied (so 2026-11-25 stays
2026-11-25 in a +09:00 source), refusing by name a value with a time of day rather than
dropping it.

Empty strings: Oracle stores '' as NULL. A source value that is empty arrives as null, so
a declared column that is not `nullable` fails the not-null check on a row whose value is
'' at the source; declare such a column nullable (or fix the data) on Oracle. In hashes a
'' and a NULL are the same value (they are, in Oracle).

Numbers: `fetch_df_all(fetch_decimals=True)`: a NUMBER(19) comes as decimal128(19, 0),
exact, where the default would be a float64 (python-oracledb maps NUMBER(p > 18) to DOUBLE).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import polars as pl
from sqlglot import exp

from aps_etl.lib.sources.dialect import WallClock, zone_name
from aps_etl.lib.sources.engines.base import Endpoint, Session, SourceEngine, quoted_text
from aps_etl.lib.sources.engines.oracle_types import column_type, driver_type_name
from aps_etl.lib.sources.source_types import SourceType

if TYPE_CHECKING:
    import pyarrow as pa

    from aps_etl.lib.sources.specs import ExtractSpec

CASTS: dict[type[pl.DataType], str] = {
    pl.Int64: "NUMBER(19)",  # every int64; fetched as decimal128(19, 0), exact
    pl.Int32: "NUMBER(10)",
    pl.Float64: "BINARY_DOUBLE",  # IEEE double, as the lake's Float64
    # the longest VARCHAR2 of a database with MAX_STRING_SIZE = STANDARD (the default):
    # CLOB would come as LOBs (slow, and not comparable or hashable in SQL). A longer value
    # fails the CAST (ORA-25137 / ORA-22835): loud, never truncated.
    pl.String: "VARCHAR2(4000)",
    pl.Boolean: "NUMBER(1)",  # Oracle < 23ai has no BOOLEAN column: 0 / 1
    pl.Date: "DATE",  # with a time of day, refused unless midnight (module docstring)
    pl.Datetime: "TIMESTAMP(6)",  # the wall clock, microseconds kept
}
TIMESTAMP_FORMAT = "YYYY-MM-DD HH24:MI:SS.FF6"
SOURCE_ALIAS = "src"  # specs.py's alias of the source table or query


@dataclass(frozen=True)
class OracleWallClock(WallClock):
    """Oracle's wall clock: upper-case source identifiers, NLS-free bounds."""

    def instant(self, value: dt.datetime) -> exp.Expr:
        text = exp.Literal.string(self.wall_clock(value))
        return exp.Anonymous(
            this="TO_TIMESTAMP", expressions=[text, exp.Literal.string(TIMESTAMP_FORMAT)]
        )

    def render(self, expression: exp.Expr) -> str:
        return super().render(expression.copy().transform(_oracle_names))


def _oracle_names(node: exp.Expr) -> exp.Expr:
    if isinstance(node, exp.Column) and node.table == SOURCE_ALIAS:
        return exp.column(node.name.upper(), table=SOURCE_ALIAS.upper(), quoted=True)
    return node


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


class _OracleSession:
    def __init__(self, connection: Any) -> None:
        self.connection = connection

    def execute(self, sql: str) -> None:
        with self.connection.cursor() as cursor:
            cursor.execute(sql)

    def arrow(self, sql: str) -> pa.Table:
        import pyarrow as pa

        return pa.table(self.connection.fetch_df_all(sql, fetch_decimals=True))

    def describe(self, sql: str) -> list[tuple[str, str, int | None, int | None]]:
        """(name, Oracle type name, precision, scale) of the columns `sql` yields."""
        with self.connection.cursor() as cursor:
            cursor.execute(sql)
            return [(d.name, d.type_code.name, d.precision, d.scale) for d in cursor.description]

    def rollback(self) -> None:
        self.connection.rollback()

    def close(self) -> None:
        self.connection.close()


class Oracle(SourceEngine):
    default_port = 1521
    transient_markers = (
        "DPY-6005",  # cannot connect (refused, unreachable, timed out)
        "DPY-4011",  # the connection was closed
        "ORA-03113",  # end-of-file on communication channel
        "ORA-03114",  # not connected
        "ORA-03135",  # connection lost contact
        "ORA-12170",  # connect timeout
        "ORA-12541",  # no listener
        "ORA-01555",  # snapshot too old: a later read-only transaction may fit in undo
    )
    permanent_connect_markers = (
        "ORA-01017",  # invalid user name or password
        "ORA-12514",  # the listener does not know the service
        "DPY-6001",  # thin mode's ORA-12514: service not registered with the listener
        "DPY-6003",  # thin mode's ORA-12505: SID not registered
        "ORA-28000",  # account locked
        "ORA-01045",  # no CREATE SESSION privilege
        "CERTIFICATE_VERIFY_FAILED",
        "DPY-6006",  # the server's certificate DN does not match
        "SSL",
        "certificate",
    )

    def __init__(self, time_zone: dt.tzinfo) -> None:
        self.dialect = OracleWallClock(
            name="Oracle", sqlglot="oracle", casts=CASTS, time_zone=time_zone,
            wall_clock_type="TIMESTAMP(6)",
        )  # fmt: skip

    @property
    def zone(self) -> dt.tzinfo:
        return self.dialect.time_zone  # type: ignore[attr-defined, no-any-return]

    def is_transient(self, message: str) -> bool:
        # DPY-6005 wraps its cause: a refused certificate is not worth a retry
        return super().is_transient(message) and not any(
            marker in message for marker in self.permanent_connect_markers
        )

    # --- the session -------------------------------------------------------------------

    def connect_parameters(self, endpoint: Endpoint) -> dict[str, Any]:
        """oracledb.connect's keywords, without the password. `database` is the service
        name (Easy Connect's host:port/service). TLS as libpq names it: require encrypts
        (tcps) without checking the certificate; verify-ca checks it against `ca_file` (or
        the system's CAs); verify-full also matches the server's name in it."""
        parameters: dict[str, Any] = {
            "user": endpoint.user,
            "host": endpoint.host or "127.0.0.1",
            "port": endpoint.port or self.default_port,
            "service_name": endpoint.database,
            "tcp_connect_timeout": 10,
        }
        if endpoint.tls in ("require", "verify-ca", "verify-full"):
            import ssl

            context = ssl.create_default_context(cafile=endpoint.ca_file)
            context.check_hostname = False  # oracledb matches the name itself (below)
            if endpoint.tls == "require":
                context.verify_mode = ssl.CERT_NONE
            parameters |= {
                "protocol": "tcps",
                "ssl_context": context,
                "ssl_server_dn_match": endpoint.tls == "verify-full",
            }
        return parameters

    def open(self, endpoint: Endpoint) -> Session:
        import oracledb

        connection = oracledb.connect(
            password=endpoint.password, **self.connect_parameters(endpoint)
        )
        return _OracleSession(connection)

    def consistent_read_statements(self) -> list[str]:
        return [
            f"ALTER SESSION SET TIME_ZONE = {_string(zone_name(self.zone))}",
            # the hashes render values with explicit formats; these keep every other
            # implicit conversion the same in every session
            "ALTER SESSION SET NLS_DATE_FORMAT = 'YYYY-MM-DD HH24:MI:SS'",
            f"ALTER SESSION SET NLS_TIMESTAMP_FORMAT = '{TIMESTAMP_FORMAT}'",
            "ALTER SESSION SET NLS_NUMERIC_CHARACTERS = '.,'",
            # transaction-level read consistency: every query sees the transaction's start
            "SET TRANSACTION READ ONLY",
        ]

    # --- SQL ---------------------------------------------------------------------------

    def _hashed_columns(self, spec: ExtractSpec) -> list[str]:
        if spec.composable:
            assert spec.watermark_column is not None  # composable: it has updated_at
            return [*spec.primary_key, spec.watermark_column]
        return list(spec.columns)

    def _hash(self, spec: ExtractSpec, columns: list[str], refs: list[str]) -> str:
        # 60 bits of the MD5 of the values, each written unambiguously: 'N' for NULL,
        # else 'V', its length, ':' and its text (so NULL, 'NULL' and '' differ where
        # Oracle lets them, and no separator can be forged by a value)
        parts = []
        for column, ref in zip(columns, refs, strict=True):
            text = _as_text(ref, spec.columns[column])
            parts.append(
                f"CASE WHEN {ref} IS NULL THEN 'N' ELSE 'V' || LENGTH({text}) || ':' || {text} END"
            )
        digest = f"STANDARD_HASH({' || '.join(parts)}, 'MD5')"
        return f"TO_NUMBER(SUBSTR(RAWTOHEX({digest}), 1, 15), 'XXXXXXXXXXXXXXX')"

    def _checksum(self, spec: ExtractSpec, columns: list[str], refs: list[str]) -> str:
        # NUMBER holds 38 digits: the sum of a billion 60-bit hashes stays exact
        return f"TO_CHAR(NVL(SUM({self._hash(spec, columns, refs)}), 0))"

    def fingerprint_sql(self, spec: ExtractSpec, select_sql: str, bucket: str | None = None) -> str:
        wm = spec.watermark_column
        newest = f"MAX(f.{_q(wm)})" if wm else "CAST(NULL AS TIMESTAMP(6))"
        columns = self._hashed_columns(spec)
        checksum = self._checksum(spec, columns, [f"f.{_q(c)}" for c in columns])
        aggregates = f'COUNT(*) AS "row_count", {newest} AS "newest", {checksum} AS "checksum"'
        if bucket is None:
            return f"SELECT {aggregates} FROM ({select_sql}) f"
        # Oracle has no GROUP BY 1: the expression itself
        return f'SELECT {bucket} AS "bucket", {aggregates} FROM ({select_sql}) f GROUP BY {bucket}'

    def rows_hash_sql(self, spec: ExtractSpec, rows: pl.DataFrame) -> str:
        if not spec.composable:
            raise ValueError(f"extract spec {spec.name} has no primary key and updated_at")
        columns = self._hashed_columns(spec)
        # the same types as the extract's projection, so the values render alike
        types = [CASTS[spec.columns[c].base_type()] for c in columns]
        zone = zone_name(self.zone)
        literals = rows.select(
            _literal(pl.col(c), rows.schema[c], zone).alias(f"c{j}") for j, c in enumerate(columns)
        )
        selects = []
        for values in literals.iter_rows():
            casts = [
                f"CAST({v} AS {t}) AS c{j}"
                for j, (v, t) in enumerate(zip(values, types, strict=True))
            ]
            selects.append("SELECT " + ", ".join(casts) + " FROM DUAL")
        if not selects:
            return "SELECT '0' FROM DUAL"
        checksum = self._checksum(spec, columns, [f"v.c{j}" for j in range(len(columns))])
        return f"SELECT {checksum} FROM ({' UNION ALL '.join(selects)}) v"

    def day_bucket(self, spec: ExtractSpec, plant_offset: dt.timedelta) -> str:
        # the partition column is the projection's TIMESTAMP(6): the source zone's wall
        # clock. TRUNC turns the plant's wall clock into its day (a DATE at midnight).
        column = f"f.{_q(spec.partition_column or '')}"
        zone = self.zone
        if isinstance(zone, dt.timezone):  # a fixed offset: plain arithmetic
            shift = plant_offset - (zone.utcoffset(None) or dt.timedelta())
            minutes = int(shift.total_seconds() // 60)
            if minutes == 0:
                return f"TRUNC({column})"
            return f"TRUNC({column} + NUMTODSINTERVAL({minutes}, 'MINUTE'))"
        # a named zone (DST): the database's time zone file converts it
        target = zone_name(dt.timezone(plant_offset))
        return (
            f"TRUNC(CAST(FROM_TZ({column}, {_string(zone_name(zone))}) "
            f"AT TIME ZONE {_string(target)} AS DATE))"
        )

    def columns_sql(self, table: str, schema: str | None) -> str:
        """The drift query: a table's columns from ALL_TAB_COLUMNS (tables and views the
        reader can see), in the session's current schema unless one is named. Unquoted
        Oracle names are upper case, as the extract's SELECT refers to them."""
        owner = _string(schema.upper()) if schema else "SYS_CONTEXT('USERENV', 'CURRENT_SCHEMA')"
        return (
            "SELECT COLUMN_NAME, DATA_TYPE, DATA_PRECISION, DATA_SCALE, CHAR_LENGTH "
            f"FROM ALL_TAB_COLUMNS WHERE OWNER = {owner} AND TABLE_NAME = {_string(table.upper())} "
            "ORDER BY COLUMN_ID"
        )

    def table_columns(
        self, session: Session, table: str, schema: str | None
    ) -> list[tuple[str, SourceType]] | None:
        rows = session.arrow(self.columns_sql(table, schema)).to_pylist()
        if not rows:
            return None
        return [
            (
                r["COLUMN_NAME"].lower(),
                column_type(r["DATA_TYPE"], r["DATA_PRECISION"], r["DATA_SCALE"]),
            )
            for r in rows
        ]

    def query_columns(self, session: Session, sql: str) -> list[tuple[str, SourceType]]:
        # executed but no row matches: the cursor's description, as the server parsed it
        described = session.describe(_describe_sql(sql))  # type: ignore[attr-defined]
        return [
            (name.lower(), column_type(driver_type_name(code), precision, scale))
            for name, code, precision, scale in described
        ]

    def explain(self, message: str) -> tuple[str, str] | None:
        """ORA-00942 names the table only since 23ai ('table or view "MES"."X" does not
        exist'); before, the name is "" and the caller names the spec's table."""
        if "ORA-00942" in message:
            named = re.search(r'ORA-00942: table or view (?:"[^"]+"\.)?"([^"]+)"', message)
            return ("table", named.group(1).lower() if named else "")
        column = re.search(r'ORA-00904: (?:"[^"]*"\.)*"([^"]+)": invalid identifier', message)
        if column:
            return ("column", column.group(1).lower())
        return None

    # --- values ------------------------------------------------------------------------

    def declared(self, table: pa.Table, spec: ExtractSpec) -> pl.DataFrame:
        """A declared date comes as an Oracle DATE, an Arrow timestamp at midnight of its
        day: it becomes that day before the base class localizes the timestamps (a
        localized midnight in +09:00 is the previous day in UTC). A time of day is refused
        by name: dropping it would change the data."""
        import pyarrow as pa
        import pyarrow.compute as pc

        for name, dtype in spec.columns.items():
            if dtype.base_type() is not pl.Date or name not in table.column_names:
                continue
            index = table.column_names.index(name)
            if pa.types.is_timestamp(table.schema.field(index).type):
                column = table.column(index)
                days = column.cast(pa.date32())
                timed = pc.not_equal(days.cast(column.type), column)
                if pc.any(timed).as_py():
                    first = column.filter(timed)[0].as_py()
                    raise ValueError(
                        f"column {name} is declared a date but the source's DATE holds a "
                        f"time of day ({first}): declare it a timestamp"
                    )
                table = table.set_column(index, name, days)
        return super().declared(table, spec)


def _describe_sql(sql: str) -> str:
    return f"SELECT * FROM ({sql}) WHERE 1 = 0"


def _as_text(ref: str, dtype: pl.DataType | type[pl.DataType]) -> str:
    """A projected value as text, in a format that does not depend on NLS settings."""
    base = dtype.base_type()
    if base is pl.Datetime:
        return f"TO_CHAR({ref}, '{TIMESTAMP_FORMAT}')"
    if base is pl.Date:
        return f"TO_CHAR({ref}, 'YYYY-MM-DD')"
    if base is pl.String:
        return ref
    return f"TO_CHAR({ref})"  # NUMBER / BINARY_DOUBLE (NLS_NUMERIC_CHARACTERS is set)


def _literal(column: pl.Expr, dtype: pl.DataType, zone: str) -> pl.Expr:
    """A column's values as Oracle literals (null as NULL; '' is NULL in Oracle too);
    instants as the source zone's wall clock (what the TIMESTAMP(6) columns hold)."""
    if dtype.is_integer():
        text = column.cast(pl.String)
    elif dtype == pl.Boolean:
        text = column.cast(pl.Int8).cast(pl.String)
    elif isinstance(dtype, pl.Datetime):
        utc = column if dtype.time_zone else column.dt.replace_time_zone("UTC")
        local = utc.dt.convert_time_zone(zone)
        text = (
            "TO_TIMESTAMP('"
            + local.dt.strftime("%Y-%m-%d %H:%M:%S%.6f")
            + f"', '{TIMESTAMP_FORMAT}')"
        )
    elif dtype == pl.Date:
        text = "DATE '" + column.dt.strftime("%Y-%m-%d") + "'"
    else:
        text = quoted_text(column)  # Oracle reads backslashes literally
    return text.fill_null("NULL")
