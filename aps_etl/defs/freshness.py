"""Is yesterday loaded? Freshness checks on the daily loads, the sensor that evaluates
them, and an alert when a day is overdue.

Each `load/<scenario>/<table>` of `aps_daily` gets Dagster's time-partition freshness
check: once the deadline has passed (APS_FRESHNESS_DEADLINE, default 06:00 Asia/Seoul),
day D-1 must be loaded. Dagster's freshness sensor evaluates the checks (on by default);
its runs carry FRESHNESS_TAG, and `overdue_alerts` reads the evaluations of each such run
and sends the overdue tables through the failure-alert channels (alerts.py), once per
overdue day and table.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Sequence
from typing import Any

import dagster as dg

from aps_etl.defs.alerts import AlertDeliveryError, AlertSettings, deliver
from aps_etl.lib.business_days import PLANT_TZ
from aps_etl.lib.errors import ConfigurationError
from aps_etl.lib.tags import FRESHNESS_TAG

# Dagster 1.13 calls these checks superseded by FreshnessPolicy. They are kept because
# they are partition-aware: "partition D-1 exists by the deadline". A cron FreshnessPolicy
# asks only for some materialization inside a window. A backfill of an old day would
# satisfy it, and a day missing since last week would not fail it.
warnings.filterwarnings("ignore", message=".*freshness_checks` is superseded")

DEADLINE_VARIABLE = "APS_FRESHNESS_DEADLINE"
DEFAULT_DEADLINE = "06:00"
SENSOR_NAME = "daily_freshness"
ALERT_SENSOR_NAME = "overdue_alerts"


def deadline_cron(value: str | None = None) -> str:
    """APS_FRESHNESS_DEADLINE ("HH:MM" in the plant's time zone) as a daily cron."""
    raw = (value if value is not None else os.environ.get(DEADLINE_VARIABLE, "")).strip()
    raw = raw or DEFAULT_DEADLINE
    match = re.fullmatch(r"([01]?\d|2[0-3]):([0-5]\d)", raw)
    if not match:
        raise ConfigurationError(
            f"{DEADLINE_VARIABLE}={raw!r}: give the daily deadline as HH:MM "
            f"({PLANT_TZ}), e.g. {DEFAULT_DEADLINE}"
        )
    return f"{int(match.group(2))} {int(match.group(1))} * * *"


def build_freshness_checks(loads: Sequence[dg.AssetsDefinition]) -> Sequence[Any]:
    """One check per daily load: D-1 loaded by the deadline (Dagster's own check)."""
    keys = [key for assets in loads for key in assets.keys]
    return dg.build_time_partition_freshness_checks(
        assets=keys, deadline_cron=deadline_cron(), timezone=PLANT_TZ
    )


def build_freshness_sensor(checks: Sequence[Any]) -> dg.SensorDefinition:
    """Dagster's sensor that evaluates the checks; on from the first deployment."""
    return dg.build_sensor_for_freshness_checks(
        freshness_checks=checks,
        name=SENSOR_NAME,
        default_status=dg.DefaultSensorStatus.RUNNING,
        tags={FRESHNESS_TAG: "true"},
    )


CHECK_JOB = "daily_freshness_checks"


def build_deadline_schedule(checks: Sequence[Any]) -> dg.ScheduleDefinition:
    """Evaluates the checks at every deadline, whatever their last result: Dagster's sensor
    leaves a failed check alone until something materializes, so without this a second
    day of an outage would raise no new alert."""
    keys = [key for check in checks for key in check.check_keys]
    job = dg.define_asset_job(
        CHECK_JOB,
        selection=dg.AssetSelection.checks(*keys),
        executor_def=dg.in_process_executor,
        description="The daily loads' freshness checks, at the deadline.",
    )
    return dg.ScheduleDefinition(
        job=job,
        cron_schedule=deadline_cron(),
        execution_timezone=PLANT_TZ,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        tags={FRESHNESS_TAG: "true"},
    )


def _alerted_key(day: str) -> str:
    return f"aps_etl/overdue_alerted/{day}"


def overdue(instance: dg.DagsterInstance, run_id: str) -> list[dict[str, Any]]:
    """The failed freshness evaluations of a run: table and how late."""
    found = []
    for record in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION):
        event = record.dagster_event
        evaluation = event.event_specific_data if event else None
        if not isinstance(evaluation, dg.AssetCheckEvaluation) or evaluation.passed:
            continue
        metadata: dict[str, Any] = {
            k: getattr(v, "value", v) for k, v in evaluation.metadata.items()
        }
        deadline = metadata.get("dagster/latest_cron_tick_timestamp")
        last = metadata.get("dagster/last_updated_timestamp")
        found.append(
            {
                "asset": evaluation.asset_key.to_user_string(),
                "check": evaluation.check_name,
                "overdue_s": record.timestamp - float(deadline) if deadline else None,
                "deadline": deadline,
                "last_updated": _local(float(last)) if last else None,
            }
        )
    return found


