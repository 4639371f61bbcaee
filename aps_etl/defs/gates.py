"""Validation gates and the loads behind them: a run loads nothing unless every one of its
outputs validated. One gate and one load step per run, over the scenarios registered for
it (aps_etl/defs/registry.py)."""

from aps_etl.defs.load import build_load_assets
from aps_etl.defs.registry import DAILY_RUN, PLAN_RUN, outputs_of_run
from aps_etl.defs.transforms import transform_key
from aps_etl.defs.validation import build_gate_asset
from aps_etl.lib.partitions import DAILY, PLAN_RUNS

RUN_PARTITIONS = {DAILY_RUN: DAILY, PLAN_RUN: PLAN_RUNS}

gates = [
    build_gate_asset(
        run,
        [transform_key(ns, table.name) for ns, table in outputs_of_run(run)],
        partitions,
    )
    for run, partitions in RUN_PARTITIONS.items()
]

# One step per run loads all of its tables side by side (see build_load_assets).
loads = [
    build_load_assets(run, outputs_of_run(run), partitions)
    for run, partitions in RUN_PARTITIONS.items()
]

# The daily loads: what the freshness checks watch (defs/freshness.py).
daily_loads = [loads[list(RUN_PARTITIONS).index(DAILY_RUN)]]
