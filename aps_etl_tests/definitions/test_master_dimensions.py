"""The master-data dimensions (load_mode "merge") on the embedded default, against the
source's own master tables: a generated plant (a seed no other test uses), then the MES
changes a product, a route step and a tool, adds and removes rows; each daily run merges
exactly those changes, counts them in the load log, keeps the history of the route steps,
changes nothing when run again, and never rolls back to an older day."""

from __future__ import annotations

import datetime as dt
from typing import Any

import dagster as dg
import pytest

from aps_etl.devdata import seed_source
from aps_etl.env.embedded import SOURCE_DB, TARGET_DB, start_embedded_postgres
from aps_etl.env.settings import resources_for
from aps_etl_tests.pipeline_harness import (
    assert_rows_equal,
    fetch,
    reference_partition,
    run_daily,
    step_failures,
    target_partition,
)

START = dt.date(2026, 11, 20)
D1, D2, D3 = "2026-11-20", "2026-11-21", "2026-11-22"
DIMS = ("aps_dim_product", "aps_dim_route_step", "aps_dim_equipment")


@pytest.fixture(scope="module")
def plant(tmp_path_factory: pytest.TempPathFactory):
    home = tmp_path_factory.mktemp("master-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("APS_LOCAL_HOME", str(home))
        mp.setenv("APS_ENV", "local")
        mp.delenv("APS_LAKE_ROOT", raising=False)
        pg = start_embedded_postgres(home / "postgres")
        seed_source(pg.uri(SOURCE_DB), start_date=START, days=3, lots=400, seed=71, progress=False)
        yield {
            "source": pg.uri(SOURCE_DB),
            "target": pg.uri(TARGET_DB),
            "resources": resources_for("local"),
            "instance": dg.DagsterInstance.ephemeral(),
        }


def run(plant: dict[str, Any], day: str) -> Any:
    result = run_daily(plant["resources"], day, plant["instance"])
    assert result.success, f"{day}: {step_failures(result)}"
    return result


def execute(uri: str, *statements: str) -> None:
    import adbc_driver_postgresql.dbapi as adbc

    with adbc.connect(uri) as connection, connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)
        connection.commit()


def merges(plant: dict[str, Any], day: str) -> dict[str, tuple[int, int, int]]:
    """The newest load-log entry of each dimension for `day`: (inserted, updated, deleted)."""
    rows = fetch(
        plant["target"],
        "select distinct on (table_name) table_name, rows_inserted, rows_updated, rows_deleted "
        "from aps_load_log where partition_key = $1 and table_name like 'aps_dim_%' "
        "order by table_name, load_id desc",
        day,
    )
    return {
        r["table_name"]: (r["rows_inserted"], r["rows_updated"], r["rows_deleted"]) for r in rows
    }


def whole(plant: dict[str, Any], table: str) -> list[dict[str, Any]]:
    """Every row with its valid_from and updated_at, by key."""
    key = {"aps_dim_product": "product_id", "aps_dim_equipment": "equipment_id"}.get(
        table, "route_id, step_seq"
    )
    return fetch(plant["target"], f"select * from {table} order by {key}")


def assert_dims_are_the_source(plant: dict[str, Any]) -> None:
    for table in DIMS:
        want = reference_partition(plant["source"], table, START)
        assert want, f"the generated plant has no {table} rows"
        assert_rows_equal(table, target_partition(plant["target"], table, None), want)


def test_the_first_day_inserts_every_master_row(plant) -> None:
    run(plant, D1)
    assert_dims_are_the_source(plant)
    counts = {t: len(reference_partition(plant["source"], t, START)) for t in DIMS}
    assert merges(plant, D1) == {t: (counts[t], 0, 0) for t in DIMS}
    for table in DIMS:
        assert {r["valid_from"] for r in whole(plant, table)} == {START}
    history = fetch(plant["target"], "select * from aps_dim_route_step_history")
    assert len(history) == counts["aps_dim_route_step"]
    assert {(r["valid_from"], r["valid_to"]) for r in history} == {(START, None)}


