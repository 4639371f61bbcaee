"""Declared output tables: the one source of truth for the Polars dtypes the logic emits,
the pandera validation (Null, Type and Range rules with counts and sample rows), and the
PostgreSQL columns the loader's DDL is made of (warehouse/target.py). Each scenario
declares its tables with these."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import dagster as dg
import polars as pl

from aps_etl.lib.type_map import sql_type

if TYPE_CHECKING:  # pandera (and the pandas it imports, ~0.9 s) only when validating
    import pandera.polars as pa

# What the key columns mean, wherever a table's docs do not say more.
KEY_DESCRIPTIONS = {
    "base_date": "business day D: the plant's calendar day in Asia/Seoul (the partition)",
    "run_id": "the APS plan run (the partition)",
    "plan_date": "the day the plan is for",
    "product_id": "product",
    "step_id": "step of the product's route",
    "process_id": "the process of the step (from the product's route)",
    "equipment_id": "equipment (one tool)",
    "eqp_group_id": "equipment group: the tools that can do the same work",
}


LOAD_MODES = ("replace_partition", "merge")


@dataclass(frozen=True)
class Column:
    name: str
    dtype: pl.DataType
    nullable: bool = False
    min: float | None = None  # inclusive unless min_exclusive
    max: float | None = None  # inclusive
    min_exclusive: bool = False

    @property
    def pg_type(self) -> str:
        return sql_type(self.dtype).postgres

    def checks(self) -> list[pa.Check]:
        import pandera.polars as pa

        out = []
        if self.min is not None:
            out.append(pa.Check.gt(self.min) if self.min_exclusive else pa.Check.ge(self.min))
        if self.max is not None:
            out.append(pa.Check.le(self.max))
        return out


@dataclass(frozen=True)
class RowRule:
    """A rule across columns of one row; `expr` is true when the row passes. A null operand
    passes: nulls are policed by the columns' own nullability."""

    name: str
    columns: tuple[str, ...]
    expr: pl.Expr

    @property
    def label(self) -> str:
        return ",".join(self.columns)


@dataclass(frozen=True)
class OutputTable:
    name: str
    grain: tuple[str, ...]  # includes the partition column; the primary key
    columns: tuple[Column, ...]
    rules: tuple[RowRule, ...] = ()
    partition_column: str = "base_date"
    # what the table holds, one line: the asset's description in the UI
    description: str = ""
    # column -> what it means, in the planners' words (docs/metrics.md); keys without an
    # entry take KEY_DESCRIPTIONS'
    docs: Mapping[str, str] = field(default_factory=dict)
    # How a partition reaches PostgreSQL (lib/warehouse/merge.py): "replace_partition" swaps
    # the partition's rows in whole; "merge" upserts them into one table by `merge_key`
    # (the grain without the partition column), deleting rows gone from the partition when
    # `delete_missing`, keeping every version in `<name>_history` when `history` (type 2).
    load_mode: str = "replace_partition"
    merge_key: tuple[str, ...] = ()
    delete_missing: bool = False
    history: bool = False

    def __post_init__(self) -> None:
        # a declaration error is a programming error: fail at import, not at load time
        names = self.column_names
        problems = [
            msg
            for bad, msg in (
                (names[0] != self.partition_column, "the partition column must come first"),
                (len(set(names)) != len(names), "duplicate column names"),
                (not set(self.grain) <= set(names), "grain names unknown columns"),
                (self.grain[0] != self.partition_column, "grain must start with the partition"),
                (any(c.nullable for c in self.columns if c.name in self.grain), "nullable key"),
                (
                    any(not set(r.columns) <= set(names) for r in self.rules),
                    "rule on unknown column",
                ),
                (not set(self.docs) <= set(names), "docs name unknown columns"),
                (self.load_mode not in LOAD_MODES, f"load_mode not one of {LOAD_MODES}"),
                (
                    self.load_mode == "merge" and set(self.merge_key) != set(self.grain[1:]),
                    "a merge table's merge_key is its grain without the partition column",
                ),
                (
                    self.load_mode != "merge"
                    and bool(self.merge_key or self.delete_missing or self.history),
                    "merge_key, delete_missing and history are for load_mode merge",
                ),
                (
                    any(not self.description_of(n) for n in names),
                    "a column without a description",
                ),
            )
            if bad
        ]
        if problems:
            raise ValueError(f"output table {self.name}: {'; '.join(problems)}")

    def description_of(self, column: str) -> str:
        return self.docs.get(column) or KEY_DESCRIPTIONS.get(column, "")

    def table_schema(self) -> dg.TableSchema:
        """The Dagster column schema (`dagster/column_schema`): PostgreSQL types, the
        planners' descriptions, nullability and ranges, the grain as primary key."""
        columns = []
        for c in self.columns:
            ranges = []
            if c.min is not None:
                ranges.append(f"{'>' if c.min_exclusive else '>='} {c.min:g}")
            if c.max is not None:
                ranges.append(f"<= {c.max:g}")
            columns.append(
                dg.TableColumn(
                    name=c.name,
                    type=c.pg_type,
                    description=self.description_of(c.name),
                    constraints=dg.TableColumnConstraints(nullable=c.nullable, other=ranges),
                )
            )
        rules = [f"primary key ({', '.join(self.grain)})", *(r.name for r in self.rules)]
        return dg.TableSchema(columns=columns, constraints=dg.TableConstraints(other=rules))

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def polars_schema(self) -> pl.Schema:
        return pl.Schema({c.name: c.dtype for c in self.columns})

    def empty(self) -> pl.DataFrame:
        return pl.DataFrame(schema=self.polars_schema)

    @property
    def pg_columns(self) -> list[tuple[str, str, bool]]:
        """(name, PostgreSQL type, nullable) in table order."""
        return [(c.name, c.pg_type, c.nullable) for c in self.columns]

    def pandera_schema(self) -> pa.DataFrameSchema:
        import pandera.polars as pa

        return pa.DataFrameSchema(
            {
                c.name: pa.Column(c.dtype, checks=c.checks(), nullable=c.nullable)
                for c in self.columns
            },
            checks=[_row_check(r) for r in self.rules],
            unique=list(self.grain),
            report_duplicates="all",
            strict=True,
            ordered=True,
            name=self.name,
        )


