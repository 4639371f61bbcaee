"""The stages a load fills: named per table and partition, created beside the target,
checked (every row the partition's, the primary key built, the row count the lake file's)
and handed to swap.py as `StagedTable`s; and the leftovers of killed runs (abandoned stages,
orphaned partitions) that `aps-etl doctor` and the next load remove."""

from __future__ import annotations

import hashlib
import json
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlglot import exp

from aps_etl.lib.warehouse.target import (
    PARTITION_SCHEMA,
    STAGE_SCHEMA,
    TARGET_SCHEMA,
    LoadLogEntry,
    PermanentLoadError,
    RowCountMismatch,
    TableDecl,
    ident,
    literal,
)


@dataclass(frozen=True)
class StagedTable:
    """A filled, checked stage (primary key built, rows counted) ready to swap in."""

    table: TableDecl
    partition_value: Any
    partition_key: str
    stage: str
    rows: int
    partitioned: bool
    log: LoadLogEntry | None = None
    # a merge table's stage of only the partition's changes (merge.Shipped), or None: the
    # stage holds the whole partition
    shipped: Any = None


def _check_rows(
    table: TableDecl, partition_key: str, staged: int, entry: LoadLogEntry | None
) -> None:
    if entry is not None and staged != entry.rows:
        raise RowCountMismatch(
            f"stage for {table.name} {partition_key} holds {staged:,} rows but the lake file "
            f"has {entry.rows:,}; nothing was swapped"
        )


def new_stage_name(table: TableDecl, partition_key: str) -> str:
    """Lower case letters and digits only: Trino folds identifiers to lower case, and a
    unique suffix keeps concurrent loads of one partition apart."""
    suffix = re.sub(r"[^a-z0-9]", "", partition_key.lower())[:30]
    return f"{table.name}__{suffix}__{uuid.uuid4().hex[:8]}"


def partition_table_name(table: TableDecl, partition_key: str) -> str:
    """The PostgreSQL partition holding one loaded partition: readable, unique per key
    (a digest of the exact key), within PostgreSQL's 63 characters."""
    readable = re.sub(r"[^a-z0-9]", "", partition_key.lower())[:20]
    digest = hashlib.sha1(partition_key.encode()).hexdigest()[:8]
    return f"{table.name[:30]}__{readable}_{digest}"


def create_stage(
    connection: Any,
    table: TableDecl,
    stage: str,
    *,
    partitioned: bool,
    run_id: str | None = None,
) -> None:
    """A new stage, its owner (run id, host, pid) in its comment: a stage no live run owns
    is a leftover of a killed one (drop_abandoned_stages)."""
    from aps_etl.lib.liveness import this_process

    owner = {"run_id": run_id, **this_process().as_dict()}
    with connection.cursor() as cursor:
        # A partitioned target's stage becomes its partition, so it is a regular table.
        # A plain target's stage is copied and dropped: UNLOGGED, it needs no WAL.
        kind = "table" if partitioned else "unlogged table"
        cursor.execute(
            f"create {kind} {ident(STAGE_SCHEMA, stage)} "
            f"(like {ident(TARGET_SCHEMA, table.name)} including defaults)"
        )
        if getattr(table, "load_mode", None) == "merge":  # the merge sets updated_at itself
            cursor.execute(f"alter table {ident(STAGE_SCHEMA, stage)} drop column updated_at")
        cursor.execute(
            f"comment on table {ident(STAGE_SCHEMA, stage)} is "
            + exp.Literal.string(json.dumps(owner)).sql(dialect="postgres")
        )
    connection.commit()


def create_key_stage(
    connection: Any, table: TableDecl, name: str, keys: tuple[str, ...], run_id: str | None
) -> None:
    """A stage of keys only (a merge's keys to delete), owned like any stage."""
    from aps_etl.lib.liveness import this_process

    owner = {"run_id": run_id, **this_process().as_dict()}
    columns = ", ".join(ident(c) for c in keys)
    with connection.cursor() as cursor:
        cursor.execute(
            f"create unlogged table {ident(STAGE_SCHEMA, name)} as select {columns} "
            f"from {ident(TARGET_SCHEMA, table.name)} with no data"
        )
        cursor.execute(
            f"comment on table {ident(STAGE_SCHEMA, name)} is "
            + exp.Literal.string(json.dumps(owner)).sql(dialect="postgres")
        )
    connection.commit()


@dataclass(frozen=True)
class StageInfo:
    name: str
    owner: dict[str, Any]
    age_s: float
    rows_estimate: int


