"""Scenario 1: MES results -> APS input tables (WIP, cycle time, lead time) of a business day."""

from aps_etl.lib.output_tables import (
    Column,
    OutputTable,
    RowRule,
    ValidationError,
    ValidationReport,
    Violation,
    validate,
)

from .logic import (
    abnormal_lots,
    aps_input_cycle_time,
    aps_input_lead_time,
    aps_input_wip,
    lot_state_at_end_of_day,
)
from .schema import (
    APS_INPUT_CYCLE_TIME,
    APS_INPUT_LEAD_TIME,
    APS_INPUT_WIP,
    TABLES,
)

__all__ = [
    "APS_INPUT_CYCLE_TIME",
    "APS_INPUT_LEAD_TIME",
    "APS_INPUT_WIP",
    "TABLES",
    "Column",
    "OutputTable",
    "RowRule",
    "ValidationError",
    "ValidationReport",
    "Violation",
    "abnormal_lots",
    "aps_input_cycle_time",
    "aps_input_lead_time",
    "aps_input_wip",
    "lot_state_at_end_of_day",
    "validate",
]
