"""Sensors: new APS plan runs become partitions and get their snapshot taken."""

from collections.abc import Sequence
from typing import Any

import dagster as dg

from aps_etl.defs.alerts import AlertSettings
from aps_etl.defs.tick_alerts import alert_refusal_once, alerting_tick
from aps_etl.lib.business_days import PartitionKeyError
from aps_etl.lib.lake.layout import check_partition_key
from aps_etl.lib.partitions import PLAN_RUNS, PLAN_RUNS_NAME, first_day
from aps_etl.lib.sources.database import SourceDatabase, SourceError

SENSOR_NAME = "plan_run_sensor"


def build_plan_run_sensor(job: Any) -> dg.SensorDefinition:
    @dg.sensor(
        name=SENSOR_NAME,
        job=job,
        minimum_interval_seconds=60,
        description="Adds every new COMPLETED plan run (plan from APS_FIRST_DAY on) as a "
        "partition and snapshots it. "
        "RUNNING and FAILED runs never become partitions, nor does a run_id that is not a "
        "safe lake folder name (letters, digits, '_', '.', '-'): that one is alerted once.",
        default_status=dg.DefaultSensorStatus.RUNNING,
    )
    def plan_run_sensor(
        context: dg.SensorEvaluationContext, source: SourceDatabase, alert_settings: AlertSettings
    ):
        from aps_etl.lib.sources.changes import recent_plan_runs

        with alerting_tick(context.instance, SENSOR_NAME, alert_settings):
            try:
                # bounded by the plant's first business day (APS_FIRST_DAY): older plan
                # runs are no partitions, and the MES need not list them every minute
                completed = recent_plan_runs(source, first_day().isoformat())
            except Exception as exc:
                # An unreachable MES fails the tick (red in the UI; alerted once an hour
                # while it lasts) instead of skipping quietly. No credentials in either.
                message = str(exc) if isinstance(exc, SourceError) else type(exc).__name__
                raise SourceError(
                    f"{SENSOR_NAME} cannot read plan_run from {source.describe()}: {message}"
                ) from None
            known = set(context.instance.get_dynamic_partitions(PLAN_RUNS_NAME))
            run_ids = [r for r in completed if r not in known]
            new, refused = _safe_and_refused(run_ids)
            for run_id, reason in refused:
                # Never added: the key becomes a lake folder and a Trino partition value.
                # Never retried: the same run_id is refused the same way every tick.
                context.log.error(f"plan run refused: {reason}")
                alert_refusal_once(
                    context.instance,
                    SENSOR_NAME,
                    run_id,
                    alert_settings,
                    f"{SENSOR_NAME}: COMPLETED plan run refused, not snapshotted: {reason}. "
                    "Rename the run in the MES (plan_run.run_id) to snapshot it.",
                )
            if not new:
                return dg.SkipReason(
                    "no new COMPLETED plan run"
                    + (f" ({len(refused)} refused: unsafe run_id)" if refused else "")
                )
            context.log.info(f"new plan runs: {', '.join(new)}")
            return dg.SensorResult(
                run_requests=[dg.RunRequest(partition_key=r, run_key=r) for r in new],
                dynamic_partitions_requests=[PLAN_RUNS.build_add_request(new)],
            )

    return plan_run_sensor


def _safe_and_refused(run_ids: Sequence[object]) -> tuple[list[str], list[tuple[str, str]]]:
    """The run_ids that are safe partition keys, and the others with the reason."""
    safe: list[str] = []
    refused: list[tuple[str, str]] = []
    for run_id in run_ids:
        try:
            safe.append(check_partition_key("run_id", run_id))  # type: ignore[arg-type]
        except PartitionKeyError as exc:
            refused.append((str(run_id), str(exc)))
    return safe, refused
