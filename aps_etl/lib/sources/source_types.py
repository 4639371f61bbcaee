"""Which source column types each declared Polars type accepts: the type compatibility the
schema-drift check (drift.py) applies to every column of a source table or query."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from aps_etl.lib.type_map import sql_type

# Declared Polars type -> the source types (PostgreSQL internal names of the base type)
# whose every value reaches the lake unchanged through the extract's explicit cast. A type
# outside the set is a type change, even where PostgreSQL would cast it: numeric -> integer
# rounds, bigint -> integer may overflow, text -> integer fails on the first non-number,
# timestamp without time zone -> timestamptz reads the wall clock in the session's zone.
# `tinyint` is a MariaDB query result's TINYINT, which may be TINYINT(1), its BOOLEAN (the
# result's metadata does not tell them apart): every value fits an integer or a Boolean's 0/1.
ACCEPTED: dict[type[pl.DataType], frozenset[str]] = {
    pl.Int32: frozenset({"int2", "int4", "tinyint"}),
    pl.Int64: frozenset({"int2", "int4", "int8", "tinyint"}),
    # Every smallint/integer is exact in a double; a bigint beyond 2^53 is not.
    pl.Float64: frozenset({"float4", "float8", "int2", "int4", "tinyint"}),
    # Enums are accepted too: each label casts to text unchanged.
    pl.String: frozenset({"text", "varchar", "bpchar"}),
    pl.Boolean: frozenset({"bool", "tinyint"}),
    # Oracle's DATE: a day, or a wall clock to the second (a time of day on a declared date
    # is refused at extract, engines/oracle.py)
    pl.Date: frozenset({"date", "oracle_date"}),
}
# Datetime with a time zone (the specs' TS, UTC) <- timestamptz; naive <- timestamp.
ACCEPTED_DATETIME = {
    True: frozenset({"timestamptz", "oracle_date"}),
    False: frozenset({"timestamp"}),
}
# numeric(p, s) is accepted for an integer when it has no fraction (s <= 0) and its p - s
# integer digits always fit, and for Float64 when its p significant digits survive a double.
NUMERIC_INTEGER_DIGITS: dict[type[pl.DataType], int] = {pl.Int32: 9, pl.Int64: 18}
FLOAT64_DIGITS = 15

# Internal names as format_type() spells them (for result columns of a query spec).
SQL_NAMES = {
    "int2": "smallint",
    "int4": "integer",
    "int8": "bigint",
    "float4": "real",
    "float8": "double precision",
    "bool": "boolean",
    "varchar": "character varying",
    "bpchar": "character",
    "timestamptz": "timestamp with time zone",
    "timestamp": "timestamp without time zone",
    "timetz": "time with time zone",
    "time": "time without time zone",
}
_NUMBERS = {"int2", "int4", "int8", "float4", "float8", "numeric", "tinyint"}
_TEXTS = {"text", "varchar", "bpchar"}
KNOWN_TYPES = _NUMBERS | _TEXTS | set(SQL_NAMES) | {"date"}


@dataclass(frozen=True)
class SourceType:
    """A source column's type: `name` is PostgreSQL's internal name of the base type
    (int4, numeric, timestamptz, ...), `display` how an operator reads it (numeric(12,3))."""

    name: str
    display: str
    precision: int | None = None  # numeric only, None when unconstrained
    scale: int | None = None
    enum: bool = False


def _time_zone(dtype: pl.DataType | type[pl.DataType]) -> str | None:
    # Specs declare classes (pl.Int64) and instances (pl.Datetime("us", "UTC")) alike.
    return dtype.time_zone if isinstance(dtype, pl.Datetime) else None


def declared_type_name(dtype: pl.DataType | type[pl.DataType]) -> str:
    """The PostgreSQL spelling of a declared type, for messages."""
    base = dtype.base_type()
    if base is pl.Datetime:
        zone = "with" if _time_zone(dtype) else "without"
        return f"timestamp {zone} time zone"
    return sql_type(dtype).postgres


def incompatibility(declared: pl.DataType | type[pl.DataType], found: SourceType) -> str | None:
    """None when `found` carries every value of the declared type unchanged, else why not."""
    base = declared.base_type()
    declared_name = declared_type_name(declared)  # also refuses unmapped dtypes
    if base is pl.Datetime:
        zoned = _time_zone(declared) is not None
        if found.name in ACCEPTED_DATETIME[zoned]:
            return None
        if zoned and found.name == "timestamp":
            return "no time zone: its wall-clock values would be read in the session's zone"
        if not zoned and found.name == "timestamptz":
            return "a time zone where a naive timestamp was declared"
        return f"not a {declared_name}"
    if found.name in ACCEPTED[base] or (base is pl.String and found.enum):
        return None
    if found.name == "numeric":
        if base in NUMERIC_INTEGER_DIGITS:
            if found.precision is None:
                return "unconstrained numeric: fractions would be rounded, values may overflow"
            if found.scale is not None and found.scale > 0:
                return "fractions would be rounded"
            if found.precision - (found.scale or 0) > NUMERIC_INTEGER_DIGITS[base]:
                return f"values may not fit {declared_name}"
            return None
        if base is pl.Float64:
            if found.precision is not None and found.precision <= FLOAT64_DIGITS:
                return None
            return f"more than {FLOAT64_DIGITS} significant digits would be rounded"
    if base in NUMERIC_INTEGER_DIGITS and found.name in _NUMBERS:
        if found.name.startswith("float"):
            return "fractions would be rounded"
        return f"values may not fit {declared_name}"
    if base is pl.Float64 and found.name == "int8":
        return f"integers beyond 2^53 are not exact in {declared_name}"
    if base in NUMERIC_INTEGER_DIGITS or base is pl.Float64:
        return "not a number" if found.name in _TEXTS or found.enum else f"not {declared_name}"
    return f"not {declared_name}"


# --- The report --------------------------------------------------------------------------
