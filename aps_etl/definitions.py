"""The Dagster code location: one place that wires assets, jobs, schedules and resources."""

from typing import Any

import dagster as dg

from aps_etl.domains.aps_input.assets import assets as aps_input_assets
from aps_etl.ops.jobs import aps_input_daily, aps_input_daily_schedule
from aps_etl.settings import resources_for


def build_defs(resources: dict[str, Any] | None = None) -> dg.Definitions:
    """All definitions, with the resources of $APS_ENV unless others are given."""
    return dg.Definitions(
        assets=[*aps_input_assets],
        jobs=[aps_input_daily],
        schedules=[aps_input_daily_schedule],
        resources=resources if resources is not None else resources_for(),
    )


defs = build_defs()
