"""Scenario 4, EVEN / parallel balance of business day D: how evenly the members of each
parallel equipment group carry the load, and the share correction for the APS input.

Population: ACTIVE equipment of groups with at least two active members. Every function
filters by time itself, so it gives the same answer on the day's extract and on the whole
source table. Outputs carry exactly the columns of the declarations in `schema`, in declared
order and dtypes, rows sorted by grain.

Reruns are bit-identical: quantities and interval lengths are summed as integers; the two
float aggregates (a group's mean load_ratio and its total capacity_qty) are computed exactly
with rationals and rounded once, so they do not depend on row order either; everything else
is one float operation per row.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from datetime import date, timedelta
from fractions import Fraction

import polars as pl

from aps_etl.lib.business_days import business_day_window
from aps_etl.lib.output_tables import OutputTable

from .schema import APS_BALANCE_MONITOR, APS_INPUT_BALANCE_CORRECTION

Frame = pl.LazyFrame | pl.DataFrame

DEFAULT_THRESHOLD = 0.20
UNAVAILABLE_STATES = ("DOWN", "PM")
MIN_GROUP_MEMBERS = 2

_TS = pl.Datetime("us", "UTC")
_US_PER_HOUR = 3_600_000_000
_GROUP = "eqp_group_id"


def _window(day: date) -> tuple[pl.Expr, pl.Expr, int]:
    """W(D) as UTC literals and its length in microseconds (always 1440 minutes)."""
    start, end = business_day_window(day)
    length_us = (end - start) // timedelta(microseconds=1)
    return pl.lit(start, dtype=_TS), pl.lit(end, dtype=_TS), length_us


def _finish(lf: pl.LazyFrame, table: OutputTable, day: date | None = None) -> pl.LazyFrame:
    """base_date (when given) first, declared columns in declared order and dtypes, rows
    sorted by grain."""
    if day is not None:
        lf = lf.with_columns(pl.lit(day, dtype=pl.Date).alias(table.partition_column))
    return lf.select(pl.col(c.name).cast(c.dtype) for c in table.columns).sort(list(table.grain))


# Exact float aggregates ----------------------------------------------------------------------


def _exact_sum(values: Iterable[float]) -> Fraction | float:
    """The exact sum of doubles as a rational (every finite double is one). A NaN or infinity
    cannot be a rational: it propagates as a float instead of raising. (PostgreSQL's numeric
    admits 'NaN', which passes `capacity_per_hour >= 0`; a NaN capacity_qty then fails the
    not-null check of validation, pandera counting NaN as null.)"""
    values = list(values)
    if not all(math.isfinite(v) for v in values):
        return sum(values, 0.0)
    return sum(map(Fraction, values), Fraction(0))


def _exact_mean(values: pl.Series) -> float | None:
    """The mean of the values, correctly rounded from the exact sum: independent of row order
    (a float sum is not). None for no values."""
    if values.len() == 0:
        return None
    return float(_exact_sum(values) / values.len())


def _exact_total(values: pl.Series) -> float:
    """The sum of the values, correctly rounded from the exact sum; 0.0 for no values."""
    return float(_exact_sum(values))


def _group_float_agg(
    lf: pl.LazyFrame, keys: list[str], col: str, fn: Callable[[pl.Series], float | None], alias: str
) -> pl.LazyFrame:
    """Per group of `keys`: fn(non-null values of `col`), a Float64 column `alias`."""
    return (
        lf.group_by(keys)
        .agg(pl.col(col).drop_nulls().alias("_values"))
        .with_columns(pl.col("_values").map_elements(fn, return_dtype=pl.Float64).alias(alias))
        .drop("_values")
    )


# Inputs of the monitor -----------------------------------------------------------------------


def balance_population(equipment: Frame) -> pl.LazyFrame:
    """equipment_id, eqp_group_id, capacity_per_hour of the active equipment of groups with at
    least two active members. Inactive members neither count towards the two nor appear."""
    return (
        equipment.lazy()
        .filter(pl.col("active"))
        .select("equipment_id", _GROUP, pl.col("capacity_per_hour").cast(pl.Float64))
        .filter(pl.len().over(_GROUP) >= MIN_GROUP_MEMBERS)
    )


def out_qty_by_equipment(process_result: Frame, day: date) -> pl.LazyFrame:
    """equipment_id, out_qty: sum out_qty of all passes (rework included) tracked out in W(D)."""
    start, end, _ = _window(day)
    return (
        process_result.lazy()
        .filter((pl.col("track_out_ts") >= start) & (pl.col("track_out_ts") < end))
        .group_by("equipment_id")
        .agg(pl.col("out_qty").cast(pl.Int64).sum())
    )


def unavailable_us_by_equipment(equipment_event: Frame, day: date) -> pl.LazyFrame:
    """equipment_id, unavailable_us: microseconds of DOWN and PM intervals clipped to W(D); an
    open interval (end_ts null) runs to the end of W(D).

    Intervals of one equipment never overlap (source contract), so their clipped lengths are
    simply added, as exact integers. Were overlaps ever delivered, they would count twice: the
    available hours come out too low and, once below 0, validation stops the partition.
    """
    start, end, _ = _window(day)
    clipped_start = pl.max_horizontal(pl.col("start_ts"), start)
    clipped_end = pl.min_horizontal(pl.col("end_ts").fill_null(end), end)
    return (
        equipment_event.lazy()
        .filter(pl.col("state").is_in(UNAVAILABLE_STATES))
        .select("equipment_id", (clipped_end - clipped_start).dt.total_microseconds().alias("us"))
        .filter(pl.col("us") > 0)  # no overlap with W(D)
        .group_by("equipment_id")
        .agg(pl.col("us").cast(pl.Int64).sum().alias("unavailable_us"))
    )


# Outputs -------------------------------------------------------------------------------------


def aps_balance_monitor(
    process_result: Frame,
    equipment_event: Frame,
    equipment: Frame,
    day: date,
    threshold: float = DEFAULT_THRESHOLD,
) -> pl.LazyFrame:
    """Per equipment of the population: out_qty, available hours, capacity, load ratio, its
    deviation from the group's mean ratio and the flag abs(deviation) > threshold."""
    number = isinstance(threshold, int | float) and not isinstance(threshold, bool)
    if not (number and math.isfinite(threshold) and threshold >= 0):
        raise ValueError(f"balance threshold must be a finite number >= 0, got {threshold!r}")
    _, _, day_us = _window(day)
    capacity = pl.col("capacity_qty")
    lf = (
        balance_population(equipment)
        .join(out_qty_by_equipment(process_result, day), on="equipment_id", how="left")
        .join(unavailable_us_by_equipment(equipment_event, day), on="equipment_id", how="left")
        .with_columns(
            pl.col("out_qty").fill_null(0),  # no pass tracked out in W(D)
            # 24 - unavailable hours, as one division of exact integers: (day_us - us) / us_per_h
            # is the correctly rounded value of the exact difference
            available_h=(day_us - pl.col("unavailable_us").fill_null(0)) / _US_PER_HOUR,
        )
        .with_columns(capacity_qty=pl.col("capacity_per_hour") * pl.col("available_h"))
        .with_columns(
            load_ratio=pl.when(capacity != 0).then(pl.col("out_qty") / capacity),
        )
    )
    # group_mean_ratio: the mean of the group's non-null load_ratio. Contract-silent choice:
    # when every ratio of the group is null (all members with capacity 0), the mean is null,
    # and so are the deviations, and nobody is flagged.
    means = _group_float_agg(lf, [_GROUP], "load_ratio", _exact_mean, "group_mean_ratio")
    deviation = pl.col("deviation")
    lf = (
        lf.join(means, on=_GROUP, how="left")
        .with_columns(deviation=pl.col("load_ratio") - pl.col("group_mean_ratio"))
        .with_columns(
            threshold=pl.lit(float(threshold), dtype=pl.Float64),
            # strictly greater: a deviation exactly at the threshold is not flagged; a null
            # deviation (load_ratio null) is not flagged
            flagged=(deviation.abs() > float(threshold)).fill_null(False),
        )
    )
    return _finish(lf, APS_BALANCE_MONITOR, day)


