"""The `merge` load mode: a partition's rows upserted into one table by key, inside the
day's swap transaction (swap.py), so a reader sees the whole day's merge or none of it.

Declared per output table (OutputTable.load_mode = "merge", merge_key, delete_missing,
history). The stage is filled exactly as for a partition swap (Trino's INSERT or ADBC
COPY), checked (its rows the partition's, its key unique), then, in the swap's transaction:

- the changes are computed once into a temporary table: keys absent from the target
  (insert), keys whose other columns differ (update; `IS DISTINCT FROM`, so nulls compare),
  and, with `delete_missing`, target keys absent from the partition (delete);
- applied: the partition column (`valid_from`: the business day that first showed this
  version) and `updated_at` (the transaction's time) change only with the row, so the same
  day merged twice changes nothing;
- with `history`, `<name>_history` keeps every version (type 2): the open version of a
  changed or deleted key is closed at the day (`valid_to`), the new one opened.

A daily merge only moves forward: merging day D after a later day was merged would roll the
current master data back, so it is skipped (and said). Measured against Trino's own MERGE
into the PostgreSQL connector in benchmarks/test_merge.py (docs/loading.md).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from aps_etl.lib.warehouse.target import (
    LOAD_LOG,
    STAGE_SCHEMA,
    TARGET_SCHEMA,
    TableDecl,
    ident,
)

UPDATED_AT = "updated_at"
VALID_TO = "valid_to"
HISTORY_SUFFIX = "_history"
CHANGES = "aps_merge_changes"


def is_merge(table: Any) -> bool:
    return getattr(table, "load_mode", "replace_partition") == "merge"


@dataclass(frozen=True)
class _Column:
    name: str
    pg_type: str
    nullable: bool


@dataclass  # not frozen: a TableDecl's attributes are plain ones
class MergeTarget:
    """The PostgreSQL table a merge writes (a TableDecl): the output's columns keyed by its
    merge key, plus `updated_at`; or its type-2 history, keyed by (key, valid_from), plus
    `valid_to`."""

    name: str
    partition_column: str
    grain: tuple[str, ...]
    columns: tuple[Any, ...]


def current_table(table: Any) -> MergeTarget:
    return MergeTarget(
        table.name,
        table.partition_column,
        tuple(table.merge_key),
        (*table.columns, _Column(UPDATED_AT, "timestamptz", False)),
    )


def history_table(table: Any) -> MergeTarget:
    return MergeTarget(
        table.name + HISTORY_SUFFIX,
        table.partition_column,
        (*table.merge_key, table.partition_column),
        (*table.columns, _Column(VALID_TO, "date", True)),
    )


def target_tables(table: Any) -> list[MergeTarget]:
    """What a merge table is in PostgreSQL: its current table, and its history if declared."""
    return [current_table(table), *([history_table(table)] if table.history else [])]


@dataclass(frozen=True)
class MergeCounts:
    rows: int  # the partition's rows (the stage's)
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    # set when the merge was skipped: the later partition the table already holds
    newer_partition: str | None = None

    def metadata(self) -> dict[str, Any]:
        if self.newer_partition:
            return {"merge_skipped_for_newer_day": self.newer_partition}
        return {
            "rows_inserted": self.inserted,
            "rows_updated": self.updated,
            "rows_deleted": self.deleted,
        }


def _later_partition(cursor: Any, table: TableDecl, key: str) -> str | None:
    """The latest day already merged into `table`, when later than `key` (daily keys only:
    plan runs have no order)."""
    try:
        day = dt.date.fromisoformat(key)
    except ValueError:
        return None
    cursor.execute(
        f"select max(partition_key) from {ident(TARGET_SCHEMA, LOAD_LOG)} "
        "where table_name = $1 and partition_key ~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}$'",
        parameters=(table.name,),
    )
    (latest,) = cursor.fetchone()
    return latest if latest and dt.date.fromisoformat(latest) > day else None


def _on(a: str, b: str, columns: tuple[str, ...]) -> str:
    return " and ".join(f"{a}.{ident(c)} = {b}.{ident(c)}" for c in columns)


def merge_rows(
    cursor: Any, table: Any, stage: str, partition_key: str, partition_value: Any, rows: int
) -> MergeCounts:
    """Applies the stage to the table (and its history) in the caller's transaction."""
    newer = _later_partition(cursor, table, partition_key)
    if newer:
        return MergeCounts(rows, newer_partition=newer)
    key = tuple(table.merge_key)
    names = [c.name for c in table.columns]
    values = [n for n in names if n not in key and n != table.partition_column]
    target, staged = ident(TARGET_SCHEMA, table.name), ident(STAGE_SCHEMA, stage)
    changes = ident(CHANGES)
    s_key = ", ".join(f"s.{ident(c)}" for c in key)
    differs = (
        f" or ({', '.join(f't.{ident(c)}' for c in values)}) is distinct from "
        f"({', '.join(f's.{ident(c)}' for c in values)})"
        if values
        else ""
    )
    first = ident(key[0])
    cursor.execute(
        f"create temporary table {changes} on commit drop as "
        f"select {s_key}, case when t.{first} is null then 'insert' else 'update' end as op "
        f"from {staged} s left join {target} t on {_on('t', 's', key)} "
        f"where t.{first} is null{differs}"
    )
    if table.delete_missing:
        cursor.execute(
            f"insert into {changes} select {', '.join(f't.{ident(c)}' for c in key)}, 'delete' "
            f"from {target} t where not exists (select 1 from {staged} s where "
            f"{_on('t', 's', key)})"
        )
    cursor.execute(f"select op, count(*) from {changes} group by op")
    counts = {op: int(n) for op, n in cursor.fetchall()}
    if counts:
        _apply(cursor, table, target, staged, changes, names, values)
        if table.history:
            _apply_history(cursor, table, staged, changes, names, partition_value)
    cursor.execute(f"drop table {changes}")
    return MergeCounts(
        rows,
        inserted=counts.get("insert", 0),
        updated=counts.get("update", 0),
        deleted=counts.get("delete", 0),
    )


