"""Scenario 4's output tables (contract: aps_outputs.md, "Scenario 4: EVEN / parallel
balance"), declared once for the logic's dtypes, the validation rules and the target DDL.

Column order: base_date, equipment_id (the grain), then the contract's columns in contract
order. Nullable exactly where the contract yields null: load_ratio (capacity_qty 0),
group_mean_ratio and deviation (no non-null ratio in the group / load_ratio null), the shares
(group total 0) and share_correction (either share null).
"""

from __future__ import annotations

import polars as pl

from aps_etl.lib.output_tables import Column, OutputTable, RowRule

HOURS_PER_DAY = 24

BASE_DATE = Column("base_date", pl.Date())
EQUIPMENT_ID = Column("equipment_id", pl.String())
EQP_GROUP_ID = Column("eqp_group_id", pl.String())


def _share(name: str) -> Column:
    return Column(name, pl.Float64(), nullable=True, min=0, max=1)


APS_BALANCE_MONITOR = OutputTable(
    name="aps_balance_monitor",
    description="Load of each tool against its group (공정 밸런스 모니터링).",
    # the planners' words (docs/metrics.md; definitions/test_definitions.py keeps both equal)
    docs={
        "eqp_group_id": "the group",
        "out_qty": (
            "good pieces of the passes tracked out on the tool during D, **rework included**, all"
            " lots; 0 if none (pieces)"
        ),
        "available_h": (
            "24 − hours of **DOWN and PM** during D (overlap; open intervals to the end of D). "
            "IDLE and RUN are available time (hours)"
        ),
        "capacity_qty": (
            "capacity_per_hour × available_h: what the tool could have made in its available time"
            " (a decimal number) (pieces)"
        ),
        "load_ratio": (
            "out_qty / capacity_qty: how much of its capacity the tool used; may exceed 1 if the "
            "nominal capacity is conservative; **null when capacity_qty is 0** (tool down all "
            "day, or capacity 0) (ratio)"
        ),
        "group_mean_ratio": "mean of the group's non-null load_ratio; null if all are null (ratio)",
        "deviation": (
            "load_ratio − group_mean_ratio, in ratio points (0.25 = 25 points above the group); "
            "null when load_ratio is null (ratio)"
        ),
        "threshold": "the configured threshold (default 0.20) (ratio)",
        "flagged": (
            "abs(deviation) > threshold, strictly: flags tools both over and under the group's "
            "mean; false when load_ratio is null (true/false)"
        ),
    },
    grain=("base_date", "equipment_id"),
    columns=(
        BASE_DATE,
        EQUIPMENT_ID,
        EQP_GROUP_ID,
        Column("out_qty", pl.Int64(), min=0),
        Column("available_h", pl.Float64(), min=0, max=HOURS_PER_DAY),
        Column("capacity_qty", pl.Float64(), min=0),
        Column("load_ratio", pl.Float64(), nullable=True, min=0),
        Column("group_mean_ratio", pl.Float64(), nullable=True, min=0),
        Column("deviation", pl.Float64(), nullable=True),
        Column("threshold", pl.Float64(), min=0),
        Column("flagged", pl.Boolean()),
    ),
    rules=(
        # the flag follows from its operands; false when deviation is null
        RowRule(
            "flagged=abs(deviation)>threshold",
            ("flagged", "deviation", "threshold"),
            pl.col("flagged") == (pl.col("deviation").abs() > pl.col("threshold")).fill_null(False),
        ),
    ),
)

APS_INPUT_BALANCE_CORRECTION = OutputTable(
    name="aps_input_balance_correction",
    description="Share correction for the APS engine (APS 보정 입력).",
    # the planners' words (docs/metrics.md; definitions/test_definitions.py keeps both equal)
    docs={
        "eqp_group_id": "the group",
        "capacity_share": (
            "capacity_qty / the group's total capacity_qty: the tool's fair share; null when the "
            "group's capacity is 0 (ratio 0–1)"
        ),
        "actual_share": (
            "out_qty / the group's total out_qty: the share it actually got; null when the group "
            "produced nothing (ratio 0–1)"
        ),
        "share_correction": (
            "capacity_share − actual_share: **positive = the tool got less than its fair share** "
            "(load it more), negative = it got more; null when either share is null (ratio −1…1)"
        ),
    },
    grain=("base_date", "equipment_id"),
    columns=(
        BASE_DATE,
        EQUIPMENT_ID,
        EQP_GROUP_ID,
        _share("capacity_share"),
        _share("actual_share"),
        # the difference of two shares in [0, 1]
        Column("share_correction", pl.Float64(), nullable=True, min=-1, max=1),
    ),
)

TABLES: dict[str, OutputTable] = {
    t.name: t for t in (APS_BALANCE_MONITOR, APS_INPUT_BALANCE_CORRECTION)
}
