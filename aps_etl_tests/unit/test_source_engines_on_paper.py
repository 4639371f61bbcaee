"""The Oracle and SQL Server engines, without a server (none can run on this machine).

Their SQL is checked on paper: built from the real MES specs, parsed back by sqlglot in
the engine's dialect, and its meaning pinned (window bounds as the source zone's wall
clock, half-open, every declared column cast, NULL hashed apart from 'NULL'). Their
connect paths are checked as far as a real process allows: python-oracledb refused by a
closed local port (and by a TLS endpoint whose certificate it cannot trust), arrow-odbc
asked for a SQL Server driver that is not installed.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
import socket
import ssl
import subprocess
import threading
import zoneinfo
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest
import sqlglot
from sqlglot import exp

from aps_etl.lib.business_days import business_day_window
from aps_etl.lib.sources.engines.base import Endpoint, SourceEngine
from aps_etl.lib.sources.engines.oracle import Oracle, driver_type_name
from aps_etl.lib.sources.engines.oracle import column_type as oracle_type
from aps_etl.lib.sources.engines.registry import engine_for
from aps_etl.lib.sources.engines.sqlserver import DRIVER, DriverMissing, SqlServer
from aps_etl.lib.sources.engines.sqlserver import column_type as sqlserver_type
from aps_etl.lib.sources.mes import (
    DAILY_SOURCES,
    LOT_HISTORY,
    PLAN_PRODUCTION,
    PLAN_RUN,
    PROCESS_RESULT,
    PRODUCT,
)
from aps_etl.lib.sources.source_types import incompatibility
from aps_etl.lib.sources.specs import TS, ExtractSpec

PLUS9 = dt.timezone(dt.timedelta(hours=9))
DAY = dt.date(2026, 11, 25)
START, END = business_day_window(DAY)  # [2026-11-24 15:00 UTC, 2026-11-25 15:00 UTC)
SINCE = dt.datetime(2026, 11, 25, 3, 4, 5, 678901, tzinfo=dt.UTC)
SQLGLOT = {"Oracle": "oracle", "SQL Server": "tsql"}
ENGINES = {
    "oracle": lambda zone: Oracle(zone),
    "sqlserver": lambda zone: SqlServer(zone),
}


@pytest.fixture(params=sorted(ENGINES))
def engine(request: pytest.FixtureRequest) -> SourceEngine:
    return ENGINES[request.param](PLUS9)  # type: ignore[no-any-return]


def parse(engine: SourceEngine, sql: str) -> exp.Expr:
    return sqlglot.parse_one(sql, dialect=SQLGLOT[engine.name])


def literals(sql: str) -> list[str]:
    """The wall-clock literals a statement compares with, in order."""
    return re.findall(r"'(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6})'", sql)


def test_the_registry_builds_both_engines_with_the_source_zone() -> None:
    oracle = engine_for("oracle", "Asia/Seoul")
    sqlserver = engine_for("SQLServer", "+05:30")
    assert isinstance(oracle, Oracle) and oracle.name == "Oracle"
    assert isinstance(sqlserver, SqlServer) and sqlserver.name == "SQL Server"
    assert oracle.dialect.time_zone == zoneinfo.ZoneInfo("Asia/Seoul")  # type: ignore[attr-defined]
    assert sqlserver.dialect.time_zone.utcoffset(None) == dt.timedelta(hours=5, minutes=30)  # type: ignore[attr-defined]


# --- the extract SELECT ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "bounds"),
    [
        (PLUS9, ["2026-11-25 00:00:00.000000", "2026-11-26 00:00:00.000000"]),
        (dt.UTC, ["2026-11-24 15:00:00.000000", "2026-11-25 15:00:00.000000"]),
        (zoneinfo.ZoneInfo("America/New_York"), ["2026-11-24 10:00:00.000000",
                                                 "2026-11-25 10:00:00.000000"]),
    ],
)  # fmt: skip
@pytest.mark.parametrize("name", sorted(ENGINES))
def test_an_incremental_window_is_the_source_zones_wall_clock_half_open(
    name: str, zone: dt.tzinfo, bounds: list[str]
) -> None:
    engine = ENGINES[name](zone)
    sql = PROCESS_RESULT.select_sql(START, END, dialect=engine.dialect)
    tree = parse(engine, sql)
    where = tree.args["where"].this
    assert isinstance(where, exp.And)
    low, high = where.this, where.expression
    assert isinstance(low, exp.GTE) and isinstance(high, exp.LT)  # [start, end)
    assert low.this.name.lower() == high.this.name.lower() == "track_out_ts"
    assert literals(low.sql(SQLGLOT[engine.name])) == bounds[:1]
    assert literals(high.sql(SQLGLOT[engine.name])) == bounds[1:]


def test_every_declared_column_is_cast_to_the_engines_type(engine: SourceEngine) -> None:
    expected = {
        "Oracle": {
            "result_id": "NUMBER(19)", "lot_id": "VARCHAR2(4000)", "step_seq": "NUMBER(10)",
            "track_in_ts": "TIMESTAMP(6)", "is_rework": "NUMBER(1)",
        },
        "SQL Server": {
            "result_id": "BIGINT", "lot_id": "NVARCHAR(4000)", "step_seq": "INT",
            "track_in_ts": "DATETIME2(6)", "is_rework": "BIT",
        },
    }[engine.name]  # fmt: skip
    dialect = SQLGLOT[engine.name]
    tree = parse(engine, PROCESS_RESULT.select_sql(START, END, dialect=engine.dialect))
    projections = {p.alias: p.this for p in tree.expressions}
    assert list(projections) == list(PROCESS_RESULT.columns)  # the names, lower case, in order
    for name, cast in projections.items():
        assert isinstance(cast, exp.Cast), name
        assert cast.this.name.lower() == name  # the source column of the same name
    for name, sql_type in expected.items():
        assert projections[name].to.sql(dialect) == exp.DataType.build(
            sql_type, dialect=dialect
        ).sql(dialect)


def test_oracle_refers_to_the_source_in_upper_case_and_names_its_output_in_lower_case() -> None:
    sql = PROCESS_RESULT.select_sql(START, END, dialect=Oracle(PLUS9).dialect)
    # unquoted Oracle names are upper case: "src"."result_id" would name nothing
    assert '"SRC"."RESULT_ID"' in sql and '"src".' not in sql
    assert 'AS "result_id"' in sql  # the lake's name
    assert "FROM process_result src" in sql  # unquoted: PROCESS_RESULT, alias SRC
    # bounds do not depend on NLS_TIMESTAMP_FORMAT
    assert "TO_TIMESTAMP('2026-11-25 00:00:00.000000', 'YYYY-MM-DD HH24:MI:SS.FF6')" in sql


def test_oracle_casts_a_declared_date_without_dropping_its_time_of_day() -> None:
    sql = PLAN_RUN.select_sql(dialect=Oracle(PLUS9).dialect)
    tree = sqlglot.parse_one(sql, dialect="oracle")
    projections = {p.alias: p.this for p in tree.expressions}
    assert projections["base_date"].sql("oracle") == 'CAST("SRC"."BASE_DATE" AS DATE)'
    assert isinstance(projections["created_at"], exp.Cast)  # a timestamp keeps its time
    assert "TRUNC" not in sql


def test_oracle_refuses_a_time_of_day_on_a_declared_date() -> None:
    table = pa.table(
        {
            "run_id": pa.array(["R1", "R2"], pa.large_string()),
            "base_date": pa.array(
                [dt.datetime(2026, 11, 25), dt.datetime(2026, 11, 26, 7, 15)], pa.timestamp("s")
            ),
            "horizon_days": pa.array([7, 7], pa.decimal128(10, 0)),
            "created_at": pa.array([dt.datetime(2026, 11, 25, 8, 30)] * 2, pa.timestamp("us")),
            "status": pa.array(["COMPLETED"] * 2, pa.large_string()),
        }
    )
    with pytest.raises(ValueError, match="base_date is declared a date.*2026-11-26 07:15"):
        Oracle(PLUS9).declared(table, PLAN_RUN)


def test_full_key_and_query_modes(engine: SourceEngine) -> None:
    dialect = SQLGLOT[engine.name]
    full = parse(engine, PLAN_RUN.select_sql(dialect=engine.dialect))
    assert full.args.get("where") is None
    key = parse(engine, PLAN_PRODUCTION.select_sql(dialect=engine.dialect, key="RUN'7\\x"))
    condition = key.args["where"].this
    assert isinstance(condition, exp.EQ)
    assert condition.this.name.lower() == "run_id"
    assert condition.expression.this == "RUN'7\\x"  # the quote doubled, the backslash kept
    query = parse(engine, LOT_HISTORY.select_sql(START, END, dialect=engine.dialect))
    inner = query.args["from_"].this
    assert isinstance(inner, exp.Subquery)  # the spec's PostgreSQL text, transpiled
    assert literals(inner.sql(dialect)) == [
        "2026-11-26 00:00:00.000000",  # event_ts < {end}
        "2026-11-25 00:00:00.000000",  # ... < {start}
    ]
    assert [p.alias for p in query.expressions] == list(LOT_HISTORY.columns)


def test_a_delta_takes_the_rows_changed_after_the_watermark(engine: SourceEngine) -> None:
    sql = PROCESS_RESULT.select_sql(START, END, dialect=engine.dialect, changed_since=SINCE)
    tree = parse(engine, sql)
    where = tree.args["where"].this
    assert isinstance(where, exp.GT)
    assert where.this.name == "updated_at"  # the inner projection's (lower-case) alias
    # 03:04:05.678901 UTC is 12:04:05.678901 on a +09:00 wall clock, microseconds kept
    assert literals(where.sql(SQLGLOT[engine.name])) == ["2026-11-25 12:04:05.678901"]
    inner = tree.args["from_"].this.this
    assert literals(inner.sql(SQLGLOT[engine.name])) == [
        "2026-11-25 00:00:00.000000",
        "2026-11-26 00:00:00.000000",
    ]


@pytest.mark.parametrize("spec", DAILY_SOURCES, ids=lambda s: s.name)
def test_every_daily_extract_parses_in_both_dialects(spec: ExtractSpec) -> None:
    for make in ENGINES.values():
        engine = make(PLUS9)
        sql = spec.select_sql(START, END, dialect=engine.dialect)
        parse(engine, sql)
        assert len(parse(engine, sql).expressions) == len(spec.columns)


# --- fingerprints --------------------------------------------------------------------------


def test_the_fingerprint_hashes_key_and_updated_at_with_nulls_apart(engine: SourceEngine) -> None:
    select = PROCESS_RESULT.select_sql(START, END, dialect=engine.dialect)
    sql = engine.fingerprint_sql(PROCESS_RESULT, select)
    tree = parse(engine, sql)
    assert [p.alias for p in tree.expressions] == ["row_count", "newest", "checksum"]
    hashed = tree.expressions[2].sql(SQLGLOT[engine.name])
    assert "MD5" in hashed
    for column in ("result_id", "updated_at"):
        assert f"{column} IS NULL" in hashed.replace('"', "").replace("[", "").replace("]", "")
    assert "lot_id" not in hashed  # key+updated_at: no other column
    # NULL hashes as the one-letter N; any value (the text 'NULL' too) as V<length>:<text>
    assert "'N'" in hashed and "'V'" in hashed
    assert select in sql  # the extract itself is what is counted


def test_a_master_data_fingerprint_hashes_every_column(engine: SourceEngine) -> None:
    sql = engine.fingerprint_sql(PRODUCT, PRODUCT.select_sql(dialect=engine.dialect))
    hashed = parse(engine, sql).expressions[2].sql(SQLGLOT[engine.name])
    for column in PRODUCT.columns:
        assert column in hashed


@pytest.mark.parametrize(
    ("zone", "expected"),
    [
        (PLUS9, {"Oracle": 'TRUNC(f."track_out_ts")',
                 "SQL Server": "CAST(f.[track_out_ts] AS DATE)"}),
        (dt.UTC, {"Oracle": "TRUNC(f.\"track_out_ts\" + NUMTODSINTERVAL(540, 'MINUTE'))",
                  "SQL Server": "CAST(DATEADD(MINUTE, 540, f.[track_out_ts]) AS DATE)"}),
        (zoneinfo.ZoneInfo("Asia/Seoul"), {
            "Oracle": "TRUNC(CAST(FROM_TZ(f.\"track_out_ts\", 'Asia/Seoul') "
                      "AT TIME ZONE '+09:00' AS DATE))",
            "SQL Server": "CAST(SWITCHOFFSET(f.[track_out_ts] AT TIME ZONE "
                          "N'Korea Standard Time', '+09:00') AS DATE)"}),
    ],
)  # fmt: skip
@pytest.mark.parametrize("name", sorted(ENGINES))
def test_the_day_bucket_is_the_plants_day_of_the_wall_clock(
    name: str, zone: dt.tzinfo, expected: dict[str, str]
) -> None:
    engine = ENGINES[name](zone)
    bucket = engine.day_bucket(PROCESS_RESULT, dt.timedelta(hours=9))
    assert bucket == expected[engine.name]
    select = PROCESS_RESULT.select_sql(START, END, dialect=engine.dialect)
    tree = parse(engine, engine.fingerprint_sql(PROCESS_RESULT, select, bucket=bucket))
    assert tree.expressions[0].alias == "bucket"
    # no GROUP BY 1 in either: the bucket's own expression
    (group,) = tree.args["group"].expressions
    assert group.sql(SQLGLOT[engine.name]) == tree.expressions[0].this.sql(SQLGLOT[engine.name])


def test_sqlserver_refuses_a_zone_without_a_windows_name() -> None:
    with pytest.raises(ValueError, match="fixed offset"):
        SqlServer(_Unnamed()).day_bucket(PROCESS_RESULT, dt.timedelta(hours=9))


class _Unnamed(dt.tzinfo):
    """A zone that is neither a fixed offset nor known to Windows."""

    def utcoffset(self, value: dt.datetime | None) -> dt.timedelta:
        return dt.timedelta(hours=1)

    def dst(self, value: dt.datetime | None) -> dt.timedelta:
        return dt.timedelta(0)

    def tzname(self, value: dt.datetime | None) -> str:
        return "Nowhere"


ROWS = pl.DataFrame(
    {
        "event_id": [1, 2, None],
        "updated_at": [
            dt.datetime(2026, 11, 24, 15, 0, 0, 123456),
            None,
            dt.datetime(2026, 11, 25, 0, 0),
        ],
    },
    schema={"event_id": pl.Int64, "updated_at": TS},
)
KEYED = ExtractSpec(
    name="keyed",
    table="keyed",
    mode="full",
    columns={"lot_id": pl.String, "seq": pl.Int32, "updated_at": TS},
    primary_key=("lot_id", "seq"),
    nullable=frozenset({"lot_id"}),
)
KEY_ROWS = pl.DataFrame(
    {
        "lot_id": ["LOT'1", "C:\\lots\\", None, "NULL"],
        "seq": [1, 2, 3, 4],
        "updated_at": [dt.datetime(2026, 11, 24, 15)] * 4,
    },
    schema={"lot_id": pl.String, "seq": pl.Int32, "updated_at": TS},
)


def test_rows_hash_sql_hashes_literals_cast_like_the_projection(engine: SourceEngine) -> None:
    sql = engine.rows_hash_sql(KEYED, KEY_ROWS)
    tree = parse(engine, sql)
    text = tree.sql(SQLGLOT[engine.name])
    prefix = "N" if engine.name == "SQL Server" else ""
    assert f"{prefix}'LOT''1'" in sql  # the quote doubled
    assert f"{prefix}'C:\\lots\\'" in sql  # the backslashes as they are: neither reads escapes
    assert f"{prefix}'NULL'" in sql  # the text NULL, a string...
    assert re.search(r"\bNULL\b(?!')", sql.replace("IS NULL", ""))  # ...and the NULL, bare
    # the wall clock of the source zone: 15:00 UTC is midnight in +09:00
    assert "'2026-11-25 00:00:00.000000'" in sql
    casts = {"Oracle": ["VARCHAR2(4000)", "NUMBER(10)", "TIMESTAMP(6)"],
             "SQL Server": ["NVARCHAR(4000)", "INT", "DATETIME2(6)"]}[engine.name]  # fmt: skip
    for sql_type in casts:
        built = exp.DataType.build(sql_type, dialect=SQLGLOT[engine.name])
        assert f"AS {built.sql(SQLGLOT[engine.name])})" in text
    assert "MD5" in text


def test_rows_hash_sql_of_event_ids_with_a_null(engine: SourceEngine) -> None:
    sql = engine.rows_hash_sql(LOT_HISTORY, ROWS)
    parse(engine, sql)
    assert "'2026-11-25 00:00:00.123456'" in sql  # microseconds kept, +09:00 wall clock
    assert "'2026-11-25 09:00:00.000000'" in sql


def test_rows_hash_sql_needs_a_key_and_updated_at(engine: SourceEngine) -> None:
    with pytest.raises(ValueError, match="no primary key and updated_at"):
        engine.rows_hash_sql(PLAN_PRODUCTION, pl.DataFrame())


# --- drift ---------------------------------------------------------------------------------


def test_oracle_dictionary_query_parses_and_looks_up_upper_case_names() -> None:
    oracle = Oracle(PLUS9)
    sql = oracle.columns_sql("process_result", None)
    sqlglot.parse_one(sql, dialect="oracle")
    assert "TABLE_NAME = 'PROCESS_RESULT'" in sql
    assert "OWNER = SYS_CONTEXT('USERENV', 'CURRENT_SCHEMA')" in sql
    assert "OWNER = 'MES'" in oracle.columns_sql("process_result", "mes")
    assert "'O''BRIEN'" in oracle.columns_sql("o'brien", None)


def test_sqlserver_information_schema_query_parses() -> None:
    sqlserver = SqlServer(PLUS9)
    sql = sqlserver.columns_sql("process_result", None)
    sqlglot.parse_one(sql, dialect="tsql")
    assert "TABLE_SCHEMA = SCHEMA_NAME()" in sql
    assert "TABLE_NAME = N'process_result'" in sql
    assert "TABLE_SCHEMA = N'dbo'" in sqlserver.columns_sql("process_result", "dbo")


@pytest.mark.parametrize(
    ("data_type", "precision", "scale", "name"),
    [
        ("NUMBER", 4, 0, "int2"),
        ("NUMBER", 9, 0, "int4"),
        ("NUMBER", 10, 0, "int8"),
        ("NUMBER", 18, 0, "int8"),
        ("NUMBER", 19, 0, "numeric"),
        ("NUMBER", 12, 3, "numeric"),
        ("NUMBER", 1, 0, "bool"),
        ("NUMBER", None, None, "numeric"),
        ("NUMBER", None, 0, "numeric"),
        ("FLOAT", 126, None, "numeric"),
        ("BINARY_DOUBLE", None, None, "float8"),
        ("BINARY_FLOAT", None, None, "float4"),
        ("VARCHAR2", None, None, "varchar"),
        ("NVARCHAR2", None, None, "varchar"),
        ("CHAR", None, None, "bpchar"),
        ("CLOB", None, None, "text"),
        ("DATE", None, None, "oracle_date"),
        ("TIMESTAMP(6)", None, 6, "timestamptz"),
        ("TIMESTAMP(6) WITH TIME ZONE", None, 6, "timestamptz"),
        ("TIMESTAMP(6) WITH LOCAL TIME ZONE", None, 6, "timestamptz"),
        ("RAW", None, None, "raw"),
    ],
)
def test_oracle_column_types_in_neutral_names(
    data_type: str, precision: int | None, scale: int | None, name: str
) -> None:
    assert oracle_type(data_type, precision, scale).name == name


def test_oracle_types_meet_the_declared_ones() -> None:
    assert incompatibility(pl.Int64, oracle_type("NUMBER", 19, 0)) is not None  # > int64
    assert incompatibility(pl.Int64, oracle_type("NUMBER", 18, 0)) is None
    assert incompatibility(pl.Int32, oracle_type("NUMBER", 10, 0)) is not None
    assert incompatibility(pl.Int32, oracle_type("NUMBER", 9, 0)) is None
    assert incompatibility(pl.Int64, oracle_type("NUMBER", None, 0)) is not None  # INTEGER
    assert incompatibility(pl.Int64, oracle_type("NUMBER", 12, 2)) == "fractions would be rounded"
    assert incompatibility(pl.Boolean, oracle_type("NUMBER", 1, 0)) is None
    assert incompatibility(TS, oracle_type("TIMESTAMP(6)", None, 6)) is None
    assert incompatibility(TS, oracle_type("DATE")) is None  # a wall clock to the second
    # the decision on DATE: a calendar day or a wall clock, as the MES uses it; a time of
    # day on a declared date is refused at extract (test_oracle_dates_...)
    assert incompatibility(pl.Date, oracle_type("DATE")) is None
    assert "wall clock" in oracle_type("DATE").display


def test_oracle_result_column_types_come_from_the_driver_names() -> None:
    assert driver_type_name("DB_TYPE_TIMESTAMP_TZ") == "TIMESTAMP WITH TIME ZONE"
    assert driver_type_name("DB_TYPE_VARCHAR") == "VARCHAR2"
    assert oracle_type(driver_type_name("DB_TYPE_NUMBER"), 10, 0).name == "int8"
    assert oracle_type(driver_type_name("DB_TYPE_DATE")).name == "oracle_date"


def test_oracle_types_match_python_oracledbs_names() -> None:
    import oracledb

    assert oracledb.DB_TYPE_NUMBER.name == "DB_TYPE_NUMBER"
    assert driver_type_name(oracledb.DB_TYPE_NVARCHAR.name) == "NVARCHAR2"
    assert driver_type_name(oracledb.DB_TYPE_TIMESTAMP_LTZ.name).endswith("LOCAL TIME ZONE")


@pytest.mark.parametrize(
    ("data_type", "length", "precision", "scale", "name"),
    [
        ("bit", None, None, None, "bool"),
        ("tinyint", None, 3, 0, "int2"),
        ("smallint", None, 5, 0, "int2"),
        ("int", None, 10, 0, "int4"),
        ("bigint", None, 19, 0, "int8"),
        ("decimal", None, 12, 3, "numeric"),
        ("numeric", None, 18, 0, "numeric"),
        ("float", None, 53, None, "float8"),
        ("real", None, 24, None, "float4"),
        ("varchar", 50, None, None, "varchar"),
        ("nvarchar", 4000, None, None, "varchar"),
        ("char", 10, None, None, "bpchar"),
        ("nchar", 10, None, None, "bpchar"),
        ("date", None, None, None, "date"),
        ("datetime", None, None, None, "timestamptz"),
        ("datetime2", None, None, None, "timestamptz"),
        ("smalldatetime", None, None, None, "timestamptz"),
        ("datetimeoffset", None, None, None, "timestamptz"),
        ("uniqueidentifier", None, None, None, "uniqueidentifier"),
    ],
)
def test_sqlserver_column_types_in_neutral_names(
    data_type: str, length: int | None, precision: int | None, scale: int | None, name: str
) -> None:
    assert sqlserver_type(data_type, length, precision, scale).name == name


def test_sqlserver_text_longer_than_the_cast_is_flagged() -> None:
    for found in (
        sqlserver_type("nvarchar", -1),
        sqlserver_type("varchar", 8000),
        sqlserver_type("ntext"),
    ):
        reason = incompatibility(pl.String, found)
        assert reason is not None, found
        assert "would be cut" in found.display
    assert incompatibility(pl.String, sqlserver_type("nvarchar", 4000)) is None
    assert incompatibility(pl.Date, sqlserver_type("date")) is None
    assert incompatibility(TS, sqlserver_type("datetime2")) is None
    assert incompatibility(pl.Boolean, sqlserver_type("bit")) is None
    assert incompatibility(pl.Int32, sqlserver_type("bigint")) is not None


def test_query_columns_statements_read_no_row() -> None:
    from aps_etl.lib.sources.engines.oracle import _describe_sql as oracle_describe
    from aps_etl.lib.sources.engines.sqlserver import _describe_sql as sqlserver_describe

    inner = LOT_HISTORY.select_sql(START, END, dialect=Oracle(PLUS9).dialect)
    oracle_sql = oracle_describe(inner)
    assert oracle_sql.endswith("WHERE 1 = 0")
    sqlglot.parse_one(oracle_sql, dialect="oracle")
    inner = LOT_HISTORY.select_sql(START, END, dialect=SqlServer(PLUS9).dialect)
    sqlserver_sql = sqlserver_describe(inner)
    assert sqlserver_sql.startswith("SELECT TOP 0 * FROM (")
    sqlglot.parse_one(sqlserver_sql, dialect="tsql")


# --- values --------------------------------------------------------------------------------


def test_oracle_reads_a_date_as_its_own_day_in_a_zone_east_of_utc() -> None:
    # what fetch_df_all hands over for CAST(plan_date AS DATE): timestamp[s],
    # decimals for NUMBER(p) (fetch_decimals=True), large strings
    table = pa.table(
        {
            "run_id": pa.array(["R1"], pa.large_string()),
            "base_date": pa.array([dt.datetime(2026, 11, 25)], pa.timestamp("s")),
            "horizon_days": pa.array([7], pa.decimal128(10, 0)),
            "created_at": pa.array([dt.datetime(2026, 11, 25, 8, 30)], pa.timestamp("us")),
            "status": pa.array(["COMPLETED"], pa.large_string()),
        }
    )
    frame = Oracle(PLUS9).declared(table, PLAN_RUN)
    assert frame["base_date"].to_list() == [dt.date(2026, 11, 25)]  # not the 24th (UTC)
    assert frame["horizon_days"].to_list() == [7]
    assert frame["created_at"].to_list() == [dt.datetime(2026, 11, 24, 23, 30, tzinfo=dt.UTC)]


def test_oracle_reads_number_flags_and_big_integers_exactly() -> None:
    table = pa.table(
        {
            "equipment_id": pa.array(["E1", "E2"]),
            "eqp_group_id": pa.array(["G", "G"]),
            "process_id": pa.array(["P", "P"]),
            "capacity_per_hour": pa.array([1.5, 2.0]),
            "active": pa.array([1, 0], pa.decimal128(1, 0)),
        }
    )
    from aps_etl.lib.sources.mes import EQUIPMENT

    frame = Oracle(PLUS9).declared(table, EQUIPMENT)
    assert frame["active"].to_list() == [True, False]


# --- errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("ORA-00942: table or view does not exist", ("table", "")),
        ('ORA-00942: table or view "MES"."PROCESS_RESULT" does not exist\nHelp: ...',
         ("table", "process_result")),
        ('ORA-00904: "SRC"."TRACK_OUT_TS": invalid identifier', ("column", "track_out_ts")),
        ('ORA-00904: "HOLD_REASON": invalid identifier', ("column", "hold_reason")),
        ("ORA-01017: invalid username/password; logon denied", None),
    ],
)  # fmt: skip
def test_oracle_explains_missing_tables_and_columns(
    message: str, expected: tuple[str, str] | None
) -> None:
    assert Oracle(PLUS9).explain(message) == expected


@pytest.mark.parametrize(
    ("message", "transient"),
    [
        ("DPY-6005: cannot connect to database (CONNECTION_ID=x).\n[Errno 111] Connection "
         "refused", True),
        ("DPY-4011: the database or network closed the connection", True),
        ("ORA-03113: end-of-file on communication channel", True),
        ("ORA-12541: TNS:no listener", True),
        ("DPY-6005: cannot connect to database (CONNECTION_ID=x).\n[SSL: "
         "CERTIFICATE_VERIFY_FAILED] certificate verify failed", False),
        ("ORA-01017: invalid username/password; logon denied", False),
        ("DPY-6001: Service \"XE\" is not registered with the listener (similar to "
         "ORA-12514)", False),
        ("ORA-00942: table or view does not exist", False),
    ],
)  # fmt: skip
def test_oracle_tells_transient_failures(message: str, transient: bool) -> None:
    assert Oracle(PLUS9).is_transient(message) is transient


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("[Microsoft][ODBC Driver 18 for SQL Server][SQL Server]Invalid object name "
         "'dbo.process_result'. (208) (SQLExecDirectW)", ("table", "process_result")),
        ("[Microsoft][ODBC Driver 18 for SQL Server][SQL Server]Invalid object name "
         "'lot_history'. (208)", ("table", "lot_history")),
        ("[Microsoft][ODBC Driver 18 for SQL Server][SQL Server]Invalid column name "
         "'track_out_ts'. (207) (SQLExecDirectW)", ("column", "track_out_ts")),
        ("[Microsoft][ODBC Driver 18 for SQL Server][SQL Server]Login failed for user 'r'.",
         None),
    ],
)  # fmt: skip
def test_sqlserver_explains_missing_tables_and_columns(
    message: str, expected: tuple[str, str] | None
) -> None:
    assert SqlServer(PLUS9).explain(message) == expected


@pytest.mark.parametrize(
    ("message", "transient"),
    [
        ("State: 08S01, Native error: 10054, Message: [Microsoft][ODBC Driver 18 for SQL "
         "Server]TCP Provider: Error code 0x2746", True),
        ("[Microsoft][ODBC Driver 18 for SQL Server]Login timeout expired", True),
        ("[SQL Server]Transaction (Process ID 57) was deadlocked on lock resources with "
         "another process and has been chosen as the deadlock victim. Rerun the "
         "transaction. (1205)", True),
        ("[SQL Server]Database 'mes' on server 'x' is not currently available. (40613)",
         True),
        ("State: 08001, [Microsoft][ODBC Driver 18 for SQL Server]SSL Provider: "
         "[error:0A000086:SSL routines::certificate verify failed] TCP Provider", False),
        ("[SQL Server]Login failed for user 'aps_reader'. (18456)", False),
        ("[SQL Server]Snapshot isolation transaction failed accessing database 'mes' "
         "because snapshot isolation is not allowed in this database. Use ALTER DATABASE "
         "to allow snapshot isolation. (3952)", False),
    ],
)  # fmt: skip
def test_sqlserver_tells_transient_failures(message: str, transient: bool) -> None:
    assert SqlServer(PLUS9).is_transient(message) is transient


def test_sqlserver_snapshot_isolation_off_is_permanent() -> None:
    message = "snapshot isolation is not allowed in this database. (3952)"
    assert any(m in message for m in SqlServer(PLUS9).permanent_connect_markers)
    assert SqlServer(PLUS9).consistent_read_statements() == [
        "SET TRANSACTION ISOLATION LEVEL SNAPSHOT",
        "BEGIN TRANSACTION",
    ]


def test_oracle_session_setup() -> None:
    statements = Oracle(zoneinfo.ZoneInfo("Asia/Seoul")).consistent_read_statements()
    assert statements[0] == "ALTER SESSION SET TIME_ZONE = 'Asia/Seoul'"
    assert statements[-1] == "SET TRANSACTION READ ONLY"  # last: it opens the transaction
    assert Oracle(PLUS9).consistent_read_statements()[0] == "ALTER SESSION SET TIME_ZONE = '+09:00'"


# --- connecting ----------------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_sqlserver_connection_string_per_tls_setting() -> None:
    sqlserver = SqlServer(PLUS9)

    def string(tls: str | None) -> str:
        return sqlserver.connection_string(Endpoint("mes", "db.plant", None, "r", "pw", tls, None))

    assert string(None).startswith(
        "Driver={ODBC Driver 18 for SQL Server};Server=tcp:db.plant,1433;Database={mes};"
    )
    assert "Encrypt=no;" in string("disable")
    assert "Encrypt=yes;TrustServerCertificate=yes;" in string("require")
    assert "Encrypt=yes;TrustServerCertificate=no;" in string("verify-full")
    assert "pw" not in string("verify-full") and "UID" not in string(None)  # given apart
    with pytest.raises(ValueError, match="trust store"):
        sqlserver.connection_string(Endpoint("mes", "db", 1433, "r", "pw", "verify-ca", "/ca"))


def test_sqlserver_without_its_driver_names_the_driver_to_install() -> None:
    sqlserver = SqlServer(PLUS9, driver="ODBC Driver 99 for SQL Server")
    endpoint = Endpoint("mes", "127.0.0.1", _closed_port(), "r", "pw", None, None)
    with pytest.raises(DriverMissing) as raised:
        sqlserver.open(endpoint)
    message = str(raised.value)
    assert "'ODBC Driver 99 for SQL Server' is not installed" in message
    assert "msodbcsql18" in message
    assert "Can't open lib" in message  # unixODBC's own words, kept
    assert not sqlserver.is_transient(message)
    assert DRIVER == "ODBC Driver 18 for SQL Server"


def test_oracle_connect_to_a_closed_port_is_transient() -> None:
    pytest.importorskip("oracledb")
    oracle = Oracle(PLUS9)
    endpoint = Endpoint("FREEPDB1", "127.0.0.1", _closed_port(), "r", "pw", None, None)
    with pytest.raises(Exception, match="DPY-6005") as raised:
        oracle.open(endpoint)
    assert oracle.is_transient(str(raised.value))


@pytest.fixture
def tls_listener(tmp_path: Path) -> Iterator[int]:
    """A local TLS endpoint with a self-signed certificate nobody trusts."""
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=untrusted.invalid", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(10)

    def serve() -> None:
        # the client hangs up on the handshake: whatever the server side sees is fine
        with contextlib.suppress(OSError):
            connection, _ = server.accept()
            with connection, contextlib.suppress(ssl.SSLError, OSError):
                context.wrap_socket(connection, server_side=True).close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield int(server.getsockname()[1])
    server.close()
    thread.join(timeout=10)


@pytest.mark.skipif(not Path("/usr/bin/openssl").exists(), reason="no openssl")
def test_oracle_refuses_an_untrusted_certificate_for_good(tls_listener: int) -> None:
    pytest.importorskip("oracledb")
    oracle = Oracle(PLUS9)
    endpoint = Endpoint("FREEPDB1", "127.0.0.1", tls_listener, "r", "pw", "verify-full", None)
    with pytest.raises(Exception, match="CERTIFICATE_VERIFY_FAILED") as raised:
        oracle.open(endpoint)
    assert not oracle.is_transient(str(raised.value))
