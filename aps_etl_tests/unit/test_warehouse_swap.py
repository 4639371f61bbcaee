"""The partition swap both loaders end with, on a real PostgreSQL (the embedded one):
partitioned targets (a stage attached as the partition) and plain targets made by earlier
versions (rows deleted and inserted), each atomic, each leaving exactly the new rows."""

from __future__ import annotations

import datetime as dt
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import adbc_driver_postgresql.dbapi as adbc
import pytest

from aps_etl.env.embedded import TARGET_DB, start_embedded_postgres
from aps_etl.lib.warehouse import stages, swap, target


@dataclass(frozen=True)
class Column:
    name: str
    pg_type: str
    nullable: bool = False


@dataclass(frozen=True)
class Table:
    name: str
    partition_column: str = "base_date"
    grain: tuple[str, ...] = ("base_date", "item")
    columns: tuple[Column, ...] = (
        Column("base_date", "date"),
        Column("item", "text"),
        Column("qty", "bigint"),
    )


DAY1, DAY2 = dt.date(2026, 7, 1), dt.date(2026, 7, 2)


@pytest.fixture(scope="module")
def uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    return start_embedded_postgres(tmp_path_factory.mktemp("swap") / "postgres").uri(TARGET_DB)


def rows(uri: str, sql: str, *params) -> list[tuple]:
    with adbc.connect(uri) as conn, conn.cursor() as cur:
        cur.execute(sql, parameters=params or None)
        out = cur.fetchall()
        conn.commit()
        return out


def load(uri: str, table: Table, day: dt.date, items: dict[str, int], *, date=None) -> int:
    """What a loader does: stage, fill, swap, drop the stage."""
    with adbc.connect(uri) as conn:
        partitioned = target.ensure_target(conn, table)
        stage = stages.new_stage_name(table, day.isoformat())
        stages.create_stage(conn, table, stage, partitioned=partitioned)
        try:
            with conn.cursor() as cur:
                for item, qty in items.items():
                    cur.execute(
                        f"insert into {target.ident(target.STAGE_SCHEMA, stage)} "
                        "values ($1, $2, $3)",
                        parameters=(date or day, item, qty),
                    )
            conn.commit()
            staged = stages.prepare_stage(
                conn, table, day, stage, partition_key=day.isoformat(), partitioned=partitioned
            )
            return swap.swap_partition_tables(conn, [staged]).rows[table.name]
        finally:
            stages.drop_stage(conn, stage)


def content(uri: str, table: Table) -> list[tuple]:
    return rows(uri, f"select base_date, item, qty from public.{table.name} order by 1, 2")


def stages_left(uri: str) -> int:
    return rows(
        uri, "select count(*) from information_schema.tables where table_schema = 'aps_stage'"
    )[0][0]


def test_a_new_target_is_partitioned_and_each_load_replaces_only_its_partition(uri) -> None:
    table = Table("swap_partitioned")
    assert load(uri, table, DAY1, {"a": 1, "b": 2}) == 2
    assert load(uri, table, DAY2, {"a": 5}) == 1
    assert rows(uri, "select relkind from pg_class where relname = 'swap_partitioned'") == [("p",)]
    # a rerun of DAY1 with other rows: exactly those, DAY2 untouched, no stage left
    assert load(uri, table, DAY1, {"b": 3, "c": 4}) == 2
    assert content(uri, table) == [(DAY1, "b", 3), (DAY1, "c", 4), (DAY2, "a", 5)]
    assert stages_left(uri) == 0
    partitions = rows(
        uri,
        "select c.relname from pg_inherits i join pg_class c on c.oid = i.inhrelid "
        "where i.inhparent = 'public.swap_partitioned'::regclass order by 1",
    )
    assert len(partitions) == 2, partitions
    # the parent's primary key covers the attached partitions
    with pytest.raises(adbc.IntegrityError):
        rows(uri, "insert into public.swap_partitioned values ($1, 'b', 9)", DAY1)


