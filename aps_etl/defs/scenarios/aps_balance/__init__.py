"""Scenario 4: EVEN / parallel-group balance of a business day and the APS share correction."""

from .logic import (
    DEFAULT_THRESHOLD,
    aps_balance_monitor,
    aps_input_balance_correction,
    balance_population,
    out_qty_by_equipment,
    unavailable_us_by_equipment,
)
from .schema import APS_BALANCE_MONITOR, APS_INPUT_BALANCE_CORRECTION, TABLES

__all__ = [
    "APS_BALANCE_MONITOR",
    "APS_INPUT_BALANCE_CORRECTION",
    "DEFAULT_THRESHOLD",
    "TABLES",
    "aps_balance_monitor",
    "aps_input_balance_correction",
    "balance_population",
    "out_qty_by_equipment",
    "unavailable_us_by_equipment",
]
