"""Oracle's type names, as the data dictionary (ALL_TAB_COLUMNS) and python-oracledb's
result descriptions spell them, in source_types.py's neutral names (oracle.py's drift)."""

from __future__ import annotations

from typing import Any

from aps_etl.lib.sources.source_types import SourceType

_DRIVER_TYPES = {
    # python-oracledb's DbType names -> ALL_TAB_COLUMNS' DATA_TYPE
    "DB_TYPE_NUMBER": "NUMBER",
    "DB_TYPE_BINARY_DOUBLE": "BINARY_DOUBLE",
    "DB_TYPE_BINARY_FLOAT": "BINARY_FLOAT",
    "DB_TYPE_BINARY_INTEGER": "NUMBER",
    "DB_TYPE_VARCHAR": "VARCHAR2",
    "DB_TYPE_NVARCHAR": "NVARCHAR2",
    "DB_TYPE_CHAR": "CHAR",
    "DB_TYPE_NCHAR": "NCHAR",
    "DB_TYPE_CLOB": "CLOB",
    "DB_TYPE_NCLOB": "NCLOB",
    "DB_TYPE_LONG": "LONG",
    "DB_TYPE_DATE": "DATE",
    "DB_TYPE_TIMESTAMP": "TIMESTAMP",
    "DB_TYPE_TIMESTAMP_TZ": "TIMESTAMP WITH TIME ZONE",
    "DB_TYPE_TIMESTAMP_LTZ": "TIMESTAMP WITH LOCAL TIME ZONE",
    "DB_TYPE_BOOLEAN": "BOOLEAN",
}


def driver_type_name(name: str) -> str:
    """A result column's type (python-oracledb's DbType name) as the dictionary spells it."""
    return _DRIVER_TYPES.get(name, name.removeprefix("DB_TYPE_"))


_TEXTS = {"VARCHAR2": "varchar", "NVARCHAR2": "varchar", "CHAR": "bpchar", "NCHAR": "bpchar"}
_WALL_CLOCK = "wall clock in the source's zone"


def column_type(data_type: str, precision: Any = None, scale: Any = None) -> SourceType:
    """ALL_TAB_COLUMNS' DATA_TYPE / DATA_PRECISION / DATA_SCALE in source_types.py's
    neutral names."""
    name = data_type.upper()
    p = None if precision is None else int(precision)
    s = None if scale is None else int(scale)
    if name == "NUMBER":
        if p is None:
            if s == 0:  # INTEGER / INT / SMALLINT: NUMBER(38) in the dictionary
                return SourceType("numeric", "number(38,0) (integer)", 38, 0)
            return SourceType("numeric", "number")  # unconstrained
        display = f"number({p},{s or 0})"
        if s in (None, 0):
            if p == 1:  # the 0 / 1 flag Oracle has instead of a boolean column
                return SourceType("bool", f"{display} (0/1 flag)")
            for digits, neutral in ((4, "int2"), (9, "int4"), (18, "int8")):
                if p <= digits:
                    return SourceType(neutral, display)
        return SourceType("numeric", display, p, s or 0)
    if name == "FLOAT":  # a decimal NUMBER with a binary precision, not an IEEE float
        return SourceType("numeric", f"float({p})" if p else "float")
    if name == "BINARY_DOUBLE":
        return SourceType("float8", "binary_double")
    if name == "BINARY_FLOAT":
        return SourceType("float4", "binary_float")
    if name in _TEXTS:
        return SourceType(_TEXTS[name], name.lower())
    if name in ("CLOB", "NCLOB", "LONG"):
        return SourceType("text", name.lower())
    if name == "BOOLEAN":
        return SourceType("bool", "boolean")
    if name == "DATE":
        # a date and a time of day (to the second): a calendar day or a wall-clock
        # timestamp, as the MES uses it (a date's time of day is refused at extract)
        return SourceType("oracle_date", f"date (date and time, {_WALL_CLOCK})")
    if name.startswith("TIMESTAMP"):
        if name.endswith("WITH LOCAL TIME ZONE"):
            return SourceType("timestamptz", name.lower() + " (read in the session's zone)")
        if name.endswith("WITH TIME ZONE"):
            return SourceType("timestamptz", name.lower())
        return SourceType("timestamptz", f"{name.lower()} ({_WALL_CLOCK})")
    return SourceType(name.lower(), name.lower())
