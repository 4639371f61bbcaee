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

A merge only moves forward: a partition whose snapshot of the source was read before the
one the table was last merged from is skipped (and said), so a backfill of an old day from
its old snapshot never rolls the current master data back. Measured against Trino's own MERGE
into the PostgreSQL connector in benchmarks/test_merge.py (docs/loading.md).
"""

from __future__ import annotations

import json
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
    # set when the merge was skipped: the newer snapshot the table already holds
    newer_snapshot: str | None = None
    shipped: int | None = None  # rows Trino wrote to the stage (changes only, or all)

    def metadata(self) -> dict[str, Any]:
        if self.newer_snapshot:
            return {"merge_skipped_for_newer_snapshot": self.newer_snapshot}
        return {
            "rows_inserted": self.inserted,
            "rows_updated": self.updated,
            "rows_deleted": self.deleted,
            **({"rows_shipped": self.shipped} if self.shipped is not None else {}),
        }


def _newer_snapshot(cursor: Any, table: TableDecl, snapshots: dict[str, Any]) -> str | None:
    """The snapshot the table's last merge was built from, when it was taken later than
    this partition's own snapshot of the same source table: the table already holds newer
    master data. Compared by when the source was read (`taken_at`), not by business day:
    a backfill of an old day that reads the MES again merges what the MES holds now."""
    cursor.execute(
        f"select snapshots from {ident(TARGET_SCHEMA, LOAD_LOG)} "
        "where table_name = $1 order by load_id desc limit 1",
        parameters=(table.name,),
    )
    last = cursor.fetchone()
    if last is None:
        return None
    loaded = json.loads(last[0]) if isinstance(last[0], str) else last[0]
    for name, mine in snapshots.items():
        theirs = loaded.get(name) or {}
        if str(theirs.get("taken_at") or "") > str(mine.get("taken_at") or "~"):
            return f"{name} read at {theirs['taken_at']} (this run's: {mine.get('taken_at')})"
    return None


def _on(a: str, b: str, columns: tuple[str, ...]) -> str:
    return " and ".join(f"{a}.{ident(c)} = {b}.{ident(c)}" for c in columns)


@dataclass(frozen=True)
class Shipped:
    """A stage that holds only the partition's changes (Trino computed them against the
    table, changes_fill_sql): `gone` is the stage of the keys to delete, `basis` the last
    load-log id of the table the changes were computed against."""

    gone: str | None
    basis: int


class MergeBasisChanged(RuntimeError):
    """Another load merged the table between the computing of the changes and their merge,
    or the table does not hold the partition's rows after it: nothing was merged; the
    retry ships the whole partition (transient)."""


def last_merge_id(cursor: Any, table: Any) -> int:
    """The newest load-log id of `table` (0: never loaded): what changes are computed
    against, checked again in the merge's transaction."""
    cursor.execute(
        f"select coalesce(max(load_id), 0) from {ident(TARGET_SCHEMA, LOAD_LOG)} "
        "where table_name = $1",
        parameters=(table.name,),
    )
    (basis,) = cursor.fetchone()
    return int(basis)


