"""SQL Server sources: arrow-odbc over Microsoft's "ODBC Driver 18 for SQL Server", MD5
fingerprints (HASHBYTES), INFORMATION_SCHEMA for drift, DATETIME2 wall clocks in the
source's zone.

The session is MariaDB's (`_OdbcSession`: Arrow batches on one connection that keeps its
transaction); only the driver, the connection string and the SQL differ. The driver is a
system package from Microsoft's repository (msodbcsql18, not in Debian's), registered in
/etc/odbcinst.ini under the name DRIVER below.

Consistent reads: SNAPSHOT isolation, which the database must allow
(ALTER DATABASE <db> SET ALLOW_SNAPSHOT_ISOLATION ON); without it the first read fails
with error 3952 ("snapshot isolation is not allowed in this database"), a permanent
failure (`permanent_connect_markers`) that names the fix.

Time: MES timestamps are datetime2 / datetime columns holding the plant's wall clock.
SQL Server has no session time zone: bounds are written as that wall clock
('yyyy-mm-dd hh:mi:ss.ffffff' is read the same under every language and DATEFORMAT for
datetime2), values read back are localized in the source zone and converted to UTC. A
datetimeoffset column is compared as an instant in the WHERE but projected (CAST to
datetime2) as its own local time: such a column must hold the source zone's offset.
A named zone (DST) reaches SQL only in `day_bucket`, as SQL Server's Windows zone name.

Identifiers: [bracketed] names compare by the database's collation (case-insensitive by
default); the drift query reports column names in lower case accordingly.
"""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from typing import TYPE_CHECKING, Any

import polars as pl

from aps_etl.lib.sources.dialect import WallClock, zone_name
from aps_etl.lib.sources.engines.base import Endpoint, Session, SourceEngine, quoted_text
from aps_etl.lib.sources.engines.mariadb import _OdbcSession, arrow_type
from aps_etl.lib.sources.source_types import SourceType

if TYPE_CHECKING:
    from aps_etl.lib.sources.specs import ExtractSpec

DRIVER = "ODBC Driver 18 for SQL Server"  # /etc/odbcinst.ini's name for msodbcsql18
DRIVER_PACKAGE = "msodbcsql18"
# the longest NVARCHAR with a length: NVARCHAR(MAX) has none, and arrow-odbc sizes its
# transfer buffers by the declared length (MAX would need a guessed cap per column)
TEXT_LENGTH = 4000
CASTS: dict[type[pl.DataType], str] = {
    pl.Int64: "BIGINT",
    pl.Int32: "INT",
    pl.Float64: "FLOAT",  # float(53): an IEEE double
    pl.String: f"NVARCHAR({TEXT_LENGTH})",  # Unicode whatever the column's code page
    pl.Boolean: "BIT",
    pl.Date: "DATE",
    pl.Datetime: "DATETIME2(6)",  # the wall clock, microseconds kept
}


def _q(name: str) -> str:
    return "[" + name.replace("]", "]]") + "]"


_MAX = "CONVERT(NVARCHAR(MAX), "


def _string(value: str) -> str:
    return "N'" + value.replace("'", "''") + "'"


class DriverMissing(RuntimeError):
    """The ODBC driver manager has no driver of the configured name."""