def test_rows_of_another_partition_abort_the_swap_and_keep_the_old_rows(uri) -> None:
    table = Table("swap_foreign")
    load(uri, table, DAY1, {"a": 1})
    with pytest.raises(target.PermanentLoadError, match="1 rows outside partition"):
        load(uri, table, DAY1, {"x": 1}, date=DAY2)
    assert content(uri, table) == [(DAY1, "a", 1)]
    assert stages_left(uri) == 0


def test_a_plain_target_from_an_earlier_version_keeps_the_row_swap(uri) -> None:
    table = Table("swap_plain")
    rows(uri, target.create_table_sql(table, partitioned=False))
    load(uri, table, DAY1, {"a": 1, "b": 2})
    load(uri, table, DAY2, {"a": 5})
    assert load(uri, table, DAY1, {"c": 4}) == 1
    assert rows(uri, "select relkind from pg_class where relname = 'swap_plain'") == [("r",)]
    assert content(uri, table) == [(DAY1, "c", 4), (DAY2, "a", 5)]
    with pytest.raises(target.PermanentLoadError, match="outside partition"):
        load(uri, table, DAY1, {"x": 1}, date=DAY2)
    assert content(uri, table) == [(DAY1, "c", 4), (DAY2, "a", 5)]
    assert stages_left(uri) == 0


def test_partition_table_names_are_unique_per_key_and_short_enough() -> None:
    table = Table("aps_input_balance_correction")
    names = {stages.partition_table_name(table, k) for k in ("APS-1", "aps_1", "APS.1")}
    assert len(names) == 3
    long_key = "APS-" + "9" * 80
    assert len(stages.partition_table_name(table, long_key)) <= 63


def test_concurrent_first_loads_into_a_fresh_database(tmp_path) -> None:
    """The loads of a run go side by side: on a database that has none of the schemas and
    tables yet, six first loads at once all succeed (IF NOT EXISTS alone races)."""
    fresh = start_embedded_postgres(tmp_path / "postgres").uri(TARGET_DB)
    tables = [Table(f"fresh_{i}") for i in range(6)]
    together = threading.Barrier(len(tables))

    def first_load(table: Table) -> int:
        together.wait()
        return load(fresh, table, DAY1, {"a": 1, "b": 2})

    with ThreadPoolExecutor(max_workers=len(tables)) as pool:
        assert list(pool.map(first_load, tables)) == [2] * len(tables)
    for table in tables:
        assert content(fresh, table) == [(DAY1, "a", 1), (DAY1, "b", 2)]
    assert stages_left(fresh) == 0


# The day-atomic swap (swap.py) ----------------------------------------------------------


def staged(uri: str, table: Table, day: dt.date, items: dict[str, int], log=None):
    """A filled, checked stage, as a loader hands it to the swap."""
    with adbc.connect(uri) as conn:
        partitioned = target.ensure_target(conn, table)
        stage = stages.new_stage_name(table, day.isoformat())
        stages.create_stage(conn, table, stage, partitioned=partitioned)
        with conn.cursor() as cur:
            for item, qty in items.items():
                cur.execute(
                    f"insert into {target.ident(target.STAGE_SCHEMA, stage)} values ($1, $2, $3)",
                    parameters=(day, item, qty),
                )
        conn.commit()
        return stages.prepare_stage(
            conn, table, day, stage, partition_key=day.isoformat(), partitioned=True, log=log
        )


def swap_all(uri: str, *stages, policy=None) -> None:
    from aps_etl.lib.warehouse.swap import SwapPolicy, swap_partition_tables

    with adbc.connect(uri) as conn:
        swap_partition_tables(conn, list(stages), policy or SwapPolicy())


def test_the_tables_of_a_day_are_swapped_together_or_not_at_all(uri) -> None:
    a, b = Table("day_atomic_a"), Table("day_atomic_b")
    swap_all(uri, staged(uri, a, DAY1, {"x": 1}), staged(uri, b, DAY1, {"x": 1}))
    new_a, new_b = staged(uri, a, DAY1, {"x": 2}), staged(uri, b, DAY1, {"x": 2})
    rows(uri, f"drop table aps_stage.{new_b.stage}")  # b's stage vanishes: its swap fails
    with pytest.raises(Exception, match="does not exist"):
        swap_all(uri, new_a, new_b)
    assert content(uri, a) == content(uri, b) == [(DAY1, "x", 1)]  # a was not swapped alone
    swap_all(uri, staged(uri, a, DAY1, {"x": 3}), staged(uri, b, DAY1, {"x": 3}))
    assert content(uri, a) == content(uri, b) == [(DAY1, "x", 3)]


