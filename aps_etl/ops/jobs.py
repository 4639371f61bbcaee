"""Jobs and schedules."""

import dagster as dg

# Scenario 1 end to end for one business day: extract -> transform -> load.
aps_input_daily = dg.define_asset_job(
    name="aps_input_daily",
    selection=dg.AssetSelection.key_prefixes(
        ["extract", "aps_input"], ["transform", "aps_input"], ["load", "aps_input"]
    ),
    description="Scenario 1 for one business day: MES results to APS input tables.",
)

# Runs at 02:00 Asia/Seoul for the day that just ended (D-1): the last complete partition.
aps_input_daily_schedule = dg.build_schedule_from_partitioned_job(
    aps_input_daily, hour_of_day=2, minute_of_hour=0
)
