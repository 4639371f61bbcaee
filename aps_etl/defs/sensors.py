"""Sensors: new APS plan runs become partitions and get their snapshot taken."""

from typing import Any

import dagster as dg

from aps_etl.defs.alerts import AlertSettings, alert_once_an_hour, clear_alert
from aps_etl.lib.partitions import PLAN_RUNS, PLAN_RUNS_NAME
from aps_etl.lib.sources.database import SourceDatabase, SourceError

COMPLETED_RUNS_SQL = (
    "select run_id from plan_run where status = 'COMPLETED' order by created_at, run_id"
)


def build_plan_run_sensor(job: Any) -> dg.SensorDefinition:
    @dg.sensor(
        name="plan_run_sensor",
        job=job,
        minimum_interval_seconds=60,
        description="Adds every new COMPLETED plan run as a partition and snapshots it. "
        "RUNNING and FAILED runs never become partitions.",
        default_status=dg.DefaultSensorStatus.RUNNING,
    )
    def plan_run_sensor(
        context: dg.SensorEvaluationContext, source: SourceDatabase, alert_settings: AlertSettings
    ):
        try:
            table = source.fetch_arrow(COMPLETED_RUNS_SQL)
        except Exception as exc:
            # An unreachable MES fails the tick (red in the UI) and alerts, once an hour
            # while it lasts, instead of skipping quietly. No credentials in either.
            message = str(exc) if isinstance(exc, SourceError) else type(exc).__name__
            error = f"plan_run_sensor cannot read plan_run from {source.describe()}: {message}"
            alert_once_an_hour(context.instance, "plan_run_sensor", alert_settings, error)
            raise SourceError(error) from None
        clear_alert(context.instance, "plan_run_sensor")
        known = set(context.instance.get_dynamic_partitions(PLAN_RUNS_NAME))
        new = [run_id for run_id in table.column("run_id").to_pylist() if run_id not in known]
        if not new:
            return dg.SkipReason("no new COMPLETED plan run")
        context.log.info(f"new plan runs: {', '.join(new)}")
        return dg.SensorResult(
            run_requests=[dg.RunRequest(partition_key=run_id, run_key=run_id) for run_id in new],
            dynamic_partitions_requests=[PLAN_RUNS.build_add_request(new)],
        )

    return plan_run_sensor