def aps_input_balance_correction(monitor: Frame) -> pl.LazyFrame:
    """From aps_balance_monitor rows: each member's share of its group's capacity_qty and of
    its group's out_qty, and share_correction = capacity_share - actual_share.

    Groups are (base_date, eqp_group_id), so a frame of several days is handled day by day.
    A share is null when its group total is 0; share_correction is null when either is.
    """
    keys = ["base_date", _GROUP]
    lf = monitor.lazy().select(
        "base_date", "equipment_id", _GROUP, pl.col("out_qty").cast(pl.Int64), "capacity_qty"
    )
    # the group's capacity total, exact and rounded once (independent of row order)
    cap_total = _group_float_agg(lf, keys, "capacity_qty", _exact_total, "_cap_total")
    out_total = lf.group_by(keys).agg(pl.col("out_qty").sum().alias("_out_total"))  # integers
    lf = (
        lf.join(cap_total, on=keys, how="left")
        .join(out_total, on=keys, how="left")
        .with_columns(
            capacity_share=pl.when(pl.col("_cap_total") != 0).then(
                pl.col("capacity_qty") / pl.col("_cap_total")
            ),
            actual_share=pl.when(pl.col("_out_total") != 0).then(
                pl.col("out_qty") / pl.col("_out_total")
            ),
        )
        .with_columns(share_correction=pl.col("capacity_share") - pl.col("actual_share"))
    )
    return _finish(lf, APS_INPUT_BALANCE_CORRECTION)
