"""The master-data dimensions (PRD §3.4 Upsert): products, route steps and equipment as the
source has them now, merged by key into PostgreSQL every business day."""

from .logic import aps_dim_equipment, aps_dim_product, aps_dim_route_step
from .schema import APS_DIM_EQUIPMENT, APS_DIM_PRODUCT, APS_DIM_ROUTE_STEP, OUTPUTS, TABLES

__all__ = [
    "APS_DIM_EQUIPMENT",
    "APS_DIM_PRODUCT",
    "APS_DIM_ROUTE_STEP",
    "OUTPUTS",
    "TABLES",
    "aps_dim_equipment",
    "aps_dim_product",
    "aps_dim_route_step",
]