def _local(timestamp: float) -> str:
    import datetime as dt
    from zoneinfo import ZoneInfo

    return dt.datetime.fromtimestamp(timestamp, ZoneInfo(PLANT_TZ)).strftime("%Y-%m-%d %H:%M")


def expected_day(items: list[dict[str, Any]]) -> str:
    """The business day the checks expected: the day before the deadline's."""
    import datetime as dt
    from zoneinfo import ZoneInfo

    deadline = next((i["deadline"] for i in items if i["deadline"]), None)
    if deadline is None:
        return "unknown"
    local = dt.datetime.fromtimestamp(float(deadline), ZoneInfo(PLANT_TZ)).date()
    return (local - dt.timedelta(days=1)).isoformat()


def overdue_message(items: list[dict[str, Any]], ui_url: str | None) -> tuple[str, str]:
    import datetime as dt
    from zoneinfo import ZoneInfo

    zone = ZoneInfo(PLANT_TZ)
    deadline = next((i["deadline"] for i in items if i["deadline"]), None)
    when = (
        dt.datetime.fromtimestamp(float(deadline), zone).strftime("%Y-%m-%d %H:%M %Z")
        if deadline
        else "its deadline"
    )
    # the deadline of day D is on D+1 (D-1 of the deadline's day is the expected day)
    day = (
        (dt.datetime.fromtimestamp(float(deadline), zone).date() - dt.timedelta(days=1))
        if deadline
        else None
    )
    lines = [f"daily load overdue: {len(items)} table(s) not loaded for {day} by {when}"]
    for item in items:
        late = item["overdue_s"]
        lines.append(
            f"- {item['asset']}"
            + (f": {float(late) / 60:.0f} min late" if late is not None else "")
            + (f", last loaded {item['last_updated']}" if item["last_updated"] else "")
        )
    if ui_url:
        lines.append(f"link: {ui_url.rstrip('/')}/asset-groups")
    return f"[aps-etl] daily load overdue ({day})", "\n".join(lines) + "\n"


def build_overdue_alert_sensor() -> dg.SensorDefinition:
    """Alerts when a freshness evaluation run finds a daily load overdue."""

    @dg.run_status_sensor(
        run_status=dg.DagsterRunStatus.SUCCESS,
        name=ALERT_SENSOR_NAME,
        description="Sends each overdue daily load (a failed freshness check) to Slack and/or "
        "email, like a failed run.",
        default_status=dg.DefaultSensorStatus.RUNNING,
    )
    def overdue_alerts(context: dg.RunStatusSensorContext, alert_settings: AlertSettings):
        run = context.dagster_run
        if run.tags.get(FRESHNESS_TAG) != "true":
            return dg.SkipReason(f"run {run.run_id} is not a freshness evaluation")
        items = overdue(context.instance, run.run_id)
        if not items:
            return dg.SkipReason("every daily load is fresh")
        # once per overdue day and table: the deadline schedule and Dagster's sensor may
        # both find the same day late
        day = expected_day(items)
        storage = context.instance.run_storage
        key = _alerted_key(day)
        alerted = set(filter(None, (storage.get_cursor_values({key}).get(key) or "").split(",")))
        new = [item for item in items if item["asset"] not in alerted]
        if not new:
            return dg.SkipReason(f"overdue tables of {day} already alerted")
        subject, body = overdue_message(new, alert_settings.ui_url)
        context.log.warning(body)
        sent, failed = deliver(alert_settings, subject, body, log=context.log)
        if failed:
            raise AlertDeliveryError(f"overdue alert: {'; '.join(failed)}")
        storage.set_cursor_values({key: ",".join(sorted(alerted | {i["asset"] for i in new}))})
        return dg.SkipReason(f"overdue alert sent by {', '.join(sent) or 'no channel'}")

    return overdue_alerts