def _log(version: int, day: dt.date = DAY1) -> target.LoadLogEntry:
    uri = f"s3://lake/extract/job_name=j/date={day}/src/data.v{version}.parquet"
    return target.LoadLogEntry("j", 1, {"j/src": {"version": version, "uri": uri}}, None, "t")


def test_an_older_run_cannot_roll_a_day_back(uri) -> None:
    from aps_etl.lib.warehouse.swap import StaleLoad

    table = Table("stale_guard")
    swap_all(uri, staged(uri, table, DAY1, {"x": 3}, log=_log(3)))
    older = staged(uri, table, DAY1, {"x": 2}, log=_log(2))
    with pytest.raises(StaleLoad, match=r"newer snapshots \(j/src v3 \(this run read v2\)\)"):
        swap_all(uri, older)
    assert content(uri, table) == [(DAY1, "x", 3)]
    swap_all(uri, staged(uri, table, DAY1, {"x": 4}, log=_log(3)))  # a rerun of v3: fine
    assert content(uri, table) == [(DAY1, "x", 4)]


def test_a_long_reader_delays_the_swap_and_a_stuck_one_fails_it_by_name(uri) -> None:
    from aps_etl.lib.warehouse.swap import SwapBlocked, SwapPolicy

    table = Table("long_reader")
    swap_all(uri, staged(uri, table, DAY1, {"x": 1}))
    swap_all(uri, staged(uri, table, DAY2, {"y": 1}))
    reader = adbc.connect(uri + ("&" if "?" in uri else "?") + "application_name=monthly-report")
    cursor = reader.cursor()
    cursor.execute(f"select count(*) from public.{table.name} where base_date = $1", (DAY1,))
    cursor.fetchall()  # its transaction stays open
    try:
        stuck = staged(uri, table, DAY1, {"x": 2})
        with pytest.raises(SwapBlocked) as blocked:
            swap_all(uri, stuck, policy=SwapPolicy(budget_s=1.5))
        message = str(blocked.value)
        assert "monthly-report" in message and "AccessShareLock" in message
        assert f"public.{table.name}" in message and "nothing was swapped" in message
        # readers of another day were not queued behind the waiting swap
        other = rows(uri, f"select count(*) from public.{table.name} where base_date = $1", DAY2)
        assert other == [(1,)]
        waiting = staged(uri, table, DAY1, {"x": 3})
        release = threading.Timer(1.0, reader.commit)
        release.start()
        swap_all(uri, waiting)  # waits for the reader, then swaps
        release.join()
    finally:
        cursor.close()
        reader.close()
    assert content(uri, table) == [(DAY1, "x", 3), (DAY2, "y", 1)]
    rows(uri, f"drop table aps_stage.{stuck.stage}")


def test_stages_of_dead_owners_are_dropped_and_live_ones_kept(uri) -> None:
    import socket
    import subprocess
    import sys

    from aps_etl.lib.warehouse.leftovers import owner_alive

    table = Table("abandoned")
    mine = staged(uri, table, DAY1, {"x": 1})
    theirs = staged(uri, table, DAY2, {"y": 1})
    worker = subprocess.Popen([sys.executable, "-c", "pass"])
    worker.wait()  # a process that existed and is gone
    host = socket.gethostname()
    owner = f'{{"run_id": "r-dead", "host": "{host}", "pid": {worker.pid}, "started": 1.0}}'
    rows(uri, f"comment on table aps_stage.{theirs.stage} is '{owner}'")
    with adbc.connect(uri) as conn:
        assert theirs.stage in {s.name for s in stages.list_stages(conn)}
        dropped = stages.drop_abandoned_stages(conn, owner_alive)
        left = {s.name for s in stages.list_stages(conn)}
    assert theirs.stage in dropped and theirs.stage not in left
    assert mine.stage in left
    rows(uri, f"drop table aps_stage.{mine.stage}")
