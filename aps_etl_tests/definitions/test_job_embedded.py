"""Scenario 1 end to end on the embedded default (local folder lake, ADBC COPY loader),
checked row by row against an independent SQL implementation of the contract run on the
source itself."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
import pytest

from aps_etl.definitions import build_defs
from aps_etl.devdata import seed_source
from aps_etl.env.embedded import SOURCE_DB, TARGET_DB, start_embedded_postgres
from aps_etl.env.settings import resources_for
from aps_etl.env.stack import REPO_ROOT
from aps_etl_tests.pipeline_harness import (
    DAILY_TABLES,
    EVENT_TABLES,
    PER_DAY_TABLES,
    TABLE_JOB,
    accept_incomplete,
    assert_rows_equal,
    fetch,
    reference_partition,
    run_daily,
    step_failures,
    target_partition,
)

REPO = REPO_ROOT
START = dt.date(2026, 11, 20)
DAYS = ("2026-11-20", "2026-11-21", "2026-11-22")
TABLES = DAILY_TABLES


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory):
    home = tmp_path_factory.mktemp("local-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("APS_LOCAL_HOME", str(home))
        mp.setenv("APS_ENV", "local")
        mp.delenv("APS_LAKE_ROOT", raising=False)
        pg = start_embedded_postgres(home / "postgres")
        seed_source(pg.uri(SOURCE_DB), start_date=START, days=3, lots=900, progress=False)
        yield {
            "home": home,
            "source": pg.uri(SOURCE_DB),
            "target": pg.uri(TARGET_DB),
            "resources": resources_for("local"),
            "instance": dg.DagsterInstance.ephemeral(),
        }


@pytest.fixture(scope="module")
def loaded(local):
    results = {day: run_daily(local["resources"], day, local["instance"]) for day in DAYS}
    for day, result in results.items():
        assert result.success, f"{day}: {step_failures(result)}"
    return results


@pytest.mark.parametrize("table", TABLES)
@pytest.mark.parametrize("day", DAYS)
def test_target_matches_the_contract_computed_on_the_source(local, loaded, day, table) -> None:
    date = dt.date.fromisoformat(day)
    want = reference_partition(local["source"], table, date)
    got = target_partition(local["target"], table, date)
    assert want, f"the generated plant should give {table} rows on {day}"
    assert_rows_equal(table, got, want)


def test_lake_holds_the_same_rows_as_the_target(local, loaded) -> None:
    for table in TABLES:
        path = (
            Path(local["home"])
            / f"lake/transform/job_name={TABLE_JOB[table]}/date=2026-11-21/{table}/data.parquet"
        )
        lake_rows = pq.read_table(path).num_rows
        target_rows = len(target_partition(local["target"], table, dt.date(2026, 11, 21)))
        assert lake_rows == target_rows > 0


def test_rerun_leaves_the_same_rows_and_reuses_extracts(local, loaded) -> None:
    day = dt.date(2026, 11, 21)
    before = {t: target_partition(local["target"], t, day) for t in TABLES}
    others = fetch(
        local["target"], "select count(*) as n from aps_input_wip where base_date <> $1", day
    )
    rerun = run_daily(local["resources"], "2026-11-21", local["instance"])
    assert rerun.success, step_failures(rerun)
    after = {t: target_partition(local["target"], t, day) for t in TABLES}
    for table in TABLES:
        for old, new in zip(before[table], after[table], strict=True):
            assert old == new, f"{table}: {old} became {new}"
    assert (
        fetch(local["target"], "select count(*) as n from aps_input_wip where base_date <> $1", day)
        == others
    )
    reused = {
        event.asset_key.path[-1]: event.materialization.metadata["reused"].value
        for event in rerun.get_asset_materialization_events()
        if event.asset_key.path[0] == "extract"
    }
    assert reused and all(reused.values()), reused


def test_a_day_without_production_loads_what_the_contract_says(local) -> None:
    """No lot events before the plant's data starts: scenario 1 is empty; equipment-based
    tables still list every active equipment (utilization 0, no plan in force)."""
    day = dt.date(2026, 10, 1)
    # The completeness guard: empty event tables do not silently become the day's data.
    refused = run_daily(local["resources"], day.isoformat(), local["instance"])
    assert not refused.success
    message = step_failures(refused)["extract__aps_input"]
    for table in EVENT_TABLES:
        assert f"extract {table} for 2026-10-01 has 0 rows" in message, message
    # An operator who knows the plant stood still takes them explicitly.
    result = run_daily(
        local["resources"], day.isoformat(), local["instance"], accept_incomplete(*EVENT_TABLES)
    )
    assert result.success, step_failures(result)
    for table in ("aps_input_wip", "aps_input_cycle_time", "aps_input_lead_time"):
        assert target_partition(local["target"], table, day) == []
    for table in TABLES:
        want = reference_partition(local["source"], table, day)
        assert_rows_equal(table, target_partition(local["target"], table, day), want)
    util = target_partition(local["target"], "aps_kpi_equipment_util", day)
    assert util and all(r["actual_util"] == 0 and r["plan_run_id"] is None for r in util)


def test_invalid_data_stops_the_run_with_nothing_loaded(local, loaded) -> None:
    # A lot at a step that is not on its product's route: WIP gets a null process_id.
    day = "2026-11-22"
    fetch(
        local["source"],
        """insert into lot_history (event_id, lot_id, product_id, event_type, event_ts,
             step_seq, step_id, lot_status, qty, updated_at)
           select 990000001, 'BAD-LOT', product_id, 'CREATE',
                  timestamptz '2026-11-23 10:00+09', 99, 'NO-SUCH-STEP', 'WAIT', 25,
                  timestamptz '2026-11-23 10:00+09'
           from product order by product_id limit 1
           returning event_id""",
    )
    try:
        # the day after the seeded ones: its results are not there, so accept that
        result = run_daily(
            local["resources"], "2026-11-23", local["instance"], accept_incomplete(*EVENT_TABLES)
        )
    finally:
        fetch(local["source"], "delete from lot_history where lot_id = 'BAD-LOT' returning 1")
    assert not result.success
    failures = step_failures(result)
    assert "transform__aps_input__aps_input_wip" in failures
    assert "validation failed" in failures["transform__aps_input__aps_input_wip"]
    assert "process_id" in failures["transform__aps_input__aps_input_wip"]
    # Nothing loaded for the day, not even the tables that were valid (nor merged).
    for table in PER_DAY_TABLES:
        assert target_partition(local["target"], table, dt.date(2026, 11, 23)) == []
    assert (
        fetch(local["target"], "select * from aps_load_log where partition_key = '2026-11-23'")
        == []
    )
    wip_path = (
        Path(local["home"]) / "lake/transform/job_name=aps_input/date=2026-11-23/aps_input_wip"
    )
    assert not (wip_path / "data.parquet").exists()
    del day


def test_missing_source_table_is_named_and_not_retried(local) -> None:
    fetch(local["source"], "alter table equipment_event rename to equipment_event_moved")
    try:
        result = run_daily(local["resources"], "2026-11-10", local["instance"])
    finally:
        fetch(local["source"], "alter table equipment_event_moved rename to equipment_event")
    failures = step_failures(result)
    message = failures["extract__aps_input"]
    assert "source table 'equipment_event' does not exist" in message
    restarts = [e for e in result.all_events if e.event_type_value == "STEP_RESTARTED"]
    assert restarts == []


def test_single_run_backfill_over_a_date_range(local, loaded, tmp_path: Path) -> None:
    """Three days in ONE run into a fresh lake: every asset reads and writes the range
    partition by partition, and the target again equals the contract for each day."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("APS_LAKE_ROOT", str(tmp_path / "lake"))
        resources = resources_for("local")
    job = build_defs(resources).resolve_job_def("aps_daily")
    result = job.execute_in_process(
        instance=local["instance"],
        tags={
            "dagster/asset_partition_range_start": DAYS[0],
            "dagster/asset_partition_range_end": DAYS[-1],
        },
        raise_on_error=False,
    )
    assert result.success, step_failures(result)
    for day in DAYS:
        for table in TABLES:
            path = (
                tmp_path
                / f"lake/transform/job_name={TABLE_JOB[table]}/date={day}/{table}"
                / "data.parquet"
            )
            assert path.exists(), path
            date = dt.date.fromisoformat(day)
            want = reference_partition(local["source"], table, date)
            assert_rows_equal(table, target_partition(local["target"], table, date), want)
    checks = result.get_asset_check_evaluations()
    assert checks and all(check.passed for check in checks)
    # each partition's materialization carries its own numbers, not the range's totals
    seen = set()
    for event in result.get_asset_materialization_events():
        stage, table, day = event.asset_key.path[0], event.asset_key.path[-1], event.partition
        meta = {k: getattr(v, "value", v) for k, v in event.materialization.metadata.items()}
        seen.add((stage, table, day))
        if stage == "load":
            rows = len(target_partition(local["target"], table, dt.date.fromisoformat(day)))
            assert meta["rows_loaded"] == meta["dagster/partition_row_count"] == rows
        elif stage in ("extract", "transform"):
            assert f"date={day}/{table}/" in meta["parquet_path"] == meta["dagster/uri"]
            rows = pq.read_metadata(meta["parquet_path"]).num_rows
            assert meta["row_count"] == meta["dagster/partition_row_count"] == rows, (table, day)
    assert {(s, t, d) for s, t, d in seen if s == "load"} == {
        ("load", t, d) for t in TABLES for d in DAYS
    }


