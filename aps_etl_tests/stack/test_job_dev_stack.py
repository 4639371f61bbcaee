"""Scenario 1 end to end on the dev stack: PostgreSQL `mes` -> MinIO lake -> Polars ->
Trino `INSERT INTO aps... SELECT ... FROM lake...` -> PostgreSQL `aps`, checked against an
independent SQL implementation of the contract run on the source."""

from __future__ import annotations

import datetime as dt
import uuid

import dagster as dg
import pytest

from aps_etl.definitions import build_defs
from aps_etl.defs.alerts import AlertSettings
from aps_etl.devdata import seed_source
from aps_etl.env.settings import resources_for
from aps_etl.env.stack import postgres_uri, trino_connect
from aps_etl_tests.pipeline_harness import (
    DAILY_TABLES,
    assert_rows_equal,
    fetch,
    reference_partition,
    run_daily,
    sorted_by_grain,
    step_failures,
    target_partition,
)
from aps_etl_tests.reference_sql_kpi import PLAN_DIFF

pytestmark = pytest.mark.stack

START = dt.date(2026, 11, 20)
DAYS = ("2026-11-20", "2026-11-21", "2026-11-22")
TABLES = DAILY_TABLES


@pytest.fixture(scope="module")
def dev(stack_settings: dict[str, str]):
    run = uuid.uuid4().hex[:8]
    owner = postgres_uri(stack_settings, stack_settings["APS_MES_DB"], "mes_owner")
    seed_source(owner, start_date=START, days=3, lots=1200, seed=7, progress=False)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("APS_ENV", "dev")
        # this run's own corner of the bucket and of Trino's lake catalog
        mp.setenv("APS_LAKE_ROOT", f"s3://{stack_settings['APS_S3_BUCKET']}/tests/{run}")
        mp.setenv("APS_TRINO_LAKE_SCHEMA_PREFIX", f"t{run}_")
        resources = resources_for("dev")
        yield {
            "run": run,
            "resources": resources,
            "source": owner,
            "target": postgres_uri(stack_settings, stack_settings["APS_APS_DB"], "aps_loader"),
            "instance": dg.DagsterInstance.ephemeral(),
            "settings": stack_settings,
        }
    lake = resources["lake"].process_config_and_initialize()  # resolves its EnvVars
    if lake.fs.exists(lake.root):
        lake.fs.rm(lake.root, recursive=True)


@pytest.fixture(scope="module")
def loaded(dev):
    for day in DAYS:
        result = run_daily(dev["resources"], day, dev["instance"])
        assert result.success, f"{day}: {step_failures(result)}"
        loaders = {
            e.materialization.metadata["loader"].value
            for e in result.get_asset_materialization_events()
            if e.asset_key.path[0] == "load"
        }
        assert loaders == {"trino"}


@pytest.mark.parametrize("table", TABLES)
@pytest.mark.parametrize("day", DAYS)
def test_target_matches_the_contract_computed_on_the_source(dev, loaded, day, table) -> None:
    date = dt.date.fromisoformat(day)
    want = reference_partition(dev["source"], table, date)
    assert want, f"the generated plant should give {table} rows on {day}"
    assert_rows_equal(table, target_partition(dev["target"], table, date), want)


def test_lake_tables_are_queryable_in_trino_across_partitions(dev, loaded) -> None:
    settings = dev["settings"]
    connection = trino_connect(settings)
    cursor = connection.cursor()
    cursor.execute(
        f'SELECT "date", count(*) FROM lake."t{dev["run"]}_transform_aps_input".aps_input_wip '
        'GROUP BY "date" ORDER BY 1'
    )
    per_day = cursor.fetchall()
    assert [str(day) for day, _ in per_day] == list(DAYS)
    for day, rows in per_day:
        assert rows == len(target_partition(dev["target"], "aps_input_wip", day))


def test_rerun_through_trino_leaves_the_same_rows(dev, loaded) -> None:
    day = dt.date(2026, 11, 21)
    before = {t: target_partition(dev["target"], t, day) for t in TABLES}
    result = run_daily(dev["resources"], "2026-11-21", dev["instance"])
    assert result.success, step_failures(result)
    for table in TABLES:
        after = target_partition(dev["target"], table, day)
        assert after == before[table], table
    leftovers = fetch(
        dev["target"],
        "select count(*) as n from information_schema.tables where table_schema = 'aps_stage'",
    )
    assert leftovers == [{"n": 0}], "staging tables must be dropped after every load"


