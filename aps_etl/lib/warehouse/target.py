"""Target tables in PostgreSQL: DDL from the declared output schema, the pre-write schema
check and the load log; stages.py holds the stages loads fill, swap.py swaps them in (a
whole partition of a run at once).

The swap contract: after loading partition P of table T, T holds exactly P's rows from the
transform output (no duplicates, no leftovers) and no reader ever sees P half-loaded.

Targets are created LIST-partitioned by their partition column (base_date or run_id), one
PostgreSQL partition per loaded partition. The stage (filled by Trino or ADBC COPY) is
checked, given its primary key, and becomes P's partition in one short transaction with
the other tables of P (swap.py): the previous partition of P, if any, is detached and
dropped, the stage attached. The rows
are written once, and a rerun leaves no dead rows behind (benchmarks/: at 1M rows the
swap takes under 1 s instead of 3-7 s for DELETE + INSERT ... SELECT into the table).
Targets that already exist as plain tables keep the row swap: one transaction that
deletes P's rows and inserts the stage's.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sqlglot import exp

from aps_etl.lib.type_map import BY_POSTGRES

STAGE_SCHEMA = "aps_stage"
# One row per loaded partition: what was loaded, when, by which run, from which snapshots.
LOAD_LOG = "aps_load_log"
TARGET_SCHEMA = "public"
# Where the partitions of the partitioned targets live: `public` shows only the tables.
PARTITION_SCHEMA = "aps_partitions"


class ColumnDecl(Protocol):
    name: str
    pg_type: str
    nullable: bool


class TableDecl(Protocol):
    name: str
    partition_column: str
    grain: tuple[str, ...]
    columns: Any  # sequence of ColumnDecl


class PermanentLoadError(RuntimeError):
    """A load failure that retrying cannot fix (unlike a lost connection or a busy Trino)."""


class TargetSchemaMismatch(PermanentLoadError):
    """The target table's columns differ from the transform output's declared schema."""


def ident(*parts: str) -> str:
    """A quoted PostgreSQL identifier (schema.table or column), never pasted raw."""
    return ".".join(exp.to_identifier(part, quoted=True).sql(dialect="postgres") for part in parts)


def create_table_sql(
    table: TableDecl, schema: str = TARGET_SCHEMA, *, partitioned: bool = True
) -> str:
    columns = ",\n  ".join(
        f"{ident(c.name)} {c.pg_type}{'' if c.nullable else ' not null'}" for c in table.columns
    )
    key = ", ".join(ident(c) for c in table.grain)
    partitioning = f" partition by list ({ident(table.partition_column)})" if partitioned else ""
    return (
        f"create table if not exists {ident(schema, table.name)} (\n  {columns},\n"
        f"  primary key ({key})\n){partitioning}"
    )


def _information_schema_name(pg_type: str) -> str:
    known = BY_POSTGRES.get(pg_type)
    return known.information_schema if known else pg_type


@dataclass(frozen=True)
class SchemaDiff:
    missing: list[str]
    unexpected: list[str]
    type_changes: list[tuple[str, str, str]]
    order_differs: bool

    def __bool__(self) -> bool:
        return bool(self.missing or self.unexpected or self.type_changes or self.order_differs)

    def describe(self) -> str:
        lines = [f"  missing column {c}" for c in self.missing]
        lines += [f"  unexpected column {c}" for c in self.unexpected]
        lines += [
            f"  {c}: target has {got}, output declares {want}" for c, got, want in self.type_changes
        ]
        if self.order_differs:
            lines.append("  column order differs")
        return "\n".join(lines)


def diff_schema(table: TableDecl, actual: list[tuple[str, str]]) -> SchemaDiff:
    # information_schema spells some types differently from the DDL (type_map.py)
    declared = [(c.name, _information_schema_name(c.pg_type)) for c in table.columns]
    want, got = dict(declared), dict(actual)
    return SchemaDiff(
        missing=[c for c in want if c not in got],
        unexpected=[c for c in got if c not in want],
        type_changes=[(c, got[c], want[c]) for c in want if c in got and got[c] != want[c]],
        order_differs=[c for c, _ in actual if c in want] != [c for c, _ in declared if c in got],
    )


def target_columns(cursor: Any, table: str, schema: str = TARGET_SCHEMA) -> list[tuple[str, str]]:
    cursor.execute(
        "select column_name, data_type from information_schema.columns "
        "where table_schema = $1 and table_name = $2 order by ordinal_position",
        parameters=(schema, table),
    )
    return [(name, kind) for name, kind in cursor.fetchall()]


def ensure_target(
    connection: Any, table: TableDecl, merged_into: Sequence[TableDecl] | None = None
) -> bool:
    """Creates the target (and the staging and partition schemas) if absent, then checks
    its schema against the declaration; a mismatch stops the load before anything is
    written. Returns whether the target is partitioned (a plain one made by an earlier
    version keeps the row swap). `merged_into`: the plain tables a merge table is in
    PostgreSQL (merge.target_tables), created and checked instead."""
    with connection.cursor() as cursor:
        # One at a time: the loads of a run go side by side, and PostgreSQL's IF NOT EXISTS
        # is not safe against a concurrent create (a unique violation in the catalog).
        cursor.execute("select pg_advisory_xact_lock(hashtext('aps_etl.ensure_target'))")
        cursor.fetchall()
        cursor.execute(f"create schema if not exists {ident(STAGE_SCHEMA)}")
        cursor.execute(f"create schema if not exists {ident(PARTITION_SCHEMA)}")
        tables = list(merged_into) if merged_into else [table]
        for each in tables:
            cursor.execute(create_table_sql(each, partitioned=not merged_into))
        cursor.execute(LOAD_LOG_SQL)
        for statement in LOAD_LOG_MERGE_COUNTS:
            cursor.execute(statement)
        connection.commit()
        diffs = [(t.name, diff_schema(t, target_columns(cursor, t.name))) for t in tables]
        cursor.execute(
            "select c.relkind from pg_class c join pg_namespace n on n.oid = c.relnamespace "
            "where n.nspname = $1 and c.relname = $2",
            parameters=(TARGET_SCHEMA, table.name),
        )
        (kind,) = cursor.fetchone()
        connection.commit()
    for name, diff in diffs:
        if diff:
            raise TargetSchemaMismatch(
                f"target table {TARGET_SCHEMA}.{name} does not match the output schema; "
                f"nothing was loaded:\n{diff.describe()}"
            )
    return kind == "p"


LOAD_LOG_SQL = f"""create table if not exists {ident(TARGET_SCHEMA, LOAD_LOG)} (
  load_id bigint generated always as identity primary key,
  job text not null,
  table_name text not null,
  partition_key text not null,
  rows bigint not null,
  snapshots jsonb not null,
  dagster_run_id text,
  loader text not null,
  loaded_at timestamptz not null default now(),
  rows_inserted bigint,
  rows_updated bigint,
  rows_deleted bigint
)"""
# a load log made before merges counted their rows
LOAD_LOG_MERGE_COUNTS = [
    f"alter table {ident(TARGET_SCHEMA, LOAD_LOG)} add column if not exists {ident(c)} bigint"
    for c in ("rows_inserted", "rows_updated", "rows_deleted")
]


@dataclass(frozen=True)
class LoadLogEntry:
    """What a load records beside the rows it swaps in, in the same transaction."""

    job: str
    rows: int  # the lake file's rows: the stage must hold exactly these
    snapshots: dict[str, Any]
    run_id: str | None
    loader: str


class RowCountMismatch(PermanentLoadError):
    """The stage holds other than the lake file's rows: nothing is swapped in."""


def log_load(
    cursor: Any,
    table: TableDecl,
    partition_key: str,
    entry: LoadLogEntry,
    changed: tuple[int, int, int] | None = None,
) -> None:
    """One row of the load lineage; `changed`: a merge's rows (inserted, updated, deleted)."""
    inserted, updated, deleted = changed if changed else (None, None, None)
    cursor.execute(
        f"insert into {ident(TARGET_SCHEMA, LOAD_LOG)} "
        "(job, table_name, partition_key, rows, snapshots, dagster_run_id, loader, "
        "rows_inserted, rows_updated, rows_deleted) "
        "values ($1, $2, $3, $4, $5::jsonb, $6, $7, $8, $9, $10)",
        parameters=(
            entry.job,
            table.name,
            partition_key,
            entry.rows,
            json.dumps(entry.snapshots, sort_keys=True, default=str),
            entry.run_id,
            entry.loader,
            inserted,
            updated,
            deleted,
        ),
    )


def literal(value: Any) -> str:
    """A partition value as a SQL literal (DDL takes no parameters)."""
    if isinstance(value, dt.date):
        return f"date '{value.isoformat()}'"
    return exp.Literal.string(str(value)).sql(dialect="postgres")
