"""The PRD §11 KPIs, measured from real runs recorded in a Dagster instance."""

import datetime as dt
import time

import dagster as dg

from aps_etl.defs.report import build_report_asset, compute, render

DAILY = dg.DailyPartitionsDefinition(start_date="2026-11-01", timezone="Asia/Seoul")


@dg.asset(partitions_def=DAILY)
def lot_history(context: dg.AssetExecutionContext) -> None:
    if context.run.tags.get("fail") == "yes":
        raise ValueError("MES returned a broken day")


def _runs(instance: dg.DagsterInstance) -> list[float]:
    job = dg.Definitions(
        assets=[lot_history],
        jobs=[dg.define_asset_job("aps_daily", selection=[lot_history], partitions_def=DAILY)],
    ).resolve_job_def("aps_daily")
    ends = []
    for day, fail in [("2026-11-20", False), ("2026-11-21", True), ("2026-11-21", False),
                      ("2026-11-20", False)]:  # fmt: skip
        job.execute_in_process(
            partition_key=day,
            instance=instance,
            tags={"fail": "yes"} if fail else {},
            raise_on_error=False,
        )
        ends.append(time.time())
    return ends


def test_success_rate_causes_reprocessing_time_and_freshness_lag() -> None:
    instance = dg.DagsterInstance.ephemeral()
    ends = _runs(instance)
    (daily, plan) = compute(instance, days=30)
    assert (daily.runs, daily.succeeded, daily.failed) == (4, 3, 1)
    assert daily.success_rate == 0.75
    assert dict(daily.causes) == {"lot_history: ValueError": 1}
    # first runs: 11-20's (11-21's first failed); reprocessing: 11-20's rerun and the
    # recovery of the failed 11-21
    assert len(daily.first_run_s) == 1 and len(daily.rerun_s) == 2
    assert all(0 < s < 60 for s in daily.first_run_s + daily.rerun_s)
    # lag: from the end of the business day (next midnight in Seoul) to its first load
    for day, first_success_end in (("2026-11-20", ends[0]), ("2026-11-21", ends[2])):
        day_end = dt.datetime.combine(
            dt.date.fromisoformat(day) + dt.timedelta(days=1),
            dt.time(),
            dt.timezone(dt.timedelta(hours=9)),
        ).timestamp()
        assert abs(daily.lag_h[day] - (first_success_end - day_end) / 3600) < 0.01
    assert plan.runs == 0 and plan.success_rate is None
    text = render([daily, plan], 30)
    assert "| aps_daily | 4 | 3 | 1 | 75.0% (below 99%) |" in text
    assert "| lot_history: ValueError | 1 |" in text
    assert "| 2026-11-21 |" in text
    # runs older than the window are not counted
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=31)
    assert compute(instance, days=30, now=later)[0].runs == 0


def test_the_report_is_an_asset_the_ui_shows() -> None:
    instance = dg.DagsterInstance.ephemeral()
    _runs(instance)
    result = dg.materialize([build_report_asset()], instance=instance)
    (event,) = result.get_asset_materialization_events()
    metadata = event.materialization.metadata
    assert "| aps_daily | 4 | 3 | 1 | 75.0% (below 99%) |" in metadata["report"].value
    assert metadata["daily_success_rate"].value == 0.75


def test_a_range_run_counts_for_each_of_its_days_and_missing_days_are_listed() -> None:
    instance = dg.DagsterInstance.ephemeral()
    job = dg.Definitions(
        assets=[lot_history],
        jobs=[dg.define_asset_job("aps_daily", selection=[lot_history], partitions_def=DAILY)],
    ).resolve_job_def("aps_daily")
    result = job.execute_in_process(
        instance=instance,
        tags={
            "dagster/asset_partition_range_start": "2026-11-20",
            "dagster/asset_partition_range_end": "2026-11-22",
        },
    )
    assert result.success
    now = dt.datetime(2026, 11, 25, 12, tzinfo=dt.UTC)  # 21:00 in Seoul: 11-24 has ended
    (daily, _) = compute(instance, days=5, now=now)
    assert daily.runs == 1 and len(daily.first_run_s) == 3  # one run, three days
    assert sorted(daily.lag_h) == ["2026-11-20", "2026-11-21", "2026-11-22"]
    assert daily.missing == ["2026-11-23", "2026-11-24"]
    assert "Business days not loaded in the window: 2026-11-23, 2026-11-24" in render([daily], 5)


def test_the_report_is_refreshed_every_morning() -> None:
    from aps_etl.definitions import defs

    schedule = defs.resolve_schedule_def("etl_report_schedule")
    assert (schedule.cron_schedule, schedule.execution_timezone) == ("0 7 * * *", "Asia/Seoul")
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    job = defs.resolve_job_def("etl_report")
    assert job.asset_layer.selected_asset_keys == {dg.AssetKey(["ops", "etl_report"])}