def _row_check(rule: RowRule) -> pa.Check:
    import pandera.polars as pa

    expr = rule.expr.fill_null(True)
    return pa.Check(lambda data: data.lazyframe.select(expr), name=rule.name)


# Validation ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Violation:
    column: str  # a column, or the comma-joined columns of a row rule / the grain
    rule: str  # pandera's check name (not_nullable, greater_than_or_equal_to(0), ...) or ours
    count: int  # failing rows (1 for a frame-level failure such as a wrong dtype)
    samples: list[dict[str, Any]] = field(default_factory=list)  # failing rows, or the case


@dataclass(frozen=True)
class ValidationReport:
    table: str
    rows: int
    violations: list[Violation]

    @property
    def ok(self) -> bool:
        return not self.violations

    @property
    def counts(self) -> dict[tuple[str, str], int]:
        return {(v.column, v.rule): v.count for v in self.violations}

    @property
    def samples(self) -> list[dict[str, Any]]:
        return [s for v in self.violations for s in v.samples]

    def summary(self) -> str:
        if self.ok:
            return f"{self.table}: {self.rows} rows valid"
        parts = "; ".join(f"{v.column} {v.rule}: {v.count}" for v in self.violations)
        total = sum(v.count for v in self.violations)
        return f"{self.table}: {total} violations in {self.rows} rows ({parts})"

    def raise_if_failed(self) -> None:
        if not self.ok:
            raise ValidationError(self)


class ValidationError(Exception):
    def __init__(self, report: ValidationReport) -> None:
        super().__init__(report.summary())
        self.report = report


_UNIQUE = "multiple_fields_uniqueness"


def validate(table: OutputTable, df: pl.DataFrame, max_samples: int = 5) -> ValidationReport:
    """Check `df` against the declaration; never raises for bad data (see raise_if_failed)."""
    import pandera.polars as pa

    try:
        table.pandera_schema().validate(df, lazy=True)
    except pa.errors.SchemaErrors as exc:
        return ValidationReport(table.name, df.height, _violations(table, df, exc, max_samples))
    return ValidationReport(table.name, df.height, [])


def _violations(
    table: OutputTable, df: pl.DataFrame, exc: pa.errors.SchemaErrors, max_samples: int
) -> list[Violation]:
    rule_labels = {r.name: r.label for r in table.rules}
    cases = exc.failure_cases
    out = []
    for (column, check), group in cases.group_by(["column", "check"], maintain_order=True):
        if column == table.name:  # frame-level: a row rule, the grain, or the column set
            column = rule_labels.get(check, ",".join(table.grain) if check == _UNIQUE else "*")
        rows = group.filter(pl.col("index").is_not_null())["index"].unique().sort()
        if rows.len():
            samples = [df.row(i, named=True) for i in rows.head(max_samples).to_list()]
            count = rows.len()
        else:  # no row to point at: a missing/extra column or a wrong dtype
            samples = [{"failure_case": c} for c in group["failure_case"].head(max_samples)]
            count = group.height
        out.append(Violation(str(column), str(check), count, samples))
    return out


def le_rule(a: str, b: str) -> RowRule:
    """Row rule a <= b."""
    return RowRule(f"{a}<={b}", (a, b), pl.col(a) <= pl.col(b))
