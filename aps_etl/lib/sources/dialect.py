"""How an engine spells the extract SELECT: its sqlglot dialect, the type each declared
Polars type is cast to, and how an instant (an extract window's bound) is written.

Two families of time:

- `ZonedInstants` (PostgreSQL): the source stores instants (timestamptz); a bound is a UTC
  instant literal and every session runs in UTC.
- `WallClock` (MariaDB/MySQL, Oracle, SQL Server): MES tables there keep the plant's wall
  clock in a DATETIME/TIMESTAMP/datetime2 without a zone. The source's zone is a setting
  (APS_SOURCE_TIME_ZONE, default the plant's +09:00); a bound is written as that zone's wall
  clock, and what is read back is localized in it and converted to UTC (engines/base.py).
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from dataclasses import dataclass, field
from typing import Any

import polars as pl
from sqlglot import exp


def parse_zone(text: str) -> dt.tzinfo:
    """A time zone setting: a fixed offset (+09:00, -05:30) or an IANA name (Asia/Seoul)."""
    value = text.strip()
    if value[:1] in "+-" and len(value) == 6 and value[3] == ":":
        try:
            hours, minutes = int(value[1:3]), int(value[4:6])
        except ValueError:
            hours = minutes = -1
        if 0 <= hours <= 14 and 0 <= minutes < 60:
            sign = 1 if value[0] == "+" else -1
            return dt.timezone(sign * dt.timedelta(hours=hours, minutes=minutes))
    try:
        return zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"source time zone {text!r}: expected a fixed offset such as +09:00 or an IANA "
            "name such as Asia/Seoul"
        ) from None


def zone_name(zone: dt.tzinfo) -> str:
    """The setting's spelling of a zone: +09:00 or Asia/Seoul (Polars and SQL take both)."""
    if isinstance(zone, zoneinfo.ZoneInfo):
        return zone.key
    offset = zone.utcoffset(None) or dt.timedelta()
    sign = "-" if offset < dt.timedelta() else "+"
    minutes = abs(int(offset.total_seconds())) // 60
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"


@dataclass(frozen=True)
class SqlDialect:
    """The extract SELECT's spelling for one engine family."""

    name: str  # as operators say it: "PostgreSQL", "MariaDB", ...
    sqlglot: str  # sqlglot's dialect name
    # declared Polars type -> the cast target, in this dialect's own spelling
    casts: dict[type[pl.DataType], str] = field(default_factory=dict)

    def cast_type(self, dtype: pl.DataType | type[pl.DataType]) -> exp.DataType:
        try:
            text = self.casts[dtype.base_type()]
        except KeyError:
            raise ValueError(f"{self.name}: no cast declared for {dtype}") from None
        return exp.DataType.build(text, dialect=self.sqlglot)

    def instant(self, value: dt.datetime) -> exp.Expr:
        """An extract window's bound as a literal of this engine."""
        raise NotImplementedError

    def string(self, value: str) -> str:
        """A string literal, escaped the way this engine reads it."""
        return exp.Literal.string(value).sql(dialect=self.sqlglot)

    def render(self, expression: exp.Expr) -> str:
        return expression.sql(dialect=self.sqlglot)

    def parse(self, sql: str) -> Any:
        import sqlglot

        return sqlglot.parse_one(sql, dialect=self.sqlglot)


def _aware(value: dt.datetime) -> dt.datetime:
    if value.tzinfo is None:
        raise ValueError("extract window bounds must be timezone-aware")
    return value


@dataclass(frozen=True)
class ZonedInstants(SqlDialect):
    """Instants stored as such (PostgreSQL's timestamptz): bounds are UTC literals."""

    instant_type: str = "TIMESTAMPTZ"

    def instant(self, value: dt.datetime) -> exp.Expr:
        text = _aware(value).astimezone(dt.UTC).isoformat()
        return exp.cast(exp.Literal.string(text), exp.DataType.build(self.instant_type))


@dataclass(frozen=True)
class WallClock(SqlDialect):
    """Wall-clock timestamps in the source's zone: bounds are that zone's wall clock."""

    time_zone: dt.tzinfo = dt.UTC
    # the wall-clock type a bound is cast to, in this dialect (DATETIME(6), DATETIME2(6), ...)
    wall_clock_type: str = "TIMESTAMP(6)"

    def wall_clock(self, value: dt.datetime) -> str:
        local = _aware(value).astimezone(self.time_zone).replace(tzinfo=None)
        return local.isoformat(sep=" ", timespec="microseconds")

    def instant(self, value: dt.datetime) -> exp.Expr:
        return exp.cast(
            exp.Literal.string(self.wall_clock(value)),
            exp.DataType.build(self.wall_clock_type, dialect=self.sqlglot),
        )
