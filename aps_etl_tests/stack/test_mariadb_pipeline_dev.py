"""The same plant on two MES engines, through the whole pipeline on the dev stack: seeded
into the stack's PostgreSQL and its MariaDB by the same generator, the daily job and the
plan snapshots run from each (APS_SOURCE_ENGINE), loaded through Trino into the target,
and every target table compared row for row between the two runs, and with the
contract's reference SQL on the PostgreSQL source."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import dagster as dg
import pytest

from aps_etl.definitions import build_defs
from aps_etl.devdata import seed_source
from aps_etl.env.settings import resources_for
from aps_etl.env.stack import postgres_uri
from aps_etl_tests.mariadb_twin import stack_mariadb
from aps_etl_tests.pipeline_harness import (
    DAILY_TABLES,
    assert_rows_equal,
    fetch,
    reference_partition,
    run_daily,
    step_failures,
    target_partition,
)

START = dt.date(2026, 11, 20)
DAYS = ("2026-11-20", "2026-11-21")
PLAN_TABLES = ("aps_plan_production", "aps_plan_diff")
ENGINES = ("postgresql", "mariadb")


def _run(engine: str, settings: dict[str, str], target: str, runs: list[str]) -> dict:
    """Every day and plan run through the pipeline from `engine`; what the target holds."""
    run = uuid.uuid4().hex[:8]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("APS_ENV", "dev")
        mp.setenv("APS_SOURCE_ENGINE", engine)
        mp.setenv("APS_LAKE_ROOT", f"s3://{settings['APS_S3_BUCKET']}/tests/{engine}-{run}")
        mp.setenv("APS_TRINO_LAKE_SCHEMA_PREFIX", f"{engine[0]}{run}_")
        resources = resources_for("dev")
        instance = dg.DagsterInstance.ephemeral()
        loaded: dict[tuple[str, str], list[dict[str, Any]]] = {}
        try:
            for day in DAYS:
                result = run_daily(resources, day, instance)
                assert result.success, f"{engine} {day}: {step_failures(result)}"
                loaders = {
                    e.materialization.metadata["loader"].value
                    for e in result.get_asset_materialization_events()
                    if e.asset_key.path[0] == "load"
                }
                assert loaders == {"trino"}
                for table in DAILY_TABLES:
                    rows = target_partition(target, table, dt.date.fromisoformat(day))
                    loaded[(table, day)] = rows
            instance.add_dynamic_partitions("plan_run_id", runs)
            job = build_defs(resources).resolve_job_def("aps_plan_snapshot")
            for run_id in runs:
                result = job.execute_in_process(
                    partition_key=run_id, instance=instance, raise_on_error=False
                )
                assert result.success, f"{engine} {run_id}: {step_failures(result)}"
                for table in PLAN_TABLES:
                    loaded[(table, run_id)] = target_partition(target, table, run_id)
        finally:
            lake = resources["lake"].process_config_and_initialize()
            if lake.fs.exists(lake.root):
                lake.fs.rm(lake.root, recursive=True)
    return loaded


@pytest.fixture(scope="module")
def both(stack_settings: dict[str, str]) -> dict[str, Any]:
    source = postgres_uri(stack_settings, stack_settings["APS_MES_DB"], "mes_owner")
    plant = {"start_date": START, "days": 3, "lots": 600, "seed": 23, "progress": False}
    seed_source(source, **plant)
    seed_source(stack_mariadb(stack_settings), **plant)
    runs = [
        r["run_id"]
        for r in fetch(
            source,
            "select run_id from plan_run where status = 'COMPLETED' order by created_at, run_id",
        )
    ]
    assert len(runs) >= 2, "the generated plant should have COMPLETED plan runs"
    target = postgres_uri(stack_settings, stack_settings["APS_APS_DB"], "aps_loader")
    loaded = {engine: _run(engine, stack_settings, target, runs) for engine in ENGINES}
    return {"source": source, "loaded": loaded, "runs": runs}


def test_every_target_table_is_the_same_from_mariadb_as_from_postgresql(both) -> None:
    from_pg, from_mariadb = (both["loaded"][engine] for engine in ENGINES)
    assert from_pg.keys() == from_mariadb.keys()
    for (table, key), rows in from_pg.items():
        assert_rows_equal(table, from_mariadb[(table, key)], rows)
    filled = {table for (table, _), rows in from_pg.items() if rows}
    assert filled == set(DAILY_TABLES) | set(PLAN_TABLES), "every table should get rows"


@pytest.mark.parametrize("day", DAYS)
def test_the_mariadb_run_matches_the_contract_on_the_same_plant(both, day) -> None:
    for table in DAILY_TABLES:
        want = reference_partition(both["source"], table, dt.date.fromisoformat(day))
        assert_rows_equal(table, both["loaded"]["mariadb"][(table, day)], want)
