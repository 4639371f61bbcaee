"""The master-data dimensions' tables: the source's current products, route steps and
equipment, merged by key into PostgreSQL every business day (load_mode "merge",
lib/warehouse/merge.py), declared once for the logic's dtypes, the validation rules and the
target DDL. `valid_from` is the partition column: the business day whose run first saw the
row as it is now."""

from __future__ import annotations

import polars as pl

from aps_etl.lib.output_tables import Column, OutputTable

VALID_FROM = Column("valid_from", pl.Date())
VALID_FROM_DOC = (
    "the business day whose daily run first saw this row as it is now (in the history: "
    "the first day of this version)"
)

APS_DIM_PRODUCT = OutputTable(
    name="aps_dim_product",
    description="The products as the source has them now, upserted by product every day.",
    docs={
        "valid_from": VALID_FROM_DOC,
        "product_id": "product",
        "product_name": "its name in the MES",
        "route_id": "the route its lots follow",
        "lot_size": "pieces a new lot starts with (pieces)",
    },
    grain=("valid_from", "product_id"),
    columns=(
        VALID_FROM,
        Column("product_id", pl.String()),
        Column("product_name", pl.String()),
        Column("route_id", pl.String()),
        Column("lot_size", pl.Int32(), min=1),
    ),
    partition_column="valid_from",
    load_mode="merge",
    merge_key=("product_id",),
    delete_missing=True,
)

APS_DIM_ROUTE_STEP = OutputTable(
    name="aps_dim_route_step",
    description="The routes' ordered steps as the source has them now, with every earlier "
    "version in aps_dim_route_step_history.",
    docs={
        "valid_from": VALID_FROM_DOC,
        "route_id": "the route",
        "step_seq": "the step's place in the route (1 = first)",
        "step_id": "step of the route",
        "process_id": "the kind of operation of the step",
        "eqp_group_id": "the equipment group that serves the step",
        "std_cycle_min": "the step's standard cycle time (minutes)",
    },
    grain=("valid_from", "route_id", "step_seq"),
    columns=(
        VALID_FROM,
        Column("route_id", pl.String()),
        Column("step_seq", pl.Int32(), min=1),
        Column("step_id", pl.String()),
        Column("process_id", pl.String()),
        Column("eqp_group_id", pl.String()),
        Column("std_cycle_min", pl.Float64(), min=0, min_exclusive=True),
    ),
    partition_column="valid_from",
    load_mode="merge",
    merge_key=("route_id", "step_seq"),
    delete_missing=True,
    history=True,
)

APS_DIM_EQUIPMENT = OutputTable(
    name="aps_dim_equipment",
    description="The equipment as the source has it now, upserted by tool every day.",
    docs={
        "valid_from": VALID_FROM_DOC,
        "equipment_id": "equipment (one tool)",
        "eqp_group_id": "equipment group: the tools that can do the same work",
        "process_id": "the kind of operation the tool does",
        "capacity_per_hour": "pieces the tool can process in an hour (pieces/h)",
        "active": "whether the tool is in use (false: kept in the MES, not planned on)",
    },
    grain=("valid_from", "equipment_id"),
    columns=(
        VALID_FROM,
        Column("equipment_id", pl.String()),
        Column("eqp_group_id", pl.String()),
        Column("process_id", pl.String()),
        Column("capacity_per_hour", pl.Float64(), min=0),
        Column("active", pl.Boolean()),
    ),
    partition_column="valid_from",
    load_mode="merge",
    merge_key=("equipment_id",),
    delete_missing=True,
)

OUTPUTS = (APS_DIM_PRODUCT, APS_DIM_ROUTE_STEP, APS_DIM_EQUIPMENT)
TABLES = {t.name: t for t in OUTPUTS}
