"""Scenario 3's output tables, plan vs actual (contract: aps_outputs.md), declared once for the
logic's dtypes, the validation rules and the target DDL."""

from __future__ import annotations

import polars as pl

from aps_etl.lib.output_tables import Column, OutputTable, RowRule


def _key(name: str) -> Column:
    return Column(name, pl.String())


BASE_DATE = Column("base_date", pl.Date())
# null exactly when no plan is in force for D
PLAN_RUN_ID = Column("plan_run_id", pl.String(), nullable=True)


def _util(name: str, nullable: bool = False) -> Column:
    return Column(name, pl.Float64(), nullable=nullable, min=0, max=1)


def _one_plan_per_day() -> RowRule:
    # one partition is compared against one plan: every row names the same run (or none)
    return RowRule(
        "plan_run_id_constant",
        ("plan_run_id",),
        pl.col("plan_run_id").eq_missing(pl.col("plan_run_id").first()),
    )


def _null_without_plan(planned: str) -> RowRule:
    # "when there is no plan in force, plan_run_id and every planned value are null", and a
    # plan in force gives every row a planned value (0 for a missing side)
    return RowRule(
        f"{planned}_null_iff_no_plan",
        ("plan_run_id", planned),
        pl.col("plan_run_id").is_null() == pl.col(planned).is_null(),
    )


APS_KPI_PLAN_VS_ACTUAL = OutputTable(
    name="aps_kpi_plan_vs_actual",
    description="Planned vs produced per product and step (계획 대비 실적 편차).",
    # the planners' words (docs/metrics.md; definitions/test_definitions.py keeps both equal)
    docs={
        "plan_run_id": "the plan in force (null if none)",
        "planned_qty": (
            "planned for D; 0 if the plan in force does not plan this key on D; null if no plan "
            "is in force (pieces)"
        ),
        "actual_qty": "produced on D; 0 if nothing was produced (pieces)",
        "deviation_qty": (
            "actual_qty − planned_qty: negative = behind plan, positive = ahead; null without a "
            "plan (pieces)"
        ),
        "attainment": (
            "actual_qty / planned_qty: 1.0 = on plan, 0.8 = 80 %, may exceed 1; null when "
            "planned_qty is 0 or null (ratio)"
        ),
    },
    grain=("base_date", "product_id", "step_id"),
    columns=(
        BASE_DATE,
        _key("product_id"),
        _key("step_id"),
        PLAN_RUN_ID,
        Column("planned_qty", pl.Int64(), nullable=True, min=0),
        Column("actual_qty", pl.Int64(), min=0),
        Column("deviation_qty", pl.Int64(), nullable=True),
        Column("attainment", pl.Float64(), nullable=True, min=0),
    ),
    rules=(
        _one_plan_per_day(),
        _null_without_plan("planned_qty"),
        RowRule(
            "deviation_qty=actual_qty-planned_qty",
            ("deviation_qty", "actual_qty", "planned_qty"),
            pl.col("deviation_qty") == pl.col("actual_qty") - pl.col("planned_qty"),
        ),
        # also requires attainment to be null when planned_qty is 0 or null
        RowRule(
            "attainment=actual_qty/planned_qty",
            ("attainment", "actual_qty", "planned_qty"),
            pl.when(pl.col("planned_qty") > 0)
            .then(pl.col("attainment") == pl.col("actual_qty") / pl.col("planned_qty"))
            .otherwise(pl.col("attainment").is_null()),
        ),
    ),
)

APS_KPI_EQUIPMENT_UTIL = OutputTable(
    name="aps_kpi_equipment_util",
    description="Planned vs actual utilisation per tool (설비 가동률 차이).",
    # the planners' words (docs/metrics.md; definitions/test_definitions.py keeps both equal)
    docs={
        "plan_run_id": "the plan in force (null if none)",
        "eqp_group_id": "the tool's group",
        "planned_util": (
            "planned_load_min / 1440 for D in the plan in force; 0 if the plan has no row for the"
            " tool on D; null if no plan is in force (ratio 0–1)"
        ),
        "actual_util": (
            "minutes in **RUN** during W(D) / 1440 (interval overlap, open intervals to the end "
            "of D) (ratio 0–1)"
        ),
        "util_gap": (
            "actual_util − planned_util: positive = the tool ran more than planned; null without "
            "a plan (ratio −1…1)"
        ),
    },
    grain=("base_date", "equipment_id"),
    columns=(
        BASE_DATE,
        _key("equipment_id"),
        PLAN_RUN_ID,
        Column("eqp_group_id", pl.String()),
        _util("planned_util", nullable=True),
        _util("actual_util"),
        Column("util_gap", pl.Float64(), nullable=True, min=-1, max=1),
    ),
    rules=(
        _one_plan_per_day(),
        _null_without_plan("planned_util"),
        RowRule(
            "util_gap=actual_util-planned_util",
            ("util_gap", "actual_util", "planned_util"),
            pl.col("util_gap") == pl.col("actual_util") - pl.col("planned_util"),
        ),
    ),
)

APS_KPI_BOTTLENECK = OutputTable(
    name="aps_kpi_bottleneck",
    description="Which equipment group is the bottleneck (공정 병목 구간).",
    # the planners' words (docs/metrics.md; definitions/test_definitions.py keeps both equal)
    docs={
        "process_id": "the process of the group",
        "equipment_count": "active members (tools)",
        "avg_actual_util": (
            "mean actual_util of the active members (each member weighs the same) (ratio 0–1)"
        ),
        "waiting_wip_qty": (
            "pieces of lots in **WAIT** at the end of D at the steps this group serves: the queue"
            " in front of the group; 0 if none (pieces)"
        ),
        "util_rank": (
            "rank by avg_actual_util, highest first; ties: more waiting pieces first; still tied:"
            " group id alphabetical (1, 2, …)"
        ),
        "is_bottleneck": "true for util_rank = 1: exactly one group per day (true/false)",
    },
    grain=("base_date", "eqp_group_id"),
    columns=(
        BASE_DATE,
        _key("eqp_group_id"),
        Column("process_id", pl.String()),
        Column("equipment_count", pl.Int64(), min=1),
        _util("avg_actual_util"),
        Column("waiting_wip_qty", pl.Int64(), min=0),
        Column("util_rank", pl.Int64(), min=1),
        Column("is_bottleneck", pl.Boolean()),
    ),
    rules=(
        # ranks are 1, 2, ..., n: each once, none above the row count
        RowRule(
            "util_rank_is_1..n",
            ("util_rank",),
            pl.col("util_rank").is_unique() & (pl.col("util_rank") <= pl.len()),
        ),
        RowRule(
            "is_bottleneck=(util_rank=1)",
            ("is_bottleneck", "util_rank"),
            pl.col("is_bottleneck") == (pl.col("util_rank") == 1),
        ),
    ),
)

TABLES: dict[str, OutputTable] = {
    t.name: t for t in (APS_KPI_PLAN_VS_ACTUAL, APS_KPI_EQUIPMENT_UTIL, APS_KPI_BOTTLENECK)
}
