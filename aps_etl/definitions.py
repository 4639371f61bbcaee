"""The Dagster code location: one place that wires assets, jobs, schedules, sensors and
resources."""

from typing import Any

import dagster as dg

from aps_etl.defs.alerts import alert_resources_from_env, build_alert_sensor
from aps_etl.defs.attributes import with_attributes
from aps_etl.defs.freshness import (
    build_deadline_schedule,
    build_freshness_checks,
    build_freshness_sensor,
    build_overdue_alert_sensor,
)
from aps_etl.defs.gates import daily_loads, gates, loads
from aps_etl.defs.jobs import aps_daily, aps_daily_schedule, aps_plan_snapshot
from aps_etl.defs.registry import SCENARIOS
from aps_etl.defs.report import build_report_asset, build_report_schedule
from aps_etl.defs.retries import retry_delay_s
from aps_etl.defs.sensors import build_plan_run_sensor
from aps_etl.defs.source_change_sensor import build_source_change_sensor
from aps_etl.env.settings import resources_for


def build_defs(
    resources: dict[str, Any] | None = None, *, automation: bool = True
) -> dg.Definitions:
    """All definitions, with the resources of $APS_ENV unless others are given.
    `automation=False` leaves out the schedules and sensors: the code location that
    `aps-etl backfill --policy` serves to a daemon of its own (aps_etl/cli/backfill_location.py),
    which must run the backfill and nothing else."""
    retry_delay_s()  # a bad APS_RETRY_DELAY_S stops the code location, named, not a retry
    freshness = build_freshness_checks(daily_loads)
    return dg.Definitions(
        # every registered scenario's extracts and transforms, then each run's gate and
        # loads; with owners, scenario and stage tags, and code references
        assets=with_attributes(
            [
                *(a for scenario in SCENARIOS for a in scenario.assets),
                *gates,
                *loads,
                build_report_asset(),
            ],
            {scenario.namespace: scenario.prd for scenario in SCENARIOS},
        ),
        jobs=[aps_daily, aps_plan_snapshot],
        # Ad hoc materializations (the UI's "Materialize", `dagster asset materialize`)
        # run in one process like the jobs: a process per step costs each step Python's
        # start and the project's imports.
        executor=dg.in_process_executor,
        schedules=[aps_daily_schedule, build_report_schedule(), build_deadline_schedule(freshness)]
        if automation
        else [],
        sensors=[
            build_plan_run_sensor(aps_plan_snapshot),
            build_source_change_sensor([aps_daily, aps_plan_snapshot]),
            build_alert_sensor(),
            # is D-1 loaded by the deadline? evaluated by Dagster's sensor, overdue alerted
            build_freshness_sensor(freshness),
            build_overdue_alert_sensor(),
        ]
        if automation
        else [],
        asset_checks=freshness,
        resources={
            # failure alerts: Slack and/or email, each on when its variables are set
            **alert_resources_from_env(),
            **(resources if resources is not None else resources_for()),
        },
    )


defs = build_defs()
