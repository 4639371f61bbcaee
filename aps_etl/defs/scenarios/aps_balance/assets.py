"""Scenario 4 (PRD §10.4) wiring: EVEN / parallel-group balance of a business day."""

import time
from typing import Any

import dagster as dg
import polars as pl
from pydantic import Field

from aps_etl.defs.extract import extract_key
from aps_etl.defs.scenario import DAILY_RUN, Scenario
from aps_etl.defs.scenarios.aps_balance import logic
from aps_etl.defs.scenarios.aps_balance.schema import (
    APS_BALANCE_MONITOR,
    APS_INPUT_BALANCE_CORRECTION,
)
from aps_etl.defs.transforms import (
    build_transform_asset,
    output_metadata,
    transform_key,
)
from aps_etl.defs.validation import check_specs, checked
from aps_etl.lib.business_days import parse_partition_key
from aps_etl.lib.partitions import (
    DAILY,
    add_partition_metadata,
    backfill_policy,
    one_or_many,
    per_partition,
)
from aps_etl.lib.sources.mes import DAILY_NAMESPACE

NAMESPACE = "aps_balance"
OUTPUTS = (APS_BALANCE_MONITOR, APS_INPUT_BALANCE_CORRECTION)


class BalanceConfig(dg.Config):
    threshold: float = Field(
        default=logic.DEFAULT_THRESHOLD,
        ge=0,
        description="flag equipment whose load ratio deviates from its group's mean by more",
    )


MONITOR_KEY = transform_key(NAMESPACE, APS_BALANCE_MONITOR.name)


@dg.asset(
    key=MONITOR_KEY,
    ins={
        name: dg.AssetIn(key=extract_key(DAILY_NAMESPACE, name))
        for name in ("process_result", "equipment_event", "equipment")
    },
    partitions_def=DAILY,
    backfill_policy=backfill_policy(DAILY),
    check_specs=check_specs(APS_BALANCE_MONITOR, MONITOR_KEY, DAILY),
    metadata=output_metadata(APS_BALANCE_MONITOR, NAMESPACE),
    description="Load vs capacity per equipment of each parallel group, its deviation from "
    "the group's mean and the flag where it exceeds the threshold.",
    group_name=NAMESPACE,
    kinds={"polars", "parquet"},
)
def aps_balance_monitor(
    context: dg.AssetExecutionContext,
    config: BalanceConfig,
    process_result: Any,
    equipment_event: Any,
    equipment: Any,
):
    started = time.perf_counter()
    keys = list(context.partition_keys)
    inputs = {
        name: per_partition(value, keys)
        for name, value in (
            ("process_result", process_result),
            ("equipment_event", equipment_event),
            ("equipment", equipment),
        )
    }
    frames: dict[str, pl.DataFrame] = {}
    seconds: dict[str, float] = {}
    for key in keys:
        day_started = time.perf_counter()
        frames[key] = logic.aps_balance_monitor(
            inputs["process_result"][key],
            inputs["equipment_event"][key],
            inputs["equipment"][key],
            parse_partition_key(key),
            threshold=config.threshold,
        ).collect()
        seconds[key] = round(time.perf_counter() - day_started, 3)
    everything = pl.concat(frames.values())
    checks = yield from checked(context, APS_BALANCE_MONITOR, frames, MONITOR_KEY)
    own = {
        key: {"flagged_equipment": int(f["flagged"].sum()), "duration_s": seconds[key]}
        for key, f in frames.items()
    }
    add_partition_metadata(context, MONITOR_KEY, own)
    yield dg.Output(
        one_or_many(frames),
        metadata={
            "threshold": config.threshold,
            "flagged_equipment": int(everything["flagged"].sum()),
            "duration_s": round(time.perf_counter() - started, 3),
        },
    )
    yield from checks


balance_correction = build_transform_asset(
    APS_INPUT_BALANCE_CORRECTION,
    NAMESPACE,
    logic.aps_input_balance_correction,
    {"monitor": transform_key(NAMESPACE, APS_BALANCE_MONITOR.name)},
    DAILY,
    "Each member's share of its group's capacity vs its share of the group's output.",
)


assets = [aps_balance_monitor, balance_correction]

SCENARIO = Scenario(
    prd="10.4",
    title="EVEN / parallel-group balance and its input corrections",
    namespace=NAMESPACE,
    run=DAILY_RUN,
    outputs=OUTPUTS,
    assets=tuple(assets),
)