def merge_rows(
    cursor: Any,
    table: Any,
    stage: str,
    partition_key: str,
    partition_value: Any,
    rows: int,
    shipped: Shipped | None = None,
    shipped_rows: int | None = None,
    snapshots: dict[str, Any] | None = None,
) -> MergeCounts:
    """Applies the stage to the table (and its history) in the caller's transaction. `rows`:
    the partition's rows; the stage holds them all, or only their changes (`shipped`);
    `shipped_rows`: the stage's rows, reported; `snapshots`: the partition's lineage (a
    table holding newer master data is left as it is)."""
    newer = _newer_snapshot(cursor, table, snapshots or {})
    if newer:
        return MergeCounts(rows, newer_snapshot=newer)
    if shipped is not None and last_merge_id(cursor, table) != shipped.basis:
        raise MergeBasisChanged(
            f"{table.name} {partition_key}: another load merged the table after this run "
            "computed its changes; nothing was merged (the retry ships the whole partition)"
        )
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
    t_key = ", ".join(f"t.{ident(c)}" for c in key)
    if shipped is not None and shipped.gone:
        cursor.execute(
            f"insert into {changes} select {t_key}, 'delete' "
            f"from {ident(STAGE_SCHEMA, shipped.gone)} t"
        )
    elif table.delete_missing and shipped is None:
        cursor.execute(
            f"insert into {changes} select {t_key}, 'delete' "
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
    if table.delete_missing:  # the table is the partition now: as many rows as its file
        cursor.execute(f"select count(*) from {target}")
        (held,) = cursor.fetchone()
        if int(held) != rows:
            raise MergeBasisChanged(
                f"{table.name} {partition_key}: {held:,} rows after the merge, the partition "
                f"has {rows:,}: the table differs from what the changes were computed "
                "against; nothing was merged (the retry ships the whole partition)"
            )
    return MergeCounts(
        rows,
        inserted=counts.get("insert", 0),
        updated=counts.get("update", 0),
        deleted=counts.get("delete", 0),
        shipped=shipped_rows,
    )


def _trino_on(columns: tuple[str, ...]) -> str:
    return " AND ".join(f's."{c}" = t."{c}"' for c in columns)


def changes_fill_sql(table: Any, catalog: str, source: str, stage: str) -> str:
    """Trino's INSERT of only the rows of the partition (`source`: the lake partition's
    FROM clause) that are new or differ from the table: a 1%-changed dimension ships 1% of
    its rows through the JDBC writes instead of all (benchmarks/test_merge.py)."""
    key = tuple(table.merge_key)
    names = [c.name for c in table.columns]
    values = [n for n in names if n not in key and n != table.partition_column]
    columns = ", ".join(f'"{c}"' for c in names)
    differs = "".join(f' OR s."{c}" IS DISTINCT FROM t."{c}"' for c in values)
    return (
        f'INSERT INTO {catalog}."{STAGE_SCHEMA}"."{stage}" ({columns}) '
        f"SELECT {', '.join(f's.{chr(34)}{c}{chr(34)}' for c in names)} "
        f"FROM (SELECT {columns} FROM {source}) s "
        f'LEFT JOIN {catalog}."{TARGET_SCHEMA}"."{table.name}" t ON {_trino_on(key)} '
        f'WHERE t."{key[0]}" IS NULL{differs}'
    )


def gone_fill_sql(table: Any, catalog: str, source: str, gone: str) -> str:
    """Trino's INSERT of the table's keys absent from the partition (to delete)."""
    key = tuple(table.merge_key)
    keys = ", ".join(f'"{c}"' for c in key)
    return (
        f'INSERT INTO {catalog}."{STAGE_SCHEMA}"."{gone}" ({keys}) '
        f"SELECT {', '.join(f't.{chr(34)}{c}{chr(34)}' for c in key)} "
        f'FROM {catalog}."{TARGET_SCHEMA}"."{table.name}" t '
        f"LEFT JOIN (SELECT {keys} FROM {source}) s ON {_trino_on(key)} "
        f'WHERE s."{key[0]}" IS NULL'
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
    # For every changed key (an insert too: its row may have been deleted from the table by
    # hand, its version left open): the history from the day on is what the MES says now.
    # Versions starting on or after the day are replaced (a rerun of the day; an older day
    # merged from a newer snapshot), a version running past the day ends at it.
    cursor.execute(
        f"delete from {history} h using {changes} c where {matched} and h.{start} >= $1",
        parameters=(day,),
    )
    cursor.execute(
        f"update {history} h set {end} = $1 from {changes} c "
        f"where {matched} and h.{start} < $1 and (h.{end} is null or h.{end} > $1)",
        parameters=(day,),
    )
    columns = ", ".join(ident(c) for c in names)
    cursor.execute(
        f"insert into {history} ({columns}, {end}) "
        f"select {', '.join(f's.{ident(c)}' for c in names)}, null "
        f"from {staged} s join {changes} c on {_on('c', 's', key)} "
        f"where c.op in ('insert', 'update')"
    )
