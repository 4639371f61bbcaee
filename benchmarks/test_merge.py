"""Merging a master-data dimension (load_mode "merge") against its alternatives.

On the dev stack: a dimension of ROWS rows (version 1) in the target database, and the
day's new snapshot of it in a table Trino reads (1% of the rows changed, 0.1% new, 0.1% gone).
Each round resets the target to version 1 (untimed), then times one way of making the
target equal to the snapshot:

- `ours_shipped`: what the pipeline does: Trino writes to the stage only the snapshot's rows
  that are new or differ from the table, and the keys gone (merge.changes_fill_sql,
  gone_fill_sql), then PostgreSQL merges them in one transaction, atomic with the day's
  other tables (aps_etl.lib.warehouse.merge);
- `ours`: as a retry does: Trino fills a stage with the whole snapshot, then PostgreSQL
  merges it;
- `trino_merge`: Trino's own MERGE into the PostgreSQL table (476's connector supports it on
  tables with a primary key, the user granted UPDATE and DELETE), then a DELETE of the keys
  gone: two statements, each its own transaction, none with the day's other tables;
- `replace`: the full replace of the same table: Trino fills a stage with the snapshot, then
  one transaction deletes every row and inserts the stage's.

Measured per round: the seconds from the first statement to the commit, and the rows
changed. docs/loading.md reads them.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from dataclasses import dataclass
from typing import Any

import adbc_driver_postgresql.dbapi as adbc
import pytest

from aps_etl.lib.warehouse import merge, stages, target
from aps_etl.lib.warehouse.target import STAGE_SCHEMA, TARGET_SCHEMA, ident
from benchmarks import data, harness
from benchmarks.conftest import Bench
from benchmarks.machine import load_average

ROWS = 1_000_000  # the full scale; the smoke scale's is the day's few thousand rows
DAY1, DAY2 = "2026-08-01", "2026-08-02"
WAYS = ("ours_shipped", "ours", "trino_merge", "replace")
SOURCE = "bench_merge_snapshot"  # in the stage schema: what Trino reads
TRINO_TARGET = "bench_merge_trino"  # the copy Trino's MERGE writes (the stage schema's grants)


@dataclass(frozen=True)
class Column:
    name: str
    pg_type: str
    nullable: bool = False


@dataclass  # a TableDecl and a merge declaration, as an OutputTable of load_mode "merge"
class Dimension:
    # aps_dim_*: a name Trino's rules let the pipeline read (the shipped changes' join)
    name: str = "aps_dim_bench_merge"
    partition_column: str = "valid_from"
    grain: tuple[str, ...] = ("valid_from", "id")
    merge_key: tuple[str, ...] = ("id",)
    load_mode: str = "merge"
    delete_missing: bool = True
    history: bool = False
    columns: tuple[Column, ...] = (
        Column("valid_from", "date"),
        Column("id", "bigint"),
        Column("name", "text"),
        Column("group_id", "text"),
        Column("capacity", "double precision"),
        Column("active", "boolean"),
    )


DIM = Dimension()
VALUES = (
    "g as id, 'item ' || g as name, 'G' || (g % 97) as group_id, "
    "((g % 1000) / 10.0)::float8 as capacity, g % 13 <> 0 as active"
)


def _reset(uri: str, rows: int) -> None:
    """The target at version 1 (as merged on DAY1), the day's snapshot beside it."""
    dim, columns = ident(TARGET_SCHEMA, DIM.name), ", ".join(ident(c.name) for c in DIM.columns)
    with adbc.connect(uri) as conn:
        target.ensure_target(conn, DIM, merge.target_tables(DIM))
    changed = max(1, rows // 100)
    data._execute(
        uri,
        f"truncate {dim}",
        f"insert into {dim} ({columns}, updated_at) "
        f"select date '{DAY1}', {VALUES}, now() from generate_series(1, {rows}) g",
        f"drop table if exists {ident(STAGE_SCHEMA, SOURCE)}",
        # ids shifted by 0.1%: the first 0.1% gone from the MES, 0.1% new at the end
        f"create table {ident(STAGE_SCHEMA, SOURCE)} as select date '{DAY2}' as valid_from, "
        f"{VALUES} from generate_series({1 + rows // 1000}, {rows + rows // 1000}) g",
        f"alter table {ident(STAGE_SCHEMA, SOURCE)} add primary key (id)",
        # 1% of the rows changed
        f"update {ident(STAGE_SCHEMA, SOURCE)} set capacity = capacity + 1 "
        f"where id % {rows // changed} = 0",
        f"drop table if exists {ident(STAGE_SCHEMA, TRINO_TARGET)}",
        f"create table {ident(STAGE_SCHEMA, TRINO_TARGET)} as select * from {dim}",
        f"alter table {ident(STAGE_SCHEMA, TRINO_TARGET)} add primary key (id)",
    )
    tables = (dim, ident(STAGE_SCHEMA, SOURCE), ident(STAGE_SCHEMA, TRINO_TARGET))
    data._execute(uri, *(f"vacuum analyze {t}" for t in tables), autocommit=True)


def _trino(bench: Bench, *, fill: bool = True) -> Any:
    """As the loader fills a stage: no temporary table of Trino's, batches of 10,000 rows,
    4 writers (TargetLoader's settings). Trino's MERGE refuses the non-transactional insert
    ("Output table handle's pageSinkIdColumn is empty"): it gets the batch size only."""
    from aps_etl.env.stack import trino_connect

    # the loader's knobs (aps_etl.env.settings), for benchmarks/results/trino_write/'s tries
    properties = {
        "aps.write_batch_size": os.environ.get("APS_LOAD_BATCH_SIZE", "10000"),
        "task_min_writer_count": os.environ.get("APS_LOAD_WRITERS", "4"),
    }
    if fill:
        properties["aps.non_transactional_insert"] = "true"
    return trino_connect(bench.stack.settings, session_properties=properties)


def _write_settings() -> str:
    return (
        f"batch {os.environ.get('APS_LOAD_BATCH_SIZE', '10000')}, "
        f"{os.environ.get('APS_LOAD_WRITERS', '4')} writers"
    )


def _fill(bench: Bench, stage: str) -> None:
    columns = ", ".join(f'"{c.name}"' for c in DIM.columns)
    with _trino(bench) as trino:
        cursor = trino.cursor()
        cursor.execute(
            f'INSERT INTO aps."{STAGE_SCHEMA}"."{stage}" ({columns}) '
            f'SELECT {columns} FROM aps."{STAGE_SCHEMA}"."{SOURCE}"'
        )
        cursor.fetchall()


def _ours(bench: Bench, uri: str, rows: int) -> dict[str, Any]:
    stage = stages.new_stage_name(DIM, DAY2)
    with adbc.connect(uri) as conn:
        stages.create_stage(conn, DIM, stage, partitioned=False)
    _fill(bench, stage)
    with adbc.connect(uri) as conn:
        value = dt.date.fromisoformat(DAY2)
        staged = stages.prepare_stage(conn, DIM, value, stage, partition_key=DAY2)
        with conn.cursor() as cur:
            counts = merge.merge_rows(cur, DIM, stage, DAY2, value, staged.rows)
            cur.execute(f"drop table {ident(STAGE_SCHEMA, stage)}")
        conn.commit()
    return {"inserted": counts.inserted, "updated": counts.updated, "deleted": counts.deleted}


def _ours_shipped(bench: Bench, uri: str, rows: int) -> dict[str, Any]:
    stage = stages.new_stage_name(DIM, DAY2)
    gone = stage[:50] + "_gone"
    with adbc.connect(uri) as conn:
        stages.create_stage(conn, DIM, stage, partitioned=False)
        stages.create_key_stage(conn, DIM, gone, DIM.merge_key, None)
        with conn.cursor() as cur:
            basis = merge.last_merge_id(cur, DIM)
        conn.commit()
    source = f'aps."{STAGE_SCHEMA}"."{SOURCE}"'
    with _trino(bench) as trino:
        cursor = trino.cursor()
        for sql in (
            merge.changes_fill_sql(DIM, "aps", source, stage),
            merge.gone_fill_sql(DIM, "aps", source, gone),
        ):
            cursor.execute(sql)
            cursor.fetchall()
    with adbc.connect(uri) as conn:
        value = dt.date.fromisoformat(DAY2)
        shipped = merge.Shipped(gone, basis)
        staged = stages.prepare_stage(conn, DIM, value, stage, partition_key=DAY2, shipped=shipped)
        with conn.cursor() as cur:
            counts = merge.merge_rows(cur, DIM, stage, DAY2, value, rows, shipped, staged.rows)
            cur.execute(f"drop table {ident(STAGE_SCHEMA, stage)}")
            cur.execute(f"drop table {ident(STAGE_SCHEMA, gone)}")
        conn.commit()
    return {
        "inserted": counts.inserted,
        "updated": counts.updated,
        "deleted": counts.deleted,
        "shipped": counts.shipped,
    }


def _trino_merge(bench: Bench) -> dict[str, Any]:
    values = [c.name for c in DIM.columns if c.name != "id"]
    t, s = f'aps."{STAGE_SCHEMA}"."{TRINO_TARGET}"', f'aps."{STAGE_SCHEMA}"."{SOURCE}"'
    differs = " OR ".join(f't."{c}" IS DISTINCT FROM s."{c}"' for c in values if c != "valid_from")
    with _trino(bench, fill=False) as trino:
        cur = trino.cursor()
        cur.execute(
            f"MERGE INTO {t} t USING {s} s ON t.id = s.id "
            f"WHEN MATCHED AND ({differs}) THEN UPDATE SET "
            + ", ".join(f'"{c}" = s."{c}"' for c in values)
            + ", updated_at = current_timestamp "
            f"WHEN NOT MATCHED THEN INSERT ({', '.join(c.name for c in DIM.columns)}, "
            f"updated_at) VALUES ({', '.join('s.' + c.name for c in DIM.columns)}, "
            "current_timestamp)"
        )
        (merged,) = cur.fetchone()
        cur.execute(f"DELETE FROM {t} WHERE id NOT IN (SELECT id FROM {s})")
        (deleted,) = cur.fetchone()
    return {"merged": merged, "deleted": deleted}


def _replace(bench: Bench, uri: str) -> dict[str, Any]:
    stage = stages.new_stage_name(DIM, DAY2)
    with adbc.connect(uri) as conn:
        stages.create_stage(conn, DIM, stage, partitioned=False)
    _fill(bench, stage)
    columns = ", ".join(ident(c.name) for c in DIM.columns)
    dim = ident(TARGET_SCHEMA, DIM.name)
    data._execute(
        uri,
        f"delete from {dim}",
        f"insert into {dim} ({columns}, updated_at) select {columns}, now() "
        f"from {ident(STAGE_SCHEMA, stage)}",
        f"drop table {ident(STAGE_SCHEMA, stage)}",
    )
    return {}


def _rows(bench: Bench) -> int:
    return min(ROWS, bench.scale.rows["day"])


@pytest.mark.parametrize("way", WAYS)
def test_merging_a_dimension_with_one_percent_changed(bench: Bench, way: str, benchmark: Any):
    rows = _rows(bench)
    uri = bench.stack.target_uri()
    m = harness.Measurement(
        key=f"merge/{way}", kind="merge", tool=way,
        label=f"a {rows:,}-row dimension, 1% changed: {way} (Trino writes: {_write_settings()})",
        dataset="merge", server="stack", rows=rows,
    )  # fmt: skip
    bench.measurements.append(m)

    def one_round() -> None:
        _reset(uri, rows)
        load = list(load_average())
        started = time.perf_counter()
        if way == "ours_shipped":
            result = _ours_shipped(bench, uri, rows)
        elif way == "ours":
            result = _ours(bench, uri, rows)
        elif way == "trino_merge":
            result = _trino_merge(bench)
        else:
            result = _replace(bench, uri)
        wall = time.perf_counter() - started
        m.rounds.append(harness.Round(wall=wall, peak_rss_mb=0.0, load_before=load, result=result))

    try:
        benchmark.pedantic(one_round, rounds=bench.scale.rounds.get("day", 1), iterations=1)
    except Exception as exc:
        m.error = str(exc)[:500]
        raise
    finally:
        data._execute(
            uri,
            *(
                f"drop table if exists {ident(schema, name)}"
                for schema, name in (
                    (STAGE_SCHEMA, SOURCE),
                    (STAGE_SCHEMA, TRINO_TARGET),
                    (TARGET_SCHEMA, DIM.name),
                )
            ),
        )
