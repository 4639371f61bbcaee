"""Declarative extract specs: a new source is one spec here plus its test.

A spec names a table (or a query), how rows are chosen for the business day D
(`full`: all rows; `incremental`: rows whose `partition_column` lies in W(D);
`query`: a SQL text with `{start}` / `{end}` placeholders; `key`: rows whose
`partition_column` equals a non-date partition key such as a plan run_id), and the
declared schema, which
is also the contract that schema drift is measured against. The SELECT casts every column
explicitly to its declared type: ADBC would otherwise hand PostgreSQL `numeric` over as an
opaque string.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from functools import cache
from typing import Literal, cast

import dagster as dg
import polars as pl
import sqlglot
from sqlglot import exp

from aps_etl.lib.type_map import sql_type

Mode = Literal["full", "incremental", "query", "key"]
# What an extract that looks incomplete (0 rows, or far fewer than the table's earlier
# days) does: "fail" keeps it out of the lake and fails the run; "warn" takes it anyway.
GuardPolicy = Literal["fail", "warn"]
WATERMARK_COLUMN = "updated_at"

# PostgreSQL cast target for each declared Polars type.
TS = pl.Datetime("us", "UTC")


# What to do when the source's columns drift from the spec (lib/sources/drift.py).
DriftPolicy = Literal["warn", "fail"]
DRIFT_POLICIES: tuple[DriftPolicy, ...] = ("warn", "fail")


@dataclass(frozen=True)
class ExtractSpec:
    name: str
    columns: dict[str, pl.DataType | type[pl.DataType]]
    mode: Mode
    table: str | None = None
    partition_column: str | None = None
    query: str | None = None
    # Columns whose values may legitimately be null (the rest are checked not null).
    nullable: frozenset[str] = field(default_factory=frozenset)
    # The source's primary key: the identity of a row when a snapshot is composed from the
    # previous one plus the rows changed since (newest updated_at wins).
    primary_key: tuple[str, ...] = ()
    # Value rules every extracted row must satisfy (the source's CHECK constraints),
    # checked on every new snapshot before any transform reads it: name -> a Polars
    # expression that is true on a valid row.
    rules: dict[str, pl.Expr] = field(default_factory=dict)
    # Completeness guard: 0 rows, or fewer than `min_fraction` of the median row count of
    # the table's earlier days, is "incomplete" (master data: never checked by fraction).
    guard: GuardPolicy = "warn"
    min_fraction: float = 0.5
    # PRD 3.1's incremental / full option: when the source changed, take only the changed
    # rows (a delta, where the spec is composable) or read the partition whole again.
    reload: Literal["incremental", "full"] = "incremental"
    description: str = ""
    # Schema drift (§6.2), checked before each extract: "fail" stops on removed or retyped
    # columns (added ones only warn: the SELECT names the declared columns); "warn" logs all.
    drift_policy: DriftPolicy = "fail"

    def __post_init__(self) -> None:
        if self.mode == "query":
            if not self.query:
                raise ValueError(f"extract spec {self.name}: mode 'query' needs a query")
        elif not self.table:
            raise ValueError(f"extract spec {self.name}: mode {self.mode!r} needs a table")
        if self.mode in ("incremental", "key") and self.partition_column not in self.columns:
            raise ValueError(
                f"extract spec {self.name}: {self.mode} needs a declared partition_column"
            )
        unknown = [c for c in (*self.primary_key, *self.nullable) if c not in self.columns]
        if unknown:
            raise ValueError(f"extract spec {self.name}: undeclared columns {unknown}")
        if self.reload not in ("incremental", "full"):
            raise ValueError(f"extract spec {self.name}: reload must be incremental or full")
        if not 0 <= self.min_fraction <= 1:
            raise ValueError(f"extract spec {self.name}: min_fraction must lie in [0, 1]")

    @property
    def watermark_column(self) -> str | None:
        """The column that says when a row last changed (the incremental watermark)."""
        return WATERMARK_COLUMN if WATERMARK_COLUMN in self.columns else None

    @property
    def composable(self) -> bool:
        """Whether a new snapshot may be the previous one plus the rows changed since: it
        needs a primary key (to replace rows by) and updated_at (to find them)."""
        return self.watermark_column is not None and bool(self.primary_key)

    @property
    def deltas(self) -> bool:
        """Whether changes are taken as deltas (reload incremental, composable)."""
        return self.reload == "incremental" and self.composable

    @property
    def source_table(self) -> str:
        return self.table or self.name

    def polars_schema(self) -> pl.Schema:
        return pl.Schema(self.columns)

    def table_schema(self) -> dg.TableSchema:
        """The Dagster column schema (`dagster/column_schema`) of the snapshot: the declared
        PostgreSQL types, where each column comes from (with the contract's own comment on
        it), nullability, the primary key and the source rules."""
        notes = contract_comments().get(self.source_table, {}) if self.table else {}
        columns = []
        for name, dtype in self.columns.items():
            origin = f"{self.source_table}.{name}" if self.table else f"column {name} of its query"
            note = notes.get(name)
            columns.append(
                dg.TableColumn(
                    name=name,
                    type=sql_type(dtype).postgres,
                    description=f"{origin}{f': {note}' if note else ''}",
                    constraints=dg.TableColumnConstraints(nullable=name in self.nullable),
                )
            )
        other = [f"primary key ({', '.join(self.primary_key)})"] if self.primary_key else []
        other += list(self.rules)
        return dg.TableSchema(columns=columns, constraints=dg.TableConstraints(other=other))

    def select_sql(
        self,
        start: dt.datetime | None = None,
        end: dt.datetime | None = None,
        *,
        key: str | None = None,
        changed_since: dt.datetime | None = None,
    ) -> str:
        """The extract query for the window [start, end) in UTC, or for a partition key;
        with `changed_since`, only its rows whose updated_at is later (a delta)."""
        sql = self._select_sql(start, end, key=key)
        if changed_since is None:
            return sql
        if self.watermark_column is None:
            raise ValueError(f"extract spec {self.name} has no {WATERMARK_COLUMN} column")
        column = exp.column(self.watermark_column, quoted=True)
        query = cast(exp.Query, sqlglot.parse_one(sql, dialect="postgres"))  # our own SELECT
        return (
            exp.select("*")
            .from_(query.subquery("delta"))
            .where(column > sqlglot.parse_one(_timestamptz(changed_since), dialect="postgres"))
            .sql(dialect="postgres")
        )

    def _select_sql(
        self,
        start: dt.datetime | None = None,
        end: dt.datetime | None = None,
        *,
        key: str | None = None,
    ) -> str:
        projections = [
            exp.Cast(
                this=exp.column(name, table="src", quoted=True),
                to=exp.DataType.build(pg_type(dtype), dialect="postgres"),
            ).as_(name, quoted=True)
            for name, dtype in self.columns.items()
        ]
        if self.mode == "key":
            if key is None:
                raise ValueError(f"extract spec {self.name}: mode 'key' needs a partition key")
            assert self.partition_column is not None  # checked in __post_init__
            column = exp.column(self.partition_column, table="src", quoted=True)
            return (
                exp.select(*projections)
                .from_(exp.alias_(exp.to_table(self.source_table), "src", table=True))
                .where(column.eq(exp.Literal.string(key)))
                .sql(dialect="postgres")
            )
        table = exp.alias_(exp.to_table(self.source_table, dialect="postgres"), "src", table=True)
        if self.mode == "full":
            return exp.select(*projections).from_(table).sql(dialect="postgres")
        if start is None or end is None:
            raise ValueError(f"extract spec {self.name}: mode {self.mode!r} needs a window")
        start_literal, end_literal = _timestamptz(start), _timestamptz(end)
        if self.mode == "query":
            inner = self.query.format(start=start_literal, end=end_literal)  # type: ignore[union-attr]
            # the spec's SQL text is a query (a SELECT); anything else fails on .subquery
            parsed = cast(exp.Query, sqlglot.parse_one(inner, dialect="postgres"))
            source: exp.Expr = parsed.subquery("src")
        else:
            source = table
        select = exp.select(*projections).from_(source)
        if self.mode == "incremental":
            assert self.partition_column is not None  # checked in __post_init__
            column = exp.column(self.partition_column, table="src", quoted=True)
            select = select.where(
                exp.and_(
                    column >= sqlglot.parse_one(start_literal, dialect="postgres"),
                    column < sqlglot.parse_one(end_literal, dialect="postgres"),
                )
            )
        return select.sql(dialect="postgres")


def pg_type(dtype: pl.DataType | type[pl.DataType]) -> str:
    """The PostgreSQL type the extract casts a declared column to (type_map.py)."""
    return sql_type(dtype).postgres


def _timestamptz(value: dt.datetime) -> str:
    if value.tzinfo is None:
        raise ValueError("extract window bounds must be timezone-aware")
    return f"CAST('{value.astimezone(dt.UTC).isoformat()}' AS TIMESTAMPTZ)"


@cache
def contract_comments() -> dict[str, dict[str, str]]:
    """{table: {column: comment}} from the source contract's inline `-- comments`."""
    from importlib.resources import files

    found: dict[str, dict[str, str]] = {}
    table = None
    text = files("aps_etl.devdata").joinpath("mes_source.sql").read_text()
    for line in text.splitlines():
        start = re.match(r"\s*create table (\w+)", line, re.IGNORECASE)
        if start:
            table = start.group(1)
            continue
        if line.startswith(")"):
            table = None
            continue
        column = re.match(r"\s+(\w+)\s+[^-]*--\s*(.+)$", line)
        if table and column:
            found.setdefault(table, {})[column.group(1)] = column.group(2).strip()
    return found
