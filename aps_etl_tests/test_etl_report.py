"""The PRD §11 KPIs, measured from real runs recorded in a Dagster instance."""

import datetime as dt
import time

import dagster as dg

from aps_etl.etl_report import build_report_asset, compute, render

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
    assert len(daily.first_run_s) == 2 and len(daily.rerun_s) == 1  # 11-20 ran twice
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
