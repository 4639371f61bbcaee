"""Jobs and schedules."""

import dagster as dg

DAILY_PREFIXES = [
    [stage, job]
    for job in ("aps_input", "aps_kpi", "aps_balance")
    for stage in ("extract", "transform", "load")
]

# Every daily scenario for one business day: MES results to APS inputs (§10.1), plan vs
# actual KPIs (§10.3) and parallel-group balance (§10.4), each extracted, validated, loaded.
aps_daily = dg.define_asset_job(
    name="aps_daily",
    selection=dg.AssetSelection.key_prefixes(*DAILY_PREFIXES, ["validated", "aps_daily"]),
    description="All daily scenarios for one business day: extract, transform, load.",
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
    name="aps_plan_snapshot",
    selection=dg.AssetSelection.key_prefixes(
        ["extract", "aps_plan"],
        ["transform", "aps_plan"],
        ["load", "aps_plan"],
        ["validated", "aps_plan_snapshot"],
    ),
    description="Snapshot one APS plan run (a partition per run_id) and load it.",
)