def test_cli_backfill_over_a_date_range(local, loaded, tmp_path: Path) -> None:
    """The same range from the command line: Dagster's own CLI, one run."""
    dagster_home = tmp_path / "dagster"
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").write_text((REPO / "dagster.yaml").read_text())
    selection = " or ".join(
        [f"group:{g}" for g in ("aps_input_extract", "aps_input", "aps_input_load")]
        + [f"group:{g}" for g in ("aps_kpi", "aps_kpi_load", "aps_balance", "aps_balance_load")]
        + ['key:"validated/aps_daily"']
    )
    env = {
        **os.environ,
        "DAGSTER_HOME": str(dagster_home),
        "APS_LAKE_ROOT": str(tmp_path / "lake"),
    }
    done = subprocess.run(
        [
            str(REPO / ".venv/bin/dagster"),
            "asset",
            "materialize",
            "-m",
            "aps_etl.definitions",
            "--select",
            selection,
            "--partition-range",
            f"{DAYS[0]}...{DAYS[-1]}",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    instance = dg.DagsterInstance.from_config(str(dagster_home))
    runs = instance.get_runs()
    assert len(runs) == 1 and runs[0].is_success
    for day in DAYS:
        assert (
            tmp_path / f"lake/transform/job_name=aps_kpi/date={day}/aps_kpi_bottleneck"
        ).exists()


def test_checks_record_the_violation_counts(local) -> None:
    """A failed validation shows as failed blocking asset checks with counts and samples."""
    fetch(
        local["source"],
        """insert into lot_history (event_id, lot_id, product_id, event_type, event_ts,
             step_seq, step_id, lot_status, qty, updated_at)
           select 990000002, 'BAD-LOT-2', product_id, 'CREATE',
                  timestamptz '2026-11-24 10:00+09', 99, 'NO-SUCH-STEP', 'WAIT', 25,
                  timestamptz '2026-11-24 10:00+09'
           from product order by product_id limit 1
           returning event_id""",
    )
    try:
        result = run_daily(
            local["resources"], "2026-11-24", local["instance"], accept_incomplete(*EVENT_TABLES)
        )
    finally:
        fetch(local["source"], "delete from lot_history where lot_id = 'BAD-LOT-2' returning 1")
    evaluations = {
        (e.asset_key.path[-1], e.check_name): e for e in result.get_asset_check_evaluations()
    }
    nulls = evaluations[("aps_input_wip", "nulls")]
    assert not nulls.passed
    assert nulls.metadata["violations"].value == 1
    assert "process_id not_nullable" in nulls.metadata["violation_counts"].value
    assert nulls.metadata["sample_rows"].value[0]["step_id"] == "NO-SUCH-STEP"
    assert evaluations[("aps_input_wip", "ranges")].passed
    restarts = [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    assert restarts == []  # validation failures are not retried


def test_source_rows_breaking_the_rules_fail_the_extract_check(local, loaded) -> None:
    """NaN in a numeric source column (PostgreSQL numeric holds it, the CHECK lets it
    through): the new snapshot is refused with counts and samples on the extract's
    `source_rules` check, nothing is transformed, and the day keeps its snapshot."""
    kept = fetch(
        local["source"],
        "select route_id, std_cycle_min::text as v from route_step where step_seq = 2",
    )
    fetch(
        local["source"],
        "update route_step set std_cycle_min = 'NaN' where step_seq = 2 returning 1",
    )
    try:
        result = run_daily(local["resources"], "2026-11-22", local["instance"])
    finally:
        for row in kept:  # as it was
            fetch(
                local["source"],
                "update route_step set std_cycle_min = $1::numeric where route_id = $2 "
                "and step_seq = 2 returning 1",
                row["v"],
                row["route_id"],
            )
    assert not result.success
    (check,) = [
        e
        for e in result.get_asset_check_evaluations()
        if e.asset_key.path[-1] == "route_step" and e.check_name == "source_rules"
    ]
    assert not check.passed
    (count,) = check.metadata["violation_counts"].value.values()
    assert count > 0 and check.metadata["sample_rows"].value["std_cycle_min is finite"]
    steps = {e.step_key for e in result.all_events if e.event_type_value == "STEP_START"}
    assert steps == {"extract__aps_input"}, steps  # nothing downstream ran
