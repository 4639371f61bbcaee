"""The PRD's error table (§8.1) provoked against the real services of the dev stack:
extract failure -> retried, then rerunnable; load failure -> retried, then the Trino SQL
rerun; transform (validation) failure -> logged, run stopped, not retried."""

from __future__ import annotations

import datetime as dt
import subprocess
import uuid

import dagster as dg
import pytest

from aps_etl.definitions import build_defs
from aps_etl.devdata import seed_source
from aps_etl.env.settings import resources_for
from aps_etl.env.stack import REPO_ROOT, postgres_uri
from aps_etl_tests.pipeline_harness import (
    assert_rows_equal,
    reference_partition,
    run_daily,
    step_failures,
    target_partition,
)

pytestmark = pytest.mark.stack

STACK = REPO_ROOT / "infra" / "stack"


def stack(*args: str) -> None:
    done = subprocess.run([str(STACK), *args], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr


def retries(result) -> dict[str, int]:
    counts: dict[str, int] = {}
    for event in result.all_events:
        if event.event_type_value == "STEP_UP_FOR_RETRY":
            counts[event.step_key] = counts.get(event.step_key, 0) + 1
    return counts


@pytest.fixture(scope="module")
def dev(stack_settings: dict[str, str]):
    run = uuid.uuid4().hex[:8]
    owner = postgres_uri(stack_settings, stack_settings["APS_MES_DB"], "mes_owner")
    seed_source(owner, start_date=dt.date(2026, 11, 20), days=3, lots=600, seed=11, progress=False)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("APS_ENV", "dev")
        mp.setenv("APS_LAKE_ROOT", f"s3://{stack_settings['APS_S3_BUCKET']}/tests/{run}")
        mp.setenv("APS_TRINO_LAKE_SCHEMA_PREFIX", f"t{run}_")
        resources = resources_for("dev")
        yield {
            "resources": resources,
            "source": owner,
            "target": postgres_uri(stack_settings, stack_settings["APS_APS_DB"], "aps_loader"),
            "instance": dg.DagsterInstance.ephemeral(),
            "passwords": [v for k, v in stack_settings.items() if "PASSWORD" in k or "SECRET" in k],
        }
    lake = resources["lake"].process_config_and_initialize()
    if lake.fs.exists(lake.root):
        lake.fs.rm(lake.root, recursive=True)


def test_extract_failure_is_retried_then_rerunnable(dev) -> None:
    stack("down", "postgres")
    try:
        failed = run_daily(dev["resources"], "2026-11-21", dev["instance"])
    finally:
        stack("up", "postgres")
    assert not failed.success
    retried = retries(failed)
    assert retried.get("extract__aps_input") == 3, retried
    message = step_failures(failed)["extract__aps_input"]
    assert "cannot connect to PostgreSQL database 'mes' at 127.0.0.1" in message
    assert not any(secret in message for secret in dev["passwords"])
    # nothing was loaded, and the same run goes through once the source is back
    assert not any(key.startswith("load__") for key in step_failures(failed))
    rerun = run_daily(dev["resources"], "2026-11-21", dev["instance"])
    assert rerun.success, step_failures(rerun)
    for table in ("aps_input_wip", "aps_kpi_equipment_util"):
        day = dt.date(2026, 11, 21)
        assert_rows_equal(
            table,
            target_partition(dev["target"], table, day),
            reference_partition(dev["source"], table, day),
        )


def test_load_failure_is_retried_then_the_trino_sql_reruns(dev) -> None:
    day = dt.date(2026, 11, 22)
    transforms = run_daily(dev["resources"], day.isoformat(), dev["instance"])
    assert transforms.success, step_failures(transforms)
    job = build_defs(dev["resources"]).resolve_job_def("aps_daily")
    loads = [
        dg.AssetKey(["load", "aps_input", name])
        for name in ("aps_input_wip", "aps_input_cycle_time", "aps_input_lead_time")
    ]
    stack("down", "trino")
    try:
        failed = job.execute_in_process(
            partition_key=day.isoformat(),
            instance=dev["instance"],
            asset_selection=loads,
            raise_on_error=False,
        )
    finally:
        stack("up", "trino")
    assert not failed.success
    assert retries(failed).get("load__aps_daily") == 3
    assert "Trino at 127.0.0.1" in step_failures(failed)["load__aps_daily"]
    rerun = job.execute_in_process(
        partition_key=day.isoformat(), instance=dev["instance"], asset_selection=loads
    )
    assert rerun.success
    assert_rows_equal(
        "aps_input_wip",
        target_partition(dev["target"], "aps_input_wip", day),
        reference_partition(dev["source"], "aps_input_wip", day),
    )
