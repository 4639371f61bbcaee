"""Replacing a loaded day while readers read: the swap we chose against its alternatives.

On the dev stack's target database, a partitioned table holds two days of ROWS rows each.
Each round replaces day 2 while
- a long reader holds day 2 open (a transaction that read it, open for HOLD_S seconds);
- other readers query day 1 every 20 ms (their longest wait is what a report or an APS
  client of another day would feel);
- a watcher counts day 2 every 20 ms (did a reader ever see it empty or half there?).

Strategies:
- `ours`: aps_etl.lib.warehouse.swap (wait without queuing, then lock_timeout + backoff);
- `naive`: DETACH/ATTACH in one transaction with no lock_timeout (the swap before);
- `detach_concurrently`: DETACH PARTITION ... CONCURRENTLY, then ATTACH (cannot run in a
  transaction block: not atomic, the day is missing in between, and one table at a time);
- `row_replace`: DELETE the day's rows and INSERT the stage's, one transaction.
Measured per round: swap seconds (from the start to the commit), the other readers'
longest wait, whether the day was seen other than whole. docs/reliability.md reads them.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from dataclasses import dataclass
from typing import Any

import adbc_driver_postgresql.dbapi as adbc
import pytest

from aps_etl.lib.warehouse import stages, swap, target
from benchmarks import harness
from benchmarks.conftest import Bench
from benchmarks.machine import load_average

ROWS = 1_000_000  # the full scale's day; the smoke scale's is a few thousand rows
HOLD_S = 3.0
DAY1, DAY2 = dt.date(2026, 7, 1), dt.date(2026, 7, 2)
STRATEGIES = ("ours", "naive", "detach_concurrently", "row_replace")


@dataclass(frozen=True)
class Column:
    name: str
    pg_type: str
    nullable: bool = False


@dataclass(frozen=True)
class Table:
    name: str = "bench_swap_readers"
    partition_column: str = "base_date"
    grain: tuple[str, ...] = ("base_date", "id")
    columns: tuple[Column, ...] = (
        Column("base_date", "date"),
        Column("id", "bigint"),
        Column("qty", "bigint"),
        Column("note", "text"),
    )


TABLE = Table()


def _exec(uri: str, *statements: str) -> list[tuple]:
    with adbc.connect(uri) as conn, conn.cursor() as cur:
        out: list[tuple] = []
        for sql in statements:
            cur.execute(sql)
            if cur.description:
                out = cur.fetchall()
        conn.commit()
        return out


def _stage(uri: str, day: dt.date, version: int, rows: int) -> swap.StagedTable:
    """A filled, checked stage of `day` (`rows` rows), as a loader leaves it."""
    stage = stages.new_stage_name(TABLE, day.isoformat())
    with adbc.connect(uri) as conn:
        partitioned = target.ensure_target(conn, TABLE)
        stages.create_stage(conn, TABLE, stage, partitioned=partitioned)
        with conn.cursor() as cur:
            cur.execute(
                f"insert into {target.ident(target.STAGE_SCHEMA, stage)} "
                f"select date '{day}', g, g * {version}, 'v{version}' "
                f"from generate_series(1, {rows}) g"
            )
        conn.commit()
        return stages.prepare_stage(
            conn, TABLE, day, stage, partition_key=day.isoformat(), partitioned=partitioned
        )


def _swap(uri: str, strategy: str, staged: swap.StagedTable) -> None:
    parent = target.ident(target.TARGET_SCHEMA, TABLE.name)
    old = target.ident(target.PARTITION_SCHEMA, stages.partition_table_name(TABLE, "2026-07-02"))
    stage = target.ident(target.STAGE_SCHEMA, staged.stage)
    moved = target.ident(target.PARTITION_SCHEMA, staged.stage)
    name = target.ident(stages.partition_table_name(TABLE, "2026-07-02"))
    attach = [
        f"alter table {stage} set schema {target.ident(target.PARTITION_SCHEMA)}",
        f"alter table {moved} rename to {name}",
        f"alter table {parent} attach partition {old} for values in (date '{DAY2}')",
    ]
    if strategy == "ours":
        with adbc.connect(uri) as conn:
            swap.swap_partition_tables(conn, [staged])
    elif strategy == "naive":
        _exec(uri, f"alter table {parent} detach partition {old}", f"drop table {old}", *attach)
    elif strategy == "detach_concurrently":
        with adbc.connect(uri, autocommit=True) as conn, conn.cursor() as cur:
            cur.execute(f"alter table {parent} detach partition {old} concurrently")
            cur.execute(f"drop table {old}")
            for sql in attach:
                cur.execute(sql)
    else:  # row_replace
        _exec(
            uri,
            f"delete from {parent} where base_date = date '{DAY2}'",
            f"insert into {parent} select * from {stage}",
            f"drop table {stage}",
        )


def _one_round(uri: str, strategy: str, version: int, rows: int) -> dict[str, Any]:
    staged = _stage(uri, DAY2, version, rows)
    waits: list[float] = []
    seen: set[int] = set()
    stop = threading.Event()
    parent = target.ident(target.TARGET_SCHEMA, TABLE.name)

    def poll(day: dt.date, record) -> None:
        with adbc.connect(uri) as conn, conn.cursor() as cur:
            cur.execute("set statement_timeout = '60s'")
            while not stop.is_set():
                t = time.perf_counter()
                cur.execute(f"select count(*) from {parent} where base_date = date '{day}'")
                (count,) = cur.fetchone()
                conn.commit()
                record(time.perf_counter() - t, count)
                time.sleep(0.02)

    readers = [
        threading.Thread(target=poll, args=(DAY1, lambda w, _: waits.append(w))),
        threading.Thread(target=poll, args=(DAY2, lambda _, c: seen.add(int(c)))),
    ]
    long_reader = adbc.connect(uri)
    cursor = long_reader.cursor()
    cursor.execute(f"select count(*) from {parent} where base_date = date '{DAY2}'")
    cursor.fetchall()  # AccessShare held until the commit below
    release = threading.Timer(HOLD_S, long_reader.commit)
    for thread in readers:
        thread.start()
    time.sleep(0.3)
    release.start()
    started = time.perf_counter()
    _swap(uri, strategy, staged)
    swap_s = time.perf_counter() - started
    time.sleep(0.3)
    stop.set()
    for thread in readers:
        thread.join()
    release.join()
    cursor.close()
    long_reader.close()
    return {
        "swap_s": round(swap_s, 3),
        "other_reader_wait_max_s": round(max(waits), 3),
        "day_seen_other_than_whole": sorted(seen - {rows}),
    }


def _rows(bench: Bench) -> int:
    return min(ROWS, bench.scale.rows["day"])


@pytest.fixture(scope="module")
def loaded_table(bench: Bench):
    uri = bench.stack.target_uri()
    rows = _rows(bench)
    _exec(uri, f"drop table if exists {target.ident(target.TARGET_SCHEMA, TABLE.name)}")
    for day in (DAY1, DAY2):
        with adbc.connect(uri) as conn:
            swap.swap_partition_tables(conn, [_stage(uri, day, 1, rows)])
    yield uri
    _exec(uri, f"drop table if exists {target.ident(target.TARGET_SCHEMA, TABLE.name)}")


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_replacing_a_day_under_a_long_reader(
    bench: Bench, loaded_table: str, strategy: str, benchmark: Any
) -> None:
    m = harness.Measurement(
        key=f"swap/{strategy}", kind="swap", tool=strategy,
        label=f"replace a {_rows(bench):,}-row day, a reader holding it {HOLD_S:.0f} s: "
        f"{strategy}", dataset="swap", server="stack", rows=_rows(bench),
    )  # fmt: skip
    bench.measurements.append(m)

    def one_round() -> None:
        result = _one_round(loaded_table, strategy, len(m.rounds) + 2, _rows(bench))
        m.rounds.append(
            harness.Round(
                wall=result["swap_s"],
                peak_rss_mb=0.0,
                load_before=list(load_average()),
                result=result,
            )
        )

    benchmark.pedantic(one_round, rounds=bench.scale.rounds.get("day", 1), iterations=1)
