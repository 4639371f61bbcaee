"""Declarative extract specs: the SQL they generate and the types they guarantee."""

import datetime as dt

import polars as pl
import pytest

from aps_etl.lib.business_days import business_day_window
from aps_etl.lib.sources.engines.postgres import DIALECT
from aps_etl.lib.sources.mes import DAILY_SOURCES, EQUIPMENT, LOT_HISTORY, PROCESS_RESULT
from aps_etl.lib.sources.specs import ExtractSpec

DAY = dt.date(2026, 11, 25)
START, END = business_day_window(DAY)


def test_incremental_spec_selects_the_business_day_in_utc() -> None:
    sql = PROCESS_RESULT.select_sql(START, END, dialect=DIALECT)
    # W(2026-11-25) in Asia/Seoul is [2026-11-24 15:00Z, 2026-11-25 15:00Z)
    assert '"src"."track_out_ts" >= CAST(\'2026-11-24T15:00:00+00:00\' AS TIMESTAMPTZ)' in sql
    assert '"src"."track_out_ts" < CAST(\'2026-11-25T15:00:00+00:00\' AS TIMESTAMPTZ)' in sql


def test_every_declared_column_is_cast_explicitly() -> None:
    sql = EQUIPMENT.select_sql(START, END, dialect=DIALECT)
    # numeric(10,2) would arrive from ADBC as an opaque string without this cast
    assert 'CAST("src"."capacity_per_hour" AS DOUBLE PRECISION) AS "capacity_per_hour"' in sql
    assert sql.count("CAST(") == len(EQUIPMENT.columns)


def test_query_spec_fills_the_window_and_wraps_the_query() -> None:
    sql = LOT_HISTORY.select_sql(START, END, dialect=DIALECT)
    assert "2026-11-25T15:00:00+00:00" in sql and "2026-11-24T15:00:00+00:00" in sql
    assert sql.endswith(") AS src")


def test_specs_declare_unique_names_and_polars_schemas() -> None:
    names = [spec.name for spec in DAILY_SOURCES]
    assert len(names) == len(set(names))
    for spec in DAILY_SOURCES:
        assert isinstance(spec.polars_schema(), pl.Schema)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mode": "query"}, "needs a query"),
        ({"mode": "full"}, "needs a table"),
        ({"mode": "incremental", "table": "t", "partition_column": "nope"}, "partition_column"),
    ],
)
def test_incomplete_specs_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ExtractSpec(name="x", columns={"a": pl.Int64}, **kwargs)


def test_naive_window_bounds_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        PROCESS_RESULT.select_sql(
            dt.datetime(2026, 11, 25), dt.datetime(2026, 11, 26), dialect=DIALECT
        )
