"""Scenario 1, MES results -> APS input: WIP, cycle time and lead time of business day D.

Every function filters by time itself, so it gives the same answer on the day's extract and on
the whole source table. Outputs carry exactly the columns of the declarations in `schema`.
"""

from __future__ import annotations

from datetime import date

import polars as pl

from aps_etl.lib.business_days import business_day_window

from .schema import (
    APS_INPUT_CYCLE_TIME,
    APS_INPUT_LEAD_TIME,
    APS_INPUT_WIP,
    OutputTable,
)

Frame = pl.LazyFrame | pl.DataFrame

_TS = pl.Datetime("us", "UTC")
_US_PER_MIN = 60e6
_US_PER_HOUR = 3600e6


def _window(day: date) -> tuple[pl.Expr, pl.Expr]:
    start, end = business_day_window(day)
    return pl.lit(start, dtype=_TS), pl.lit(end, dtype=_TS)


def _in_window(col: str, day: date) -> pl.Expr:
    start, end = _window(day)
    return (pl.col(col) >= start) & (pl.col(col) < end)


def _elapsed(end: str, start: str, us_per_unit: float) -> pl.Expr:
    # total microseconds are exact integers; one division keeps the float as exact as it can be
    return (pl.col(end) - pl.col(start)).dt.total_microseconds() / us_per_unit


def _exact_mean(end: str, start: str, us_per_unit: float) -> pl.Expr:
    """Mean duration from the integer sum of microseconds: exact and independent of row
    order (a float sum is not: joins and group_by leave rows in no fixed order, so a rerun
    could differ in the last bit)."""
    us = (pl.col(end) - pl.col(start)).dt.total_microseconds()
    return us.sum() / (pl.len() * us_per_unit)


def _lot_event(events: pl.LazyFrame, *, last: bool = True) -> pl.LazyFrame:
    """Each lot's last (or first) row of `events` by the contract's (event_ts, event_id),
    never the input's row order: the lot's latest (earliest) event_ts, then among its rows
    at that instant the highest (lowest) event_id, the table's primary key. Two joins on
    per-lot extremes, not a per-lot sort: at 10M source rows ~1 s and ~0.5 GB instead of
    ~7 s and ~1.4 GB (benchmarks/)."""
    pick = pl.max if last else pl.min
    at_ts = events.join(
        events.group_by("lot_id").agg(pick("event_ts").alias("_ts")), on="lot_id"
    ).filter(pl.col("event_ts") == pl.col("_ts"))
    return (
        at_ts.join(at_ts.group_by("lot_id").agg(pick("event_id").alias("_id")), on="lot_id")
        .filter(pl.col("event_id") == pl.col("_id"))
        .drop("_ts", "_id")
    )


def _finish(lf: pl.LazyFrame, table: OutputTable, day: date) -> pl.LazyFrame:
    """base_date first, declared columns in declared order and dtypes, rows sorted by grain."""
    lf = lf.with_columns(pl.lit(day, dtype=pl.Date).alias(table.partition_column))
    return lf.select(pl.col(c.name).cast(c.dtype) for c in table.columns).sort(list(table.grain))


def _step_master(product: Frame, route_step: Frame, *cols: str) -> pl.LazyFrame:
    """(product_id, step_seq) -> route_step columns, through the product's route."""
    routes = product.lazy().select("product_id", "route_id")
    steps = route_step.lazy().select(
        "route_id", pl.col("step_seq").cast(pl.Int64), *(pl.col(c) for c in cols)
    )
    return routes.join(steps, on="route_id", how="inner").drop("route_id")


def lot_state_at_end_of_day(lot_history: Frame, day: date) -> pl.LazyFrame:
    """Each lot's last event before the end of W(D), by (event_ts, event_id).

    Columns: lot_id, product_id, step_seq, step_id, lot_status, qty, event_ts. A lot with no
    event before the end of W(D) does not exist yet and has no row.
    """
    _, end = _window(day)
    cols = ["product_id", "step_seq", "step_id", "lot_status", "qty", "event_ts"]
    before_end = lot_history.lazy().filter(pl.col("event_ts") < end)
    return (
        _lot_event(before_end.select("lot_id", "event_id", *cols))
        .with_columns(pl.col("step_seq", "qty").cast(pl.Int64))
        .select("lot_id", *cols)
        .sort("lot_id")
    )


def abnormal_lots(lot_history: Frame, day: date) -> pl.LazyFrame:
    """lot_id of lots with a HOLD or SCRAP event in W(D), or in HOLD/SCRAPPED at the end of D."""
    by_event = (
        lot_history.lazy()
        .filter(pl.col("event_type").is_in(["HOLD", "SCRAP"]) & _in_window("event_ts", day))
        .select("lot_id")
    )
    by_state = (
        lot_state_at_end_of_day(lot_history, day)
        .filter(pl.col("lot_status").is_in(["HOLD", "SCRAPPED"]))
        .select("lot_id")
    )
    return pl.concat([by_event, by_state]).unique().sort("lot_id")


