"""The one map from the Polars dtypes this project declares (extract specs, output tables)
to their SQL types: PostgreSQL as DDL and casts write it, as information_schema spells it
(the target's schema check), and Trino (the lake's Hive tables)."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl


@dataclass(frozen=True)
class SqlType:
    postgres: str
    information_schema: str
    trino: str


SQL_TYPES: dict[type[pl.DataType], SqlType] = {
    pl.Int64: SqlType("bigint", "bigint", "BIGINT"),
    pl.Int32: SqlType("integer", "integer", "INTEGER"),
    pl.Float64: SqlType("double precision", "double precision", "DOUBLE"),
    pl.String: SqlType("text", "text", "VARCHAR"),
    pl.Boolean: SqlType("boolean", "boolean", "BOOLEAN"),
    pl.Date: SqlType("date", "date", "DATE"),
    # the specs' TS (UTC); Trino's Hive tables read Parquet's UTC instants as TIMESTAMP(6)
    pl.Datetime: SqlType("timestamptz", "timestamp with time zone", "TIMESTAMP(6)"),
}
# The same types looked up by their PostgreSQL DDL name (what a table declaration carries).
BY_POSTGRES: dict[str, SqlType] = {t.postgres: t for t in SQL_TYPES.values()}


def sql_type(dtype: pl.DataType | type[pl.DataType]) -> SqlType:
    """The SQL types of a declared dtype (a class such as pl.Int64 or an instance)."""
    try:
        return SQL_TYPES[dtype.base_type()]
    except KeyError:
        raise ValueError(f"no SQL type mapping declared for {dtype}") from None
