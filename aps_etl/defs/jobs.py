"""Jobs and schedules."""

import dagster as dg

from aps_etl.defs.registry import DAILY_RUN, PLAN_RUN, of_run, outputs_of_run
from aps_etl.defs.retry_hook import mark_failure_kind
from aps_etl.lib.tags import PLAN_LANE_TAG

# the name Dagster gives a time-partition freshness check
FRESHNESS_CHECK = "freshness_check"

# Runs carrying this tag share a lane of the run queue (dagster.yaml: limit 1).


def _selection(run: str) -> dg.AssetSelection:
    """The assets of every scenario registered for `run`, and the run's validation gate."""
    prefixes = [
        [stage, scenario.namespace]
        for scenario in of_run(run)
        for stage in ("extract", "transform", "load")
    ]
    # The freshness checks of the loads are evaluated by their own sensor
    # (defs/freshness.py), not by every run: a backfill of an old day would
    # otherwise report "yesterday is missing" on its own run.
    selection = dg.AssetSelection.key_prefixes(*prefixes, ["validated", run])
    if run != DAILY_RUN:  # only the daily loads have freshness checks
        return selection
    freshness = [
        dg.AssetCheckKey(dg.AssetKey(["load", namespace, table.name]), FRESHNESS_CHECK)
        for namespace, table in outputs_of_run(run)
    ]
    return selection - dg.AssetSelection.checks(*freshness)


# Every daily scenario for one business day: MES results to APS inputs (§10.1), plan vs
# actual KPIs (§10.3) and parallel-group balance (§10.4), each extracted, validated, loaded.
aps_daily = dg.define_asset_job(
    name=DAILY_RUN,
    selection=_selection(DAILY_RUN),
    description="All daily scenarios for one business day: extract, transform, load.",
    # One process for the run, however it is launched (UI, schedule, sensors, daemon,
    # `aps-etl run`): the steps that wait on I/O already run their tables side by side
    # inside (extracts, loads), and a process per step costs each step Python's start and
    # the project's imports (a demo day: 25 s launched multiprocess, see README).
    executor_def=dg.in_process_executor,
    # a run whose step failures were all the infrastructure's is run again (retry_hook.py)
    hooks={mark_failure_kind},
)

# Runs at 02:00 Asia/Seoul for the day that just ended (D-1): the last complete partition.
# On as soon as it is deployed: a schedule an operator must remember to switch on is one
# that silently does not run after a deployment.
aps_daily_schedule = dg.build_schedule_from_partitioned_job(
    aps_daily,
    hour_of_day=2,
    minute_of_hour=0,
    default_status=dg.DefaultScheduleStatus.RUNNING,
)

# One COMPLETED APS plan run (§10.2): snapshot, checks, load, diff against the previous run.
aps_plan_snapshot = dg.define_asset_job(
    name=PLAN_RUN,
    selection=_selection(PLAN_RUN),
    description="Snapshot one APS plan run (a partition per run_id) and load it.",
    executor_def=dg.in_process_executor,
    # The queue runs plan snapshots one at a time, oldest first: a sensor that finds many
    # plan runs does not start them all at once (each diffs against the run before it).
    tags={PLAN_LANE_TAG: "plan_snapshot"},
    hooks={mark_failure_kind},
)
