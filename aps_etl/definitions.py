"""The Dagster code location: one place that wires assets, jobs, schedules and resources."""

import dagster as dg

from aps_etl.domains.aps_input.assets import assets as aps_input_assets
from aps_etl.ops.jobs import aps_input_daily, aps_input_daily_schedule
from aps_etl.settings import resources_for

defs = dg.Definitions(
    assets=[*aps_input_assets],
    jobs=[aps_input_daily],
    schedules=[aps_input_daily_schedule],
    resources=resources_for(),
)
