"""Scenario 1's output tables (contract: aps_outputs.md), declared once for the logic's
dtypes, the validation rules and the target DDL."""

from __future__ import annotations

import polars as pl

from aps_etl.lib.output_tables import Column, OutputTable, RowRule, le_rule


def _key(name: str) -> Column:
    return Column(name, pl.String())


BASE_DATE = Column("base_date", pl.Date())

APS_INPUT_WIP = OutputTable(
    name="aps_input_wip",
    description="WIP per product and step at the end of the business day (WAIT and RUN lots).",
    # the planners' words (docs/metrics.md; definitions/test_definitions.py keeps both equal)
    docs={
        "base_date": "the day and the lots' current product and step",
        "product_id": "the day and the lots' current product and step",
        "step_id": "the day and the lots' current product and step",
        "process_id": "the process of that step (from the product's route)",
        "wip_lots": "number of lots in WAIT or RUN at that step (≥ 1: no row without a lot) (lots)",
        "wip_qty": "their pieces (each lot's quantity at the end of D) (pieces)",
        "run_lots": "of those, the lots being processed (RUN) (lots)",
        "run_qty": "their pieces (pieces)",
    },
    grain=("base_date", "product_id", "step_id"),
    columns=(
        BASE_DATE,
        _key("product_id"),
        _key("step_id"),
        Column("process_id", pl.String()),
        # a row exists only because at least one lot is there
        Column("wip_lots", pl.Int64(), min=1),
        Column("wip_qty", pl.Int64(), min=0),
        Column("run_lots", pl.Int64(), min=0),
        Column("run_qty", pl.Int64(), min=0),
    ),
    rules=(le_rule("run_lots", "wip_lots"), le_rule("run_qty", "wip_qty")),
)

APS_INPUT_CYCLE_TIME = OutputTable(
    name="aps_input_cycle_time",
    description="Cycle time per product and step from the day's first passes of normal lots.",
    # the planners' words (docs/metrics.md; definitions/test_definitions.py keeps both equal)
    docs={
        "process_id": "the process recorded on the passes",
        "passes": "number of passes counted (≥ 1) (passes)",
        "in_qty": "pieces that entered those passes (pieces)",
        "out_qty": "good pieces that left them (pieces)",
        "scrap_qty": "pieces scrapped in them; `in_qty = out_qty + scrap_qty` (pieces)",
        "ct_avg_min": (
            "mean of (track-out − track-in) over the passes: time on the tool, queue time "
            "excluded (minutes)"
        ),
        "ct_p50_min": (
            "median and 90th percentile of the same durations (interpolated, §1) (minutes)"
        ),
        "ct_p90_min": (
            "median and 90th percentile of the same durations (interpolated, §1) (minutes)"
        ),
        "std_cycle_min": "the step's standard cycle time from the route (minutes)",
        "ct_ratio": (
            "ct_avg_min / std_cycle_min: 1 = on standard, 1.2 = 20 % slower, 0.9 = 10 % faster "
            "(ratio)"
        ),
    },
    grain=("base_date", "product_id", "step_id"),
    columns=(
        BASE_DATE,
        _key("product_id"),
        _key("step_id"),
        Column("process_id", pl.String()),
        Column("passes", pl.Int64(), min=1),
        Column("in_qty", pl.Int64(), min=0),
        Column("out_qty", pl.Int64(), min=0),
        Column("scrap_qty", pl.Int64(), min=0),
        Column("ct_avg_min", pl.Float64(), min=0),
        Column("ct_p50_min", pl.Float64(), min=0),
        Column("ct_p90_min", pl.Float64(), min=0),
        Column("std_cycle_min", pl.Float64(), min=0, min_exclusive=True),
        Column("ct_ratio", pl.Float64(), min=0),
    ),
    rules=(
        le_rule("ct_p50_min", "ct_p90_min"),
        # the source guarantees in_qty = out_qty + scrap_qty per row, so the sums keep it
        RowRule(
            "in_qty=out_qty+scrap_qty",
            ("in_qty", "out_qty", "scrap_qty"),
            pl.col("in_qty") == pl.col("out_qty") + pl.col("scrap_qty"),
        ),
    ),
)

APS_INPUT_LEAD_TIME = OutputTable(
    name="aps_input_lead_time",
    description="Lead time (create to complete) per product of the lots completed that day.",
    # the planners' words (docs/metrics.md; definitions/test_definitions.py keeps both equal)
    docs={
        "completed_lots": "lots completed on D (≥ 1) (lots)",
        "completed_qty": "their pieces at completion (the quantity on the COMPLETE event) (pieces)",
        "lt_avg_h": (
            "mean of (COMPLETE time − CREATE time): calendar time from lot start to finish, "
            "including queue, hold (on earlier days) and rework time (hours)"
        ),
        "lt_p50_h": "median and 90th percentile of the same (interpolated) (hours)",
        "lt_p90_h": "median and 90th percentile of the same (interpolated) (hours)",
    },
    grain=("base_date", "product_id"),
    columns=(
        BASE_DATE,
        _key("product_id"),
        Column("completed_lots", pl.Int64(), min=1),
        Column("completed_qty", pl.Int64(), min=0),
        # not nullable: logic leaves these null when a completed lot has no CREATE event, so
        # such a partition fails validation instead of loading a lead time of a subset
        Column("lt_avg_h", pl.Float64(), min=0),
        Column("lt_p50_h", pl.Float64(), min=0),
        Column("lt_p90_h", pl.Float64(), min=0),
    ),
    rules=(le_rule("lt_p50_h", "lt_p90_h"),),
)

TABLES: dict[str, OutputTable] = {
    t.name: t for t in (APS_INPUT_WIP, APS_INPUT_CYCLE_TIME, APS_INPUT_LEAD_TIME)
}


# Every output of the scenario, in load order. Each is computed by the logic.py function of
# the same name, from the extracts its parameters name (assets.py).
OUTPUTS = (APS_INPUT_WIP, APS_INPUT_CYCLE_TIME, APS_INPUT_LEAD_TIME)