def _apply(
    cursor: Any,
    table: Any,
    target: str,
    staged: str,
    changes: str,
    names: list[str],
    values: list[str],
) -> None:
    key = tuple(table.merge_key)
    moved = [*values, table.partition_column]  # the partition column: the version's day
    cursor.execute(
        f"update {target} t set ({', '.join(ident(c) for c in moved)}, {ident(UPDATED_AT)}) = "
        f"({', '.join(f's.{ident(c)}' for c in moved)}, now()) "
        f"from {staged} s join {changes} c on {_on('c', 's', key)} "
        f"where c.op = 'update' and {_on('t', 's', key)}"
    )
    columns = ", ".join(ident(c) for c in names)
    cursor.execute(
        f"insert into {target} ({columns}, {ident(UPDATED_AT)}) "
        f"select {', '.join(f's.{ident(c)}' for c in names)}, now() "
        f"from {staged} s join {changes} c on {_on('c', 's', key)} where c.op = 'insert'"
    )
    cursor.execute(
        f"delete from {target} t using {changes} c "
        f"where c.op = 'delete' and ({', '.join(f't.{ident(c)}' for c in key)}) = "
        f"({', '.join(f'c.{ident(c)}' for c in key)})"
    )


def _apply_history(
    cursor: Any, table: Any, staged: str, changes: str, names: list[str], day: Any
) -> None:
    key = tuple(table.merge_key)
    history = ident(TARGET_SCHEMA, table.name + HISTORY_SUFFIX)
    start, end = ident(table.partition_column), ident(VALID_TO)
    matched = _on("h", "c", key)
    # a version opened by an earlier run of this same day is replaced, not closed at once
    cursor.execute(
        f"delete from {history} h using {changes} c where c.op in ('update', 'delete') "
        f"and {matched} and h.{end} is null and h.{start} = $1",
        parameters=(day,),
    )
    cursor.execute(
        f"update {history} h set {end} = $1 from {changes} c "
        f"where c.op in ('update', 'delete') and {matched} and h.{end} is null",
        parameters=(day,),
    )
    columns = ", ".join(ident(c) for c in names)
    cursor.execute(
        f"insert into {history} ({columns}, {end}) "
        f"select {', '.join(f's.{ident(c)}' for c in names)}, null "
        f"from {staged} s join {changes} c on {_on('c', 's', key)} "
        f"where c.op in ('insert', 'update')"
    )