class SqlServer(SourceEngine):
    default_port = 1433
    transient_markers = (
        "08S01",  # communication link failure
        "Communication link failure",
        "TCP Provider",
        "Login timeout expired",  # HYT00: nothing answered in time
        "network-related or instance-specific error",
        "(40613)",  # Azure SQL: database not currently available (failover)
        "(40197)",  # Azure SQL: the service had an error processing the request
        "(40501)",  # Azure SQL: the service is busy
        "deadlock victim",  # 1205
        "(1205)",
    )
    permanent_connect_markers = (
        "Login failed",
        "(18456)",
        "certificate",
        "SSL Provider",
        "Data source name not found",
        "Can't open lib",
        "snapshot isolation is not allowed",  # 3952: ALLOW_SNAPSHOT_ISOLATION is OFF
        "(3952)",
        "Cannot open database",  # 4060: no such database, or no access to it
    )

    def __init__(self, time_zone: dt.tzinfo, *, driver: str = DRIVER) -> None:
        self.dialect = WallClock(
            name="SQL Server", sqlglot="tsql", casts=CASTS, time_zone=time_zone,
            wall_clock_type="DATETIME2(6)",
        )  # fmt: skip
        self.driver = driver

    @property
    def zone(self) -> dt.tzinfo:
        return self.dialect.time_zone  # type: ignore[attr-defined, no-any-return]

    def is_transient(self, message: str) -> bool:
        # a refused certificate also says "TCP Provider" / 08001: not worth a retry
        return super().is_transient(message) and not any(
            marker in message for marker in self.permanent_connect_markers
        )

    # --- the session -------------------------------------------------------------------

    def connection_string(self, endpoint: Endpoint) -> str:
        """The ODBC connection string, without the credentials (given apart to the
        driver). TLS as libpq names it: disable (or unset) does not encrypt the session
        (the login is encrypted regardless); require encrypts without checking the
        certificate; verify-ca / verify-full check it, and its name, against the system's
        trust store (the driver has no CA-file option: `ca_file` is refused)."""
        if endpoint.ca_file:
            raise ValueError(
                f"{self.name}: the ODBC driver reads the system's trust store only: add "
                f"the CA {endpoint.ca_file} to it (update-ca-certificates) and leave "
                "APS_SOURCE_SSLROOTCERT unset"
            )
        parts = {
            "Driver": "{" + self.driver + "}",
            "Server": f"tcp:{endpoint.host or '127.0.0.1'},{endpoint.port or self.default_port}",
            "Database": "{" + endpoint.database.replace("}", "}}") + "}",
            "APP": "aps-etl",
            "ApplicationIntent": "ReadOnly",  # an availability group may route to a replica
        }
        if endpoint.tls in ("require", "verify-ca", "verify-full"):
            parts["Encrypt"] = "yes"
            parts["TrustServerCertificate"] = "yes" if endpoint.tls == "require" else "no"
        else:
            parts["Encrypt"] = "no"
        return "".join(f"{k}={v};" for k, v in parts.items())

    def open(self, endpoint: Endpoint) -> Session:
        import arrow_odbc

        try:
            connection = arrow_odbc.connect(
                self.connection_string(endpoint),
                user=endpoint.user,
                password=endpoint.password,
                login_timeout_sec=10,
                autocommit=False,
            )
        except arrow_odbc.Error as error:
            message = str(error)
            if "Can't open lib" in message or "Data source name not found" in message:
                raise DriverMissing(
                    f"{self.name}: the ODBC driver {self.driver!r} is not installed (install "
                    f"Microsoft's {DRIVER_PACKAGE} package, which registers it in "
                    f"/etc/odbcinst.ini): {message}"
                ) from error
            raise
        return _OdbcSession(connection)

    def consistent_read_statements(self) -> list[str]:
        return [
            # every query of the transaction sees the database as of its first read
            "SET TRANSACTION ISOLATION LEVEL SNAPSHOT",
            "BEGIN TRANSACTION",
        ]

    # --- SQL ---------------------------------------------------------------------------

    def _hashed_columns(self, spec: ExtractSpec) -> list[str]:
        if spec.composable:
            assert spec.watermark_column is not None  # composable: it has updated_at
            return [*spec.primary_key, spec.watermark_column]
        return list(spec.columns)

    def _checksum(self, spec: ExtractSpec, columns: list[str], refs: list[str]) -> str:
        # 56 bits of the MD5 of the values, each written unambiguously: N for NULL, else V,
        # its length in bytes, ':' and its text (CONCAT_WS itself skips NULLs): a positive
        # BIGINT per row, summed exactly in DECIMAL(38, 0). Each part is NVARCHAR(MAX):
        # CONCAT and CONCAT_WS cut their result at 4000 characters unless an argument is.
        parts = []
        for column, ref in zip(columns, refs, strict=True):
            text = _as_text(ref, spec.columns[column])
            parts.append(
                f"CASE WHEN {ref} IS NULL THEN {_MAX}N'N') "
                f"ELSE CONCAT({_MAX}N'V'), DATALENGTH({text}), N':', {text}) END"
            )
        joined = parts[0] if len(parts) == 1 else f"CONCAT_WS(N'|', {', '.join(parts)})"
        row = f"CAST(SUBSTRING(HASHBYTES('MD5', {joined}), 1, 7) AS BIGINT)"
        return f"CAST(COALESCE(SUM(CAST({row} AS DECIMAL(38, 0))), 0) AS NVARCHAR(40))"

    def fingerprint_sql(self, spec: ExtractSpec, select_sql: str, bucket: str | None = None) -> str:
        wm = spec.watermark_column
        newest = f"MAX(f.{_q(wm)})" if wm else "CAST(NULL AS DATETIME2(6))"
        columns = self._hashed_columns(spec)
        checksum = self._checksum(spec, columns, [f"f.{_q(c)}" for c in columns])
        # named columns: a derived table over this one needs every column named
        aggregates = f"COUNT_BIG(*) AS [row_count], {newest} AS [newest], {checksum} AS [checksum]"
        if bucket is None:
            return f"SELECT {aggregates} FROM ({select_sql}) AS f"
        # T-SQL has no GROUP BY 1: the expression itself
        return (
            f"SELECT {bucket} AS [bucket], {aggregates} FROM ({select_sql}) AS f GROUP BY {bucket}"
        )

    def rows_hash_sql(self, spec: ExtractSpec, rows: pl.DataFrame) -> str:
        if not spec.composable:
            raise ValueError(f"extract spec {spec.name} has no primary key and updated_at")
        columns = self._hashed_columns(spec)
        if rows.is_empty():
            return "SELECT N'0'"
        zone = zone_name(self.zone)
        literals = rows.select(
            _literal(pl.col(c), rows.schema[c], zone).alias(f"c{j}") for j, c in enumerate(columns)
        )
        values = ", ".join("(" + ", ".join(row) + ")" for row in literals.iter_rows())
        # the same types as the extract's projection, so the values render alike
        refs = [
            f"CAST(v.c{j} AS {CASTS[spec.columns[c].base_type()]})" for j, c in enumerate(columns)
        ]
        names = ", ".join(f"c{j}" for j in range(len(columns)))
        return f"SELECT {self._checksum(spec, columns, refs)} FROM (VALUES {values}) AS v({names})"

    def day_bucket(self, spec: ExtractSpec, plant_offset: dt.timedelta) -> str:
        column = f"f.{_q(spec.partition_column or '')}"
        zone = self.zone
        if isinstance(zone, dt.timezone):  # a fixed offset: plain arithmetic
            shift = plant_offset - (zone.utcoffset(None) or dt.timedelta())
            minutes = int(shift.total_seconds() // 60)
            if minutes == 0:
                return f"CAST({column} AS DATE)"
            return f"CAST(DATEADD(MINUTE, {minutes}, {column}) AS DATE)"
        # a named zone (DST): SQL Server knows Windows' zone names (sys.time_zone_info)
        target = int(plant_offset.total_seconds() // 60)
        sign = "-" if target < 0 else "+"
        offset = f"{sign}{abs(target) // 60:02d}:{abs(target) % 60:02d}"
        return (
            f"CAST(SWITCHOFFSET({column} AT TIME ZONE {_string(windows_zone(zone))}, "
            f"'{offset}') AS DATE)"
        )

    def columns_sql(self, table: str, schema: str | None) -> str:
        """The drift query: a table's (or view's) columns from INFORMATION_SCHEMA, in the
        login's default schema unless one is named."""
        owner = _string(schema) if schema else "SCHEMA_NAME()"
        return (
            "SELECT COLUMN_NAME AS name, DATA_TYPE AS data_type, "
            "CHARACTER_MAXIMUM_LENGTH AS length, NUMERIC_PRECISION AS num_precision, "
            "NUMERIC_SCALE AS num_scale FROM INFORMATION_SCHEMA.COLUMNS "
            f"WHERE TABLE_SCHEMA = {owner} AND TABLE_NAME = {_string(table)} "
            "ORDER BY ORDINAL_POSITION"
        )

    def table_columns(
        self, session: Session, table: str, schema: str | None
    ) -> list[tuple[str, SourceType]] | None:
        rows = session.arrow(self.columns_sql(table, schema)).to_pylist()
        if not rows:
            return None
        return [
            (
                r["name"].lower(),
                column_type(r["data_type"], r["length"], r["num_precision"], r["num_scale"]),
            )
            for r in rows
        ]

    def query_columns(self, session: Session, sql: str) -> list[tuple[str, SourceType]]:
        # no row is read: the result's Arrow schema, as the driver describes it
        table = session.arrow(_describe_sql(sql))
        return [(f.name.lower(), arrow_type(f.type)) for f in table.schema]

    def explain(self, message: str) -> tuple[str, str] | None:
        table = re.search(r"Invalid object name '(?:[^']*\.)?([^'.]+)'", message)
        if table:
            return ("table", table.group(1))
        column = re.search(r"Invalid column name '([^']+)'", message)
        if column:
            return ("column", column.group(1))
        return None


def _describe_sql(sql: str) -> str:
    return f"SELECT TOP 0 * FROM ({sql}) AS q"


def windows_zone(zone: dt.tzinfo) -> str:
    """An IANA zone as SQL Server names it (Windows' names, from CLDR's table)."""
    from tzlocal.windows_tz import tz_win

    key = zone.key if isinstance(zone, zoneinfo.ZoneInfo) else str(zone)
    try:
        return tz_win[key]
    except KeyError:
        raise ValueError(
            f"SQL Server: time zone {key!r} has no Windows name; set APS_SOURCE_TIME_ZONE "
            "to a fixed offset such as +09:00"
        ) from None


def _as_text(ref: str, dtype: pl.DataType | type[pl.DataType]) -> str:
    """A projected value as NVARCHAR, in a format that does not depend on the language."""
    base = dtype.base_type()
    if base is pl.Datetime:
        return f"CONVERT(NVARCHAR(30), {ref}, 121)"  # yyyy-mm-dd hh:mi:ss.ffffff
    if base is pl.Date:
        return f"CONVERT(NVARCHAR(10), {ref}, 23)"  # yyyy-mm-dd
    if base is pl.Float64:
        return f"CONVERT(NVARCHAR(30), {ref}, 3)"  # 17 digits: every double exactly
    if base is pl.String:
        return ref
    return f"CONVERT(NVARCHAR(20), {ref})"  # BIGINT / INT / BIT


def _literal(column: pl.Expr, dtype: pl.DataType, zone: str) -> pl.Expr:
    """A column's values as T-SQL literals (null as NULL); instants as the source zone's
    wall clock (what the datetime2 columns hold); strings as N'' (Unicode)."""
    if dtype.is_integer():
        text = column.cast(pl.String)
    elif dtype == pl.Boolean:
        text = column.cast(pl.Int8).cast(pl.String)
    elif isinstance(dtype, pl.Datetime):
        utc = column if dtype.time_zone else column.dt.replace_time_zone("UTC")
        local = utc.dt.convert_time_zone(zone)
        text = "'" + local.dt.strftime("%Y-%m-%d %H:%M:%S%.6f") + "'"
    elif dtype == pl.Date:
        text = "'" + column.dt.strftime("%Y-%m-%d") + "'"
    else:
        text = "N" + quoted_text(column)  # T-SQL reads backslashes literally
    return text.fill_null("NULL")


_INTEGERS = {"bit": "bool", "tinyint": "int2", "smallint": "int2", "int": "int4", "bigint": "int8"}
_WALL_CLOCK = "wall clock in the source's zone"
_CUT = f"values over {TEXT_LENGTH} characters would be cut"


def column_type(
    data_type: str, length: Any = None, precision: Any = None, scale: Any = None
) -> SourceType:
    """INFORMATION_SCHEMA.COLUMNS' DATA_TYPE / CHARACTER_MAXIMUM_LENGTH / NUMERIC_PRECISION /
    NUMERIC_SCALE in source_types.py's neutral names."""
    name = data_type.lower()
    size = None if length is None else int(length)
    if name in _INTEGERS:
        return SourceType(_INTEGERS[name], name)
    if name in ("decimal", "numeric"):
        p, s = int(precision), int(scale or 0)
        return SourceType("numeric", f"{name}({p},{s})", p, s)
    if name in ("money", "smallmoney"):
        p = 19 if name == "money" else 10
        return SourceType("numeric", name, p, 4)
    if name == "float":
        # float(n <= 24) is real, reported as such; float is float(53)
        return SourceType("float8", "float")
    if name == "real":
        return SourceType("float4", "real")
    if name in ("varchar", "nvarchar", "char", "nchar"):
        shown = f"{name}({'max' if size == -1 else size})"
        if size == -1 or (size is not None and size > TEXT_LENGTH):
            # longer than the extract's NVARCHAR(4000): its CAST would cut values short
            return SourceType(shown, f"{shown} ({_CUT})")
        return SourceType("varchar" if name.endswith("varchar") else "bpchar", shown)
    if name in ("text", "ntext"):
        # deprecated LOBs: no length, so the same cut as (n)varchar(max)
        return SourceType(f"{name}(max)", f"{name} ({_CUT})")
    if name == "date":
        return SourceType("date", "date")
    if name in ("datetime", "datetime2", "smalldatetime"):
        return SourceType("timestamptz", f"{name} ({_WALL_CLOCK})")
    if name == "datetimeoffset":
        return SourceType("timestamptz", "datetimeoffset")
    return SourceType(name, name)
