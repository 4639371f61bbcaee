"""Scenario 2's output tables (contract: aps_outputs.md, "Scenario 2: plan snapshots"),
declared once for the logic's dtypes, the validation rules and the target DDL.

The partition column is `run_id` (one partition per COMPLETED plan run). Column order:

- `aps_plan_production`: run_id, base_date, then the other columns of `plan_production` in
  source order (plan_date, product_id, step_id, process_id, planned_qty).
- `aps_plan_equipment`: run_id, base_date, then the other columns of `plan_equipment` in
  source order (plan_date, equipment_id, planned_qty, planned_load_min).
- `aps_plan_diff`: run_id, the rest of the grain (plan_date, product_id, step_id), then the
  contract's columns in contract order (prev_run_id, change_type, prev_qty, new_qty).

The PRD asks the plan transform for minimal consistency only: types, nulls and ranges
(planned_qty >= 0, planned_load_min in [0, 1440], change_type one of three values).
"""

from __future__ import annotations

import polars as pl

from aps_etl.lib.output_tables import Column, OutputTable, RowRule

PARTITION = "run_id"
CHANGE_TYPES = ("ADDED", "REMOVED", "CHANGED")
MINUTES_PER_DAY = 1440


def _key(name: str, dtype: pl.DataType | None = None) -> Column:
    return Column(name, dtype or pl.String())


RUN_ID = _key("run_id")
BASE_DATE = Column("base_date", pl.Date())
PLAN_DATE = _key("plan_date", pl.Date())

APS_PLAN_PRODUCTION = OutputTable(
    name="aps_plan_production",
    description="Planned quantity per product and step.",
    # the planners' words (docs/metrics.md; definitions/test_definitions.py keeps both equal)
    docs={
        "run_id": "the plan run",
        "base_date": "the run's base date (first planned day) (date)",
        "plan_date": "the day the quantity is planned for (date)",
        "product_id": "what is planned, where",
        "step_id": "what is planned, where",
        "process_id": "what is planned, where",
        "planned_qty": "pieces planned for that step on that day (pieces)",
    },
    grain=("run_id", "plan_date", "product_id", "step_id"),
    columns=(
        RUN_ID,
        BASE_DATE,
        PLAN_DATE,
        _key("product_id"),
        _key("step_id"),
        Column("process_id", pl.String()),
        Column("planned_qty", pl.Int64(), min=0),
    ),
    partition_column=PARTITION,
)

APS_PLAN_EQUIPMENT = OutputTable(
    name="aps_plan_equipment",
    description="Planned load per equipment.",
    # the planners' words (docs/metrics.md; definitions/test_definitions.py keeps both equal)
    docs={
        "run_id": "as above",
        "base_date": "as above",
        "plan_date": "as above",
        "equipment_id": "the tool",
        "planned_qty": "pieces planned on the tool that day (pieces)",
        "planned_load_min": "minutes of the day the plan loads the tool (0 … 1440) (minutes)",
    },
    grain=("run_id", "plan_date", "equipment_id"),
    columns=(
        RUN_ID,
        BASE_DATE,
        PLAN_DATE,
        _key("equipment_id"),
        Column("planned_qty", pl.Int64(), min=0),
        Column("planned_load_min", pl.Float64(), min=0, max=MINUTES_PER_DAY),
    ),
    partition_column=PARTITION,
)

_change_type = pl.col("change_type")
_prev, _new = pl.col("prev_qty"), pl.col("new_qty")

APS_PLAN_DIFF = OutputTable(
    name="aps_plan_diff",
    description="What changed since the previous plan (계획 변경 비교, Audit).",
    # the planners' words (docs/metrics.md; definitions/test_definitions.py keeps both equal)
    docs={
        "run_id": "this run and the key",
        "plan_date": "this run and the key",
        "product_id": "this run and the key",
        "step_id": "this run and the key",
        "prev_run_id": "the previous run",
        "change_type": (
            "`ADDED`: the key is only in this run; `REMOVED`: only in the previous run; "
            "`CHANGED`: in both, with a different quantity"
        ),
        "prev_qty": "planned_qty in the previous run; null for ADDED (pieces)",
        "new_qty": "planned_qty in this run; null for REMOVED (pieces)",
    },
    grain=("run_id", "plan_date", "product_id", "step_id"),
    columns=(
        RUN_ID,
        PLAN_DATE,
        _key("product_id"),
        _key("step_id"),
        Column("prev_run_id", pl.String()),
        Column("change_type", pl.String()),
        # null where the key is absent from that run (ADDED: prev_qty, REMOVED: new_qty)
        Column("prev_qty", pl.Int64(), nullable=True, min=0),
        Column("new_qty", pl.Int64(), nullable=True, min=0),
    ),
    rules=(
        RowRule(
            "change_type in (ADDED,REMOVED,CHANGED)",
            ("change_type",),
            _change_type.is_in(CHANGE_TYPES),
        ),
        # the quantities present must match the change type; a guard on the diff itself
        RowRule(
            "prev_qty/new_qty match change_type",
            ("change_type", "prev_qty", "new_qty"),
            pl.when(_change_type == "ADDED")
            .then(_prev.is_null() & _new.is_not_null())
            .when(_change_type == "REMOVED")
            .then(_prev.is_not_null() & _new.is_null())
            .when(_change_type == "CHANGED")
            .then((_prev != _new).fill_null(False))
            .otherwise(True),  # an unknown change_type is the rule above's to report
        ),
    ),
    partition_column=PARTITION,
)

TABLES: dict[str, OutputTable] = {
    t.name: t for t in (APS_PLAN_PRODUCTION, APS_PLAN_EQUIPMENT, APS_PLAN_DIFF)
}