def test_target_schema_drift_stops_the_load_before_any_write(dev, loaded) -> None:
    day = dt.date(2026, 11, 22)
    before = target_partition(dev["target"], "aps_input_lead_time", day)
    fetch(dev["target"], "alter table aps_input_lead_time add column planner_note text")
    try:
        result = run_daily(dev["resources"], "2026-11-22", dev["instance"])
    finally:
        fetch(dev["target"], "alter table aps_input_lead_time drop column planner_note")
    failures = step_failures(result)
    message = failures["load__aps_daily"]
    assert "does not match the output schema" in message
    assert "unexpected column planner_note" in message
    assert target_partition(dev["target"], "aps_input_lead_time", day) == before
    # a drifted target is not retried: it fails the same way every time
    retries = [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    assert retries == []


# Scenario 2: plan snapshots by run_id ------------------------------------------------------


def _sensor_tick(dev):
    defs = build_defs(dev["resources"])
    sensor = defs.get_sensor_def("plan_run_sensor")
    context = dg.build_sensor_context(
        instance=dev["instance"],
        resources={"source": dev["resources"]["source"], "alert_settings": AlertSettings()},
        repository_def=defs.get_repository_def(),
    )
    result = sensor(context)  # the sensor's own answer: SensorResult or SkipReason
    return result if isinstance(result, dg.SensorResult) else dg.SensorResult(skip_reason=result)


@pytest.fixture(scope="module")
def plans(dev):
    tick = _sensor_tick(dev)
    requested = [request.partition_key for request in tick.run_requests]
    (add,) = tick.dynamic_partitions_requests
    assert list(add.partition_keys) == requested
    dev["instance"].add_dynamic_partitions(add.partitions_def_name, requested)
    # snapshot the runs in the order they were made, as the sensor's runs would
    job = build_defs(dev["resources"]).resolve_job_def("aps_plan_snapshot")
    for run_id in requested:
        result = job.execute_in_process(
            partition_key=run_id, instance=dev["instance"], raise_on_error=False
        )
        assert result.success, f"{run_id}: {step_failures(result)}"
    return requested


def test_sensor_requests_exactly_the_completed_runs(dev, plans) -> None:
    completed = fetch(
        dev["source"],
        "select run_id from plan_run where status = 'COMPLETED' order by created_at, run_id",
    )
    assert plans == [row["run_id"] for row in completed]
    others = fetch(dev["source"], "select count(*) as n from plan_run where status <> 'COMPLETED'")
    assert others[0]["n"] > 0, "the generated plant should have RUNNING/FAILED runs to ignore"
    assert not _sensor_tick(dev).run_requests  # nothing new the second time


def test_snapshots_are_loaded_whole_with_their_base_date(dev, plans) -> None:
    for run_id in plans:
        want = fetch(
            dev["source"],
            """select p.run_id, r.base_date, p.plan_date, p.product_id, p.step_id, p.process_id,
                      p.planned_qty::bigint as planned_qty
               from plan_production p join plan_run r using (run_id)
               where p.run_id = $1
               order by p.plan_date, p.product_id collate "C", p.step_id collate "C" """,
            run_id,
        )
        assert target_partition(dev["target"], "aps_plan_production", run_id) == want
        lake = dev["resources"]["lake"].process_config_and_initialize()
        snapshot = lake.uri(
            f"extract/job_name=aps_plan/run_id={run_id}/plan_production/data.parquet"
        )
        assert lake.fs.exists(snapshot)


def test_plan_diff_matches_the_contract(dev, plans) -> None:
    nonempty = 0
    for run_id in plans:
        want = fetch(dev["source"], PLAN_DIFF, run_id)
        got = target_partition(dev["target"], "aps_plan_diff", run_id)
        assert_rows_equal("aps_plan_diff", got, sorted_by_grain("aps_plan_diff", want))
        nonempty += bool(got)
    assert nonempty >= len(plans) - 1  # every run but the first differs from its predecessor


def test_a_new_plan_run_is_picked_up_by_the_sensor(dev, plans) -> None:
    new_id = f"TEST-{dev['run']}"
    fetch(
        dev["source"],
        """insert into plan_run (run_id, base_date, horizon_days, created_at, status)
           values ($1, date '2026-11-23', 3, timestamptz '2026-11-23 08:00+09', 'COMPLETED')""",
        new_id,
    )
    try:
        tick = _sensor_tick(dev)
    finally:
        fetch(dev["source"], "delete from plan_run where run_id = $1", new_id)
    assert [request.partition_key for request in tick.run_requests] == [new_id]
