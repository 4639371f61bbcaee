"""Scenario 2: plan snapshots of each COMPLETED APS run and the diff against the previous run."""

from .logic import (
    aps_plan_diff,
    aps_plan_equipment,
    aps_plan_production,
    compared_plan_dates,
    completed_run_base_date,
    diff_summary,
    previous_run,
)
from .schema import (
    APS_PLAN_DIFF,
    APS_PLAN_EQUIPMENT,
    APS_PLAN_PRODUCTION,
    CHANGE_TYPES,
    TABLES,
)

__all__ = [
    "APS_PLAN_DIFF",
    "APS_PLAN_EQUIPMENT",
    "APS_PLAN_PRODUCTION",
    "CHANGE_TYPES",
    "TABLES",
    "aps_plan_diff",
    "aps_plan_equipment",
    "aps_plan_production",
    "compared_plan_dates",
    "completed_run_base_date",
    "diff_summary",
    "previous_run",
]