def test_a_day_merges_exactly_what_the_mes_changed(plant) -> None:
    before = {t: whole(plant, t) for t in DIMS}
    product = before["aps_dim_product"][0]
    step = before["aps_dim_route_step"][0]
    tool = before["aps_dim_equipment"][-1]
    execute(
        plant["source"],
        f"update product set product_name = product_name || ' (rev. B)' "
        f"where product_id = '{product['product_id']}'",
        f"insert into product values ('P-NEW', 'new product', '{product['route_id']}', 25)",
        f"update route_step set std_cycle_min = std_cycle_min + 1.25 "
        f"where route_id = '{step['route_id']}' and step_seq = {step['step_seq']}",
        f"insert into route_step values ('R-NEW', 1, 'S-NEW', '{step['process_id']}', "
        f"'{step['eqp_group_id']}', 7.5)",
        f"update equipment set active = not active where equipment_id = '{tool['equipment_id']}'",
        f"insert into equipment values ('E-NEW', '{tool['eqp_group_id']}', "
        f"'{tool['process_id']}', 12.5, true)",
    )
    run(plant, D2)
    assert_dims_are_the_source(plant)
    assert merges(plant, D2) == {
        "aps_dim_product": (1, 1, 0),
        "aps_dim_route_step": (1, 1, 0),
        "aps_dim_equipment": (1, 1, 0),
    }
    changed = {
        "aps_dim_product": {product["product_id"], "P-NEW"},
        "aps_dim_route_step": {(step["route_id"], step["step_seq"]), ("R-NEW", 1)},
        "aps_dim_equipment": {tool["equipment_id"], "E-NEW"},
    }
    for table in DIMS:
        old = {_key(table, r): r for r in before[table]}
        for row in whole(plant, table):
            key = _key(table, row)
            if key in changed[table]:
                assert row["valid_from"] == dt.date(2026, 11, 21), (table, key)
                assert key not in old or row["updated_at"] > old[key]["updated_at"]
            else:  # untouched: neither its day nor its write time moved
                assert row == old[key], (table, key)
    versions = fetch(
        plant["target"],
        "select valid_from, valid_to, std_cycle_min from aps_dim_route_step_history "
        "where route_id = $1 and step_seq = $2 order by valid_from",
        step["route_id"],
        step["step_seq"],
    )
    assert [(v["valid_from"], v["valid_to"]) for v in versions] == [
        (START, dt.date(2026, 11, 21)),
        (dt.date(2026, 11, 21), None),
    ]
    assert versions[1]["std_cycle_min"] == pytest.approx(versions[0]["std_cycle_min"] + 1.25)


def test_the_same_day_again_changes_nothing(plant) -> None:
    before = {t: whole(plant, t) for t in DIMS}
    history = fetch(plant["target"], "select count(*) as n from aps_dim_route_step_history")
    run(plant, D2)
    assert merges(plant, D2) == {t: (0, 0, 0) for t in DIMS}
    assert {t: whole(plant, t) for t in DIMS} == before
    assert fetch(plant["target"], "select count(*) as n from aps_dim_route_step_history") == history


def test_rows_gone_from_the_mes_are_deleted_and_their_history_closed(plant) -> None:
    execute(
        plant["source"],
        "delete from equipment where equipment_id = 'E-NEW'",
        "delete from route_step where route_id = 'R-NEW'",
    )
    run(plant, D3)
    assert_dims_are_the_source(plant)
    assert merges(plant, D3) == {
        "aps_dim_product": (0, 0, 0),
        "aps_dim_route_step": (0, 0, 1),
        "aps_dim_equipment": (0, 0, 1),
    }
    (closed,) = fetch(
        plant["target"], "select * from aps_dim_route_step_history where route_id = 'R-NEW'"
    )
    assert (closed["valid_from"], closed["valid_to"]) == (
        dt.date(2026, 11, 21),
        dt.date(2026, 11, 22),
    )


def test_an_older_snapshot_never_rolls_the_dimensions_back(plant) -> None:
    """Day 2 again, after day 3: its product snapshot (the MES's products have not changed
    since) is reused, read before day 3's, so the product merge is skipped and said so; its
    route steps and tools changed since, so they are read again, now: what the MES holds
    now is merged, which the tables already hold. Nothing moves."""
    before = {t: whole(plant, t) for t in DIMS}
    result = run(plant, D2)
    assert {t: whole(plant, t) for t in DIMS} == before
    metadata = {
        event.asset_key.path[-1]: event.materialization.metadata
        for event in result.get_asset_materialization_events()
        if event.asset_key.path[0] == "load" and event.asset_key.path[-1] in DIMS
    }
    skipped = metadata["aps_dim_product"]["merge_skipped_for_newer_snapshot"].value
    assert skipped.startswith("aps_input/product read at "), skipped
    for table in ("aps_dim_route_step", "aps_dim_equipment"):
        assert "merge_skipped_for_newer_snapshot" not in metadata[table]
        assert metadata[table]["rows_updated"].value == 0, table
    assert merges(plant, D2)["aps_dim_route_step"] == (0, 0, 0)


def _key(table: str, row: dict[str, Any]) -> Any:
    if table == "aps_dim_route_step":
        return (row["route_id"], row["step_seq"])
    return row["product_id"] if table == "aps_dim_product" else row["equipment_id"]


