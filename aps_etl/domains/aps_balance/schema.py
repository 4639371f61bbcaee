"""Scenario 4's output tables (contract: aps_outputs.md, "Scenario 4: EVEN / parallel
balance"), declared once for the logic's dtypes, the validation rules and the target DDL.

Column order: base_date, equipment_id (the grain), then the contract's columns in contract
order. Nullable exactly where the contract yields null: load_ratio (capacity_qty 0),
group_mean_ratio and deviation (no non-null ratio in the group / load_ratio null), the shares
(group total 0) and share_correction (either share null).
"""

from __future__ import annotations

import polars as pl

from aps_etl.output_tables import Column, OutputTable, RowRule

HOURS_PER_DAY = 24

BASE_DATE = Column("base_date", pl.Date())
EQUIPMENT_ID = Column("equipment_id", pl.String())
EQP_GROUP_ID = Column("eqp_group_id", pl.String())


def _share(name: str) -> Column:
    return Column(name, pl.Float64(), nullable=True, min=0, max=1)


APS_BALANCE_MONITOR = OutputTable(
    name="aps_balance_monitor",
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
