"""Scenario 3: plan vs actual KPIs of a business day (plan attainment, equipment utilisation,
bottleneck groups) against the plan in force."""

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
    aps_kpi_bottleneck,
    aps_kpi_equipment_util,
    aps_kpi_plan_vs_actual,
    plan_in_force,
)
from .schema import (
    APS_KPI_BOTTLENECK,
    APS_KPI_EQUIPMENT_UTIL,
    APS_KPI_PLAN_VS_ACTUAL,
    TABLES,
)

__all__ = [
    "APS_KPI_BOTTLENECK",
    "APS_KPI_EQUIPMENT_UTIL",
    "APS_KPI_PLAN_VS_ACTUAL",
    "TABLES",
    "Column",
    "OutputTable",
    "RowRule",
    "ValidationError",
    "ValidationReport",
    "Violation",
    "aps_kpi_bottleneck",
    "aps_kpi_equipment_util",
    "aps_kpi_plan_vs_actual",
    "plan_in_force",
    "validate",
]
