"""The code location loads, as `dagster dev` and the webserver load it."""

import datetime
import subprocess
import sys

import dagster as dg


def test_definitions_load() -> None:
    from aps_etl.definitions import defs

    assert isinstance(defs, dg.Definitions)
    defs.get_repository_def().load_all_definitions()


def test_dagster_cli_lists_the_code_location() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-m", "aps_etl.definitions"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_daily_schedule_runs_the_day_that_just_ended() -> None:
    from aps_etl.definitions import defs

    schedule = defs.get_schedule_def("aps_daily_schedule")
    assert schedule.cron_schedule == "0 2 * * *"
    assert schedule.execution_timezone == "Asia/Seoul"
    # 2026-11-26 02:00 KST: the last complete business day is 2026-11-25 (D-1).
    context = dg.build_schedule_context(
        scheduled_execution_time=datetime.datetime.fromisoformat("2026-11-26T02:00:00+09:00")
    )
    (request,) = schedule.evaluate_tick(context).run_requests
    assert request.partition_key == "2026-11-25"


def test_every_job_runs_in_one_process_however_it_is_launched() -> None:
    from aps_etl.definitions import defs

    for name in ("aps_daily", "aps_plan_snapshot"):
        job = defs.resolve_job_def(name)
        assert job.executor_def.name == dg.in_process_executor.name, name


def test_plan_snapshots_share_one_lane_of_the_queue() -> None:
    from aps_etl.definitions import defs
    from aps_etl.ops.jobs import PLAN_LANE_TAG

    assert defs.resolve_job_def("aps_plan_snapshot").tags[PLAN_LANE_TAG] == "plan_snapshot"
    assert PLAN_LANE_TAG not in defs.resolve_job_def("aps_daily").tags
