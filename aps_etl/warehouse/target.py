"""Target tables in PostgreSQL: DDL from the declared output schema, the pre-write schema
check, and the one-transaction partition swap that both loaders end with.

The swap contract: after loading partition P of table T, T holds exactly P's rows from the
transform output (no duplicates, no leftovers) and no reader ever sees P half-loaded,
because the DELETE of the old rows and the INSERT of the new ones commit together.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any, Protocol

from sqlglot import exp

STAGE_SCHEMA = "aps_stage"
TARGET_SCHEMA = "public"


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


def create_table_sql(table: TableDecl, schema: str = TARGET_SCHEMA) -> str:
    columns = ",\n  ".join(
        f"{ident(c.name)} {c.pg_type}{'' if c.nullable else ' not null'}" for c in table.columns
    )
    key = ", ".join(ident(c) for c in table.grain)
    return (
        f"create table if not exists {ident(schema, table.name)} (\n  {columns},\n"
        f"  primary key ({key})\n)"
    )


# information_schema spells some types differently from the DDL.
_PG_TYPE_ALIASES = {
    "bigint": "bigint",
    "integer": "integer",
    "double precision": "double precision",
    "text": "text",
    "date": "date",
    "boolean": "boolean",
    "timestamptz": "timestamp with time zone",
    "timestamp with time zone": "timestamp with time zone",
}


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
    declared = [(c.name, _PG_TYPE_ALIASES.get(c.pg_type, c.pg_type)) for c in table.columns]
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


def ensure_target(connection: Any, table: TableDecl) -> None:
    """Creates the target (and the staging schema) if absent, then checks its schema
    against the declaration; a mismatch stops the load before anything is written."""
    with connection.cursor() as cursor:
        cursor.execute(f"create schema if not exists {ident(STAGE_SCHEMA)}")
        cursor.execute(create_table_sql(table))
        connection.commit()
        diff = diff_schema(table, target_columns(cursor, table.name))
    if diff:
        raise TargetSchemaMismatch(
            f"target table {TARGET_SCHEMA}.{table.name} does not match the output schema; "
            f"nothing was loaded:\n{diff.describe()}"
        )


def new_stage_name(table: TableDecl, partition_key: str) -> str:
    """Lower case letters and digits only: Trino folds identifiers to lower case, and a
    unique suffix keeps concurrent loads of one partition apart."""
    suffix = re.sub(r"[^a-z0-9]", "", partition_key.lower())[:30]
    return f"{table.name}__{suffix}__{uuid.uuid4().hex[:8]}"


def create_stage(connection: Any, table: TableDecl, stage: str) -> None:
    with connection.cursor() as cursor:
        # UNLOGGED: the stage is rebuilt on any failure, so it needs no WAL.
        cursor.execute(
            f"create unlogged table {ident(STAGE_SCHEMA, stage)} "
            f"(like {ident(TARGET_SCHEMA, table.name)} including defaults)"
        )
    connection.commit()


def drop_stage(connection: Any, stage: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"drop table if exists {ident(STAGE_SCHEMA, stage)}")
    connection.commit()


def swap_partition(connection: Any, table: TableDecl, partition_value: Any, stage: str) -> int:
    """Replaces the partition's rows with the stage's in one transaction; returns the count.
    Rows of the stage that belong to another partition abort the swap."""
    columns = ", ".join(ident(c.name) for c in table.columns)
    target, staged = ident(TARGET_SCHEMA, table.name), ident(STAGE_SCHEMA, stage)
    partition = ident(table.partition_column)
    with connection.cursor() as cursor:
        cursor.execute(
            f"select count(*) from {staged} where {partition} is distinct from $1",
            parameters=(partition_value,),
        )
        (foreign,) = cursor.fetchone()
        if foreign:
            connection.rollback()
            raise PermanentLoadError(
                f"stage for {table.name} holds {foreign} rows outside partition "
                f"{partition_value}; nothing was swapped"
            )
        cursor.execute(
            f"delete from {target} where {partition} = $1", parameters=(partition_value,)
        )
        cursor.execute(f"insert into {target} ({columns}) select {columns} from {staged}")
        cursor.execute(
            f"select count(*) from {target} where {partition} = $1", parameters=(partition_value,)
        )
        (rows,) = cursor.fetchone()
    connection.commit()
    return int(rows)