def test_shipped_changes_are_refused_when_the_table_moved_meanwhile(plant) -> None:
    """The Trino path ships only the rows that differ from the table (merge.changes_fill_sql);
    if another load merged the table after they were computed, or the table does not end
    with the partition's rows, the merge raises MergeBasisChanged (transient: the retry
    ships the whole partition) and nothing is merged. Here on PostgreSQL alone, the stage
    made by hand as Trino would fill it."""
    import adbc_driver_postgresql.dbapi as adbc

    from aps_etl.defs.scenarios.aps_master.schema import APS_DIM_PRODUCT
    from aps_etl.lib.warehouse import merge, stages

    before = whole(plant, "aps_dim_product")
    rows = len(before)
    day = dt.date(2026, 11, 23)
    stage = stages.new_stage_name(APS_DIM_PRODUCT, "2026-11-23")
    with adbc.connect(plant["target"]) as conn:
        stages.create_stage(conn, APS_DIM_PRODUCT, stage, partitioned=False)
        with conn.cursor() as cur:  # one changed product: what Trino would ship
            cur.execute(
                f"insert into aps_stage.{stage} select $1::date, product_id, "
                "product_name || ' (rev. C)', route_id, lot_size from aps_dim_product "
                "order by product_id limit 1",
                parameters=(day,),
            )
            basis = merge.last_merge_id(cur, APS_DIM_PRODUCT)
        conn.commit()
        for shipped, rows_after in (
            (merge.Shipped(None, basis - 1), rows),  # another load merged meanwhile
            (merge.Shipped(None, basis), rows + 1),  # the table lacks a row of the partition
        ):
            with conn.cursor() as cur, pytest.raises(merge.MergeBasisChanged):
                merge.merge_rows(
                    cur, APS_DIM_PRODUCT, stage, "2026-11-23", day, rows_after, shipped
                )
            conn.rollback()
        with conn.cursor() as cur:  # the right basis and rows: merged, one row updated
            counts = merge.merge_rows(
                cur, APS_DIM_PRODUCT, stage, "2026-11-23", day, rows, merge.Shipped(None, basis), 1
            )
        conn.rollback()  # this test's merge is not kept
        stages.drop_stage(conn, stage)
    assert (counts.inserted, counts.updated, counts.deleted, counts.shipped) == (0, 1, 0, 1)
    assert whole(plant, "aps_dim_product") == before


def test_a_row_deleted_from_the_table_by_hand_comes_back_and_its_history_stays_whole(plant):
    """Someone deletes a route step from the target (the benchmark's clean-up did): the next
    merge inserts it again; its history's open version is closed or replaced, not doubled."""
    step = whole(plant, "aps_dim_route_step")[0]
    key = (step["route_id"], step["step_seq"])
    execute(
        plant["target"],
        f"delete from aps_dim_route_step where route_id = '{key[0]}' and step_seq = {key[1]}",
    )
    run(plant, D2)  # its route-step snapshot is the one merged last: merged again
    assert merges(plant, D2)["aps_dim_route_step"] == (1, 0, 0)
    assert_dims_are_the_source(plant)
    open_versions = fetch(
        plant["target"],
        "select valid_from from aps_dim_route_step_history "
        "where route_id = $1 and step_seq = $2 and valid_to is null",
        *key,
    )
    assert len(open_versions) == 1


def test_an_older_day_read_again_rewrites_the_history_from_that_day(plant) -> None:
    """The MES changes a route step that already has two versions (day 1, then day 2), and
    day 1 is run again: its snapshot is read now, the newest, so it is merged. The history
    from day 1 on is what the MES says now: one open version from day 1, no version left
    that starts later or ends before it starts."""
    (step,) = fetch(
        plant["target"],
        "select route_id, step_seq from aps_dim_route_step_history "
        "group by route_id, step_seq having count(*) >= 2 order by 1, 2 limit 1",
    )
    key = (step["route_id"], step["step_seq"])
    execute(
        plant["source"],
        f"update route_step set std_cycle_min = std_cycle_min + 0.5 "
        f"where route_id = '{key[0]}' and step_seq = {key[1]}",
    )
    run(plant, D1)
    assert merges(plant, D1)["aps_dim_route_step"] == (0, 1, 0)
    assert_dims_are_the_source(plant)
    versions = fetch(
        plant["target"],
        "select valid_from, valid_to from aps_dim_route_step_history "
        "where route_id = $1 and step_seq = $2 order by valid_from",
        *key,
    )
    assert versions == [{"valid_from": START, "valid_to": None}]
