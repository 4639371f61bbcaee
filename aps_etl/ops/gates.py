"""Validation gates and the loads behind them: a run loads nothing unless every one of its
outputs validated."""

from aps_etl.domains.aps_balance.assets import JOB as BALANCE_JOB
from aps_etl.domains.aps_balance.assets import OUTPUTS as BALANCE
from aps_etl.domains.aps_input.assets import JOB as APS_INPUT_JOB
from aps_etl.domains.aps_input.assets import OUTPUTS as APS_INPUT
from aps_etl.domains.aps_kpi.assets import JOB as KPI_JOB
from aps_etl.domains.aps_kpi.assets import OUTPUTS as KPI
from aps_etl.domains.aps_plan.assets import JOB as PLAN_JOB
from aps_etl.domains.aps_plan.assets import OUTPUTS as PLAN
from aps_etl.partitions import DAILY, PLAN_RUNS
from aps_etl.transforms import transform_key
from aps_etl.validation import build_gate_asset
from aps_etl.warehouse.assets import build_load_assets

DAILY_OUTPUTS = [
    (job, table)
    for job, tables in ((APS_INPUT_JOB, APS_INPUT), (KPI_JOB, KPI), (BALANCE_JOB, BALANCE))
    for table in tables
]
PLAN_OUTPUTS = [(PLAN_JOB, table) for table in PLAN]

daily_gate = build_gate_asset(
    "aps_daily", [transform_key(job, table.name) for job, table in DAILY_OUTPUTS], DAILY
)
plan_gate = build_gate_asset(
    "aps_plan_snapshot", [transform_key(job, table.name) for job, table in PLAN_OUTPUTS], PLAN_RUNS
)
gates = [daily_gate, plan_gate]

# One step per run loads all of its tables side by side (see build_load_assets).
loads = [
    build_load_assets("aps_daily", DAILY_OUTPUTS, DAILY),
    build_load_assets("aps_plan_snapshot", PLAN_OUTPUTS, PLAN_RUNS),
]
