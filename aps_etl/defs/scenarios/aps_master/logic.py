"""The master-data dimensions of a business day: the day's snapshot of each master table,
its declared columns in declared order, `valid_from` = D. Plain Polars; what changed since
the previous day is the load's business (the merge, lib/warehouse/merge.py), not this."""

from __future__ import annotations

from datetime import date

import polars as pl

from aps_etl.lib.output_tables import OutputTable

from .schema import APS_DIM_EQUIPMENT, APS_DIM_PRODUCT, APS_DIM_ROUTE_STEP

Frame = pl.LazyFrame | pl.DataFrame


def _snapshot(frame: Frame, table: OutputTable, day: date) -> pl.LazyFrame:
    return (
        frame.lazy()
        .with_columns(pl.lit(day, dtype=pl.Date).alias(table.partition_column))
        .select(pl.col(c.name).cast(c.dtype) for c in table.columns)
        .sort(list(table.grain))
    )


def aps_dim_product(product: Frame, day: date) -> pl.LazyFrame:
    """Every product of the source's master data as of the day's run."""
    return _snapshot(product, APS_DIM_PRODUCT, day)


def aps_dim_route_step(route_step: Frame, day: date) -> pl.LazyFrame:
    """Every step of every route as of the day's run."""
    return _snapshot(route_step, APS_DIM_ROUTE_STEP, day)


def aps_dim_equipment(equipment: Frame, day: date) -> pl.LazyFrame:
    """Every tool, active or not, as of the day's run."""
    return _snapshot(equipment, APS_DIM_EQUIPMENT, day)
