"""Scenario 4 (PRD §10.4) wiring: EVEN / parallel-group balance of a business day."""

import dagster as dg
import polars as pl
from pydantic import Field

from aps_etl.calendar import parse_partition_key
from aps_etl.domains.aps_balance import logic
from aps_etl.domains.aps_balance.schema import APS_BALANCE_MONITOR, APS_INPUT_BALANCE_CORRECTION
from aps_etl.domains.aps_input.assets import JOB as EXTRACT_JOB
from aps_etl.factories import (
    build_load_asset,
    build_transform_asset,
    extract_key,
    transform_key,
    transform_table,
)
from aps_etl.partitions import DAILY
from aps_etl.validation import raise_on_violations

JOB = "aps_balance"
OUTPUTS = (APS_BALANCE_MONITOR, APS_INPUT_BALANCE_CORRECTION)


class BalanceConfig(dg.Config):
    threshold: float = Field(
        default=logic.DEFAULT_THRESHOLD,
        ge=0,
        description="flag equipment whose load ratio deviates from its group's mean by more",
    )


@dg.asset(
    key=transform_key(JOB, APS_BALANCE_MONITOR.name),
    ins={
        name: dg.AssetIn(key=extract_key(EXTRACT_JOB, name))
        for name in ("process_result", "equipment_event", "equipment")
    },
    partitions_def=DAILY,
    metadata={
        **transform_table(APS_BALANCE_MONITOR, JOB).as_metadata(),
        "grain": "base_date, equipment_id",
    },
    description="Load vs capacity per equipment of each parallel group, its deviation from "
    "the group's mean and the flag where it exceeds the threshold.",
    group_name=JOB,
    kinds={"polars", "parquet"},
)
def aps_balance_monitor(
    context: dg.AssetExecutionContext,
    config: BalanceConfig,
    process_result: pl.LazyFrame,
    equipment_event: pl.LazyFrame,
    equipment: pl.LazyFrame,
) -> pl.DataFrame:
    day = parse_partition_key(context.partition_key)
    frame = logic.aps_balance_monitor(
        process_result, equipment_event, equipment, day, threshold=config.threshold
    ).collect()
    raise_on_violations(context, APS_BALANCE_MONITOR, frame)
    context.add_output_metadata(
        {
            "threshold": config.threshold,
            "flagged_equipment": int(frame["flagged"].sum()),
            "groups": frame["eqp_group_id"].n_unique(),
        }
    )
    return frame


balance_correction = build_transform_asset(
    APS_INPUT_BALANCE_CORRECTION,
    JOB,
    logic.aps_input_balance_correction,
    {"monitor": transform_key(JOB, APS_BALANCE_MONITOR.name)},
    DAILY,
    "Each member's share of its group's capacity vs its share of the group's output.",
)

load_assets = [build_load_asset(table, JOB, DAILY, gate="aps_daily") for table in OUTPUTS]

assets = [aps_balance_monitor, balance_correction, *load_assets]