def aps_input_wip(lot_history: Frame, product: Frame, route_step: Frame, day: date) -> pl.LazyFrame:
    """Lots in WAIT or RUN at the end of D, per (product_id, step_id) of their current step."""
    is_run = pl.col("lot_status") == "RUN"
    lf = (
        lot_state_at_end_of_day(lot_history, day)
        .filter(pl.col("lot_status").is_in(["WAIT", "RUN"]))
        # left join: a step missing from the route gives a null process_id, which validation
        # rejects, instead of silently dropping the lots
        .join(
            _step_master(product, route_step, "process_id"),
            on=["product_id", "step_seq"],
            how="left",
        )
        # process_id is a group key, not .first(): two process_ids for one step (inconsistent
        # master data) then show as duplicate grain keys that validation rejects
        .group_by("product_id", "step_id", "process_id")
        .agg(
            wip_lots=pl.len(),
            wip_qty=pl.col("qty").sum(),
            run_lots=is_run.sum(),
            run_qty=pl.col("qty").filter(is_run).sum(),
        )
    )
    return _finish(lf, APS_INPUT_WIP, day)


def aps_input_cycle_time(
    process_result: Frame, lot_history: Frame, product: Frame, route_step: Frame, day: date
) -> pl.LazyFrame:
    """Non-rework passes tracked out in W(D) by lots not abnormal for D, per (product, step)."""
    ct = pl.col("ct_min")
    lf = (
        process_result.lazy()
        .filter(_in_window("track_out_ts", day) & ~pl.col("is_rework"))
        .join(abnormal_lots(lot_history, day), on="lot_id", how="anti")
        .with_columns(
            pl.col("step_seq", "in_qty", "out_qty", "scrap_qty").cast(pl.Int64),
            ct_min=_elapsed("track_out_ts", "track_in_ts", _US_PER_MIN),
        )
        # std_cycle_min through the product's route and the row's step_seq; left join so a
        # missing route step yields null (rejected by validation) rather than lost passes
        .join(
            _step_master(product, route_step, "std_cycle_min"),
            on=["product_id", "step_seq"],
            how="left",
        )
        # process_id and std_cycle_min as group keys: should one step_id carry two of either,
        # the grain repeats and validation rejects it instead of a silent pick
        .group_by("product_id", "step_id", "process_id", "std_cycle_min")
        .agg(
            passes=pl.len(),
            in_qty=pl.col("in_qty").sum(),
            out_qty=pl.col("out_qty").sum(),
            scrap_qty=pl.col("scrap_qty").sum(),
            ct_avg_min=_exact_mean("track_out_ts", "track_in_ts", _US_PER_MIN),
            ct_p50_min=ct.quantile(0.5, interpolation="linear"),
            ct_p90_min=ct.quantile(0.9, interpolation="linear"),
        )
        .with_columns(ct_ratio=pl.col("ct_avg_min") / pl.col("std_cycle_min").cast(pl.Float64))
    )
    return _finish(lf, APS_INPUT_CYCLE_TIME, day)


def aps_input_lead_time(lot_history: Frame, day: date) -> pl.LazyFrame:
    """Lots completing in W(D), not abnormal for D: count, qty and CREATE->COMPLETE hours."""
    start, end = _window(day)
    history = lot_history.lazy()
    # COMPLETE is terminal, so a second one is impossible by contract; should one appear, a
    # lot completes once, at its first COMPLETE. Taking the first over all time (not over
    # W(D)) keeps the answer the same on the day's extract, which leaves out lots already
    # terminal before W(D).
    completes = _lot_event(
        history.filter((pl.col("event_type") == "COMPLETE") & (pl.col("event_ts") < end)).select(
            "lot_id", "event_id", "product_id", "event_ts", "qty"
        ),
        last=False,
    ).filter(pl.col("event_ts") >= start)
    # exactly one CREATE per lot by contract; the earliest wins should there be more
    creates = (
        history.filter(pl.col("event_type") == "CREATE")
        .group_by("lot_id")
        .agg(created_ts=pl.col("event_ts").min())
    )
    lt = pl.col("lt_h")
    # A completed lot without a CREATE in the input (a broken extract, never valid source data)
    # still counts in completed_lots/qty, but its product's lead times become null rather than
    # statistics of the other lots; the declared columns are not nullable, so validation stops
    # the partition and names the product.
    known = lt.null_count() == 0
    lf = (
        completes.join(abnormal_lots(lot_history, day), on="lot_id", how="anti")
        .join(creates, on="lot_id", how="left")
        .with_columns(
            lt_h=_elapsed("event_ts", "created_ts", _US_PER_HOUR), qty=pl.col("qty").cast(pl.Int64)
        )
        .group_by("product_id")
        .agg(
            completed_lots=pl.len(),
            completed_qty=pl.col("qty").sum(),
            lt_avg_h=pl.when(known).then(_exact_mean("event_ts", "created_ts", _US_PER_HOUR)),
            lt_p50_h=pl.when(known).then(lt.quantile(0.5, interpolation="linear")),
            lt_p90_h=pl.when(known).then(lt.quantile(0.9, interpolation="linear")),
        )
    )
    return _finish(lf, APS_INPUT_LEAD_TIME, day)
