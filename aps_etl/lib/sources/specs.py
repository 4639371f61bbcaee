"""Declarative extract specs: a new source is one spec here plus its test.

A spec names a table (or a query), how rows are chosen for the business day D
(`full`: all rows; `incremental`: rows whose `partition_column` lies in W(D);
`query`: a SQL text with `{start}` / `{end}` placeholders; `key`: rows whose
`partition_column` equals a non-date partition key such as a plan run_id), and the
declared schema, which
is also the contract that schema drift is measured against. A spec is engine-neutral: the
SELECT is built as a sqlglot tree and written in the source engine's dialect
(dialect.py), every column cast explicitly to the engine's type for its declared
one (ADBC would otherwise hand PostgreSQL `numeric` over as an opaque string). A `query`
spec's text is PostgreSQL's SQL, transpiled for the others.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from functools import cache
from typing import Literal

import dagster as dg
import polars as pl
import sqlglot
from sqlglot import exp

from aps_etl.lib.sources.dialect import SqlDialect
from aps_etl.lib.type_map import sql_type

Mode = Literal["full", "incremental", "query", "key"]
# What an extract that looks incomplete (0 rows, or far fewer than the table's earlier
# days) does: "fail" keeps it out of the lake and fails the run; "warn" takes it anyway.
GuardPolicy = Literal["fail", "warn"]
WATERMARK_COLUMN = "updated_at"

# The declared type of every timestamp: an instant, in UTC.
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
        dialect: SqlDialect,
        key: str | None = None,
        changed_since: dt.datetime | None = None,
    ) -> str:
        """The extract query for the window [start, end) or for a partition key, in the
        source engine's `dialect`; with `changed_since`, only its rows whose updated_at is
        later (a delta). Every declared column is cast to the engine's type for it."""
        select = self._select(start, end, key, dialect)
        if changed_since is not None:
            if self.watermark_column is None:
                raise ValueError(f"extract spec {self.name} has no {WATERMARK_COLUMN} column")
            column = exp.column(self.watermark_column, quoted=True)
            select = (
                exp.select("*")
                .from_(select.subquery("delta"))
                .where(column > dialect.instant(changed_since))
            )
        return dialect.render(select)

    def _select(
        self,
        start: dt.datetime | None,
        end: dt.datetime | None,
        key: str | None,
        dialect: SqlDialect,
    ) -> exp.Select:
        projections = [
            exp.Cast(
                this=exp.column(name, table="src", quoted=True), to=dialect.cast_type(dtype)
            ).as_(name, quoted=True)
            for name, dtype in self.columns.items()
        ]
        table = exp.alias_(exp.to_table(self.source_table), "src", table=True)
        if self.mode == "key":
            if key is None:
                raise ValueError(f"extract spec {self.name}: mode 'key' needs a partition key")
            assert self.partition_column is not None  # checked in __post_init__
            column = exp.column(self.partition_column, table="src", quoted=True)
            return exp.select(*projections).from_(table).where(column.eq(exp.Literal.string(key)))
        if self.mode == "full":
            return exp.select(*projections).from_(table)
        if start is None or end is None:
            raise ValueError(f"extract spec {self.name}: mode {self.mode!r} needs a window")
        bounds = {"start": dialect.instant(start), "end": dialect.instant(end)}
        if self.mode == "query":
            source: exp.Expr = query_with_window(self, bounds).subquery("src")
        else:
            source = table
        select = exp.select(*projections).from_(source)
        if self.mode == "incremental":
            assert self.partition_column is not None  # checked in __post_init__
            column = exp.column(self.partition_column, table="src", quoted=True)
            select = select.where(exp.and_(column >= bounds["start"], column < bounds["end"]))
        return select


def query_with_window(spec: ExtractSpec, bounds: dict[str, exp.Expr]) -> exp.Query:
    """A `query` spec's SQL (written in PostgreSQL's, the contract's dialect) parsed, its
    `{start}` / `{end}` replaced by the engine's literals: sqlglot then writes it in any
    engine's dialect, so no second copy of a query is kept per engine."""
    text = spec.query.format(start=":aps_start", end=":aps_end")  # type: ignore[union-attr]
    parsed = sqlglot.parse_one(text, dialect="postgres")
    if not isinstance(parsed, exp.Query):
        raise ValueError(f"extract spec {spec.name}: its query is not a SELECT")

    def fill(node: exp.Expr) -> exp.Expr:
        if isinstance(node, exp.Placeholder) and node.name in ("aps_start", "aps_end"):
            return bounds[node.name.removeprefix("aps_")].copy()
        return node

    filled = parsed.transform(fill)
    assert isinstance(filled, exp.Query)  # only placeholders were replaced
    return filled


def pg_type(dtype: pl.DataType | type[pl.DataType]) -> str:
    """The PostgreSQL type of a declared column (type_map.py)."""
    return sql_type(dtype).postgres


@cache
def contract_comments() -> dict[str, dict[str, str]]:
    """{table: {column: comment}} from the source contract's inline `-- comments`."""
    from importlib.resources import files

    found: dict[str, dict[str, str]] = {}
    table = None
    # through the top package: importing aps_etl.devdata would import its seeding code
    text = files("aps_etl").joinpath("devdata", "mes_source.sql").read_text()
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