def list_stages(connection: Any) -> list[StageInfo]:
    """Every table in the stage schema, with its owner and the owner process's age."""
    with connection.cursor() as cursor:
        cursor.execute(
            "select c.relname, coalesce(obj_description(c.oid, 'pg_class'), ''), "
            "c.reltuples::bigint from pg_class c join pg_namespace n on n.oid = c.relnamespace "
            "where n.nspname = $1 and c.relkind in ('r', 'p') order by 1",
            parameters=(STAGE_SCHEMA,),
        )
        found = cursor.fetchall()
    connection.commit()
    stages = []
    now = time.time()
    for name, comment, tuples in found:
        try:
            owner = json.loads(comment) if comment else {}
        except ValueError:
            owner = {}
        started = float(owner.get("started") or 0)
        stages.append(StageInfo(name, owner, now - started if started else 0.0, int(tuples)))
    return stages


def drop_abandoned_stages(
    connection: Any, is_live: Callable[[dict[str, Any]], bool], *, lock_timeout_ms: int = 500
) -> list[str]:
    """Drops the stages whose owner `is_live` says is gone; a stage still in use (its lock
    not free within `lock_timeout_ms`) is left for next time. Returns the names dropped."""
    dropped = []
    for stage in list_stages(connection):
        if is_live(stage.owner):
            continue
        with connection.cursor() as cursor:
            try:
                cursor.execute(f"set local lock_timeout = '{int(lock_timeout_ms)}ms'")
                cursor.execute(f"drop table if exists {ident(STAGE_SCHEMA, stage.name)}")
                connection.commit()
                dropped.append(stage.name)
            except Exception:
                connection.rollback()
    return dropped


def orphan_partitions(connection: Any) -> list[str]:
    """Tables in the partition schema attached to no target: left by an interrupted
    operation of an earlier version (the swap's transaction leaves none)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace "
            "where n.nspname = $1 and c.relkind = 'r' and not c.relispartition order by 1",
            parameters=(PARTITION_SCHEMA,),
        )
        found = [name for (name,) in cursor.fetchall()]
    connection.commit()
    return found


def drop_stage(connection: Any, stage: str) -> None:
    connection.rollback()  # a failed statement before us leaves the transaction aborted
    with connection.cursor() as cursor:
        cursor.execute(f"drop table if exists {ident(STAGE_SCHEMA, stage)}")
    connection.commit()


def _foreign_rows_error(
    cursor: Any, table: TableDecl, partition_value: Any, staged: str
) -> PermanentLoadError:
    cursor.execute(
        f"select count(*) from {staged} where {ident(table.partition_column)} is distinct from $1",
        parameters=(partition_value,),
    )
    (foreign,) = cursor.fetchone()
    return PermanentLoadError(
        f"stage for {table.name} holds {foreign} rows outside partition "
        f"{partition_value}; nothing was swapped"
    )


def prepare_stage(
    connection: Any,
    table: TableDecl,
    partition_value: Any,
    stage: str,
    *,
    partition_key: str | None = None,
    partitioned: bool = False,
    log: LoadLogEntry | None = None,
    shipped: Any = None,
) -> Any:
    """Checks a filled stage and readies it for the swap, on the stage alone (nobody else
    sees it): every row is the partition's (for a partitioned target, a CHECK constraint
    that also proves the partition bound, so ATTACH need not scan again), the primary key
    built in one pass, the row count equal to the lake file's. Returns a StagedTable."""
    key = partition_key if partition_key is not None else str(partition_value)
    staged = ident(STAGE_SCHEMA, stage)
    with connection.cursor() as cursor:
        try:
            if partitioned:
                cursor.execute(
                    f"alter table {staged} add constraint {ident(stage[:50] + '_in_partition')} "
                    f"check ({ident(table.partition_column)} = {literal(partition_value)})"
                )
                grain = ", ".join(ident(c) for c in table.grain)
                cursor.execute(f"alter table {staged} add primary key ({grain})")
            else:
                cursor.execute(
                    f"select count(*) from {staged} "
                    f"where {ident(table.partition_column)} is distinct from $1",
                    parameters=(partition_value,),
                )
                if cursor.fetchone()[0]:
                    raise PermanentLoadError("violated")
                merge_key = getattr(table, "merge_key", ())
                if merge_key:  # unique, as the merge's join needs (and indexed for it)
                    columns = ", ".join(ident(c) for c in merge_key)
                    cursor.execute(f"alter table {staged} add primary key ({columns})")
        except Exception as exc:
            connection.rollback()
            if "violated" not in str(exc):
                raise
            raise _foreign_rows_error(cursor, table, partition_value, staged) from None
        cursor.execute(f"select count(*) from {staged}")
        (rows,) = cursor.fetchone()
        try:
            if shipped is None:  # a stage of changes only: the merge checks the rows
                _check_rows(table, key, int(rows), log)
        except RowCountMismatch:
            connection.rollback()
            raise
    connection.commit()
    return StagedTable(table, partition_value, key, stage, int(rows), partitioned, log, shipped)
