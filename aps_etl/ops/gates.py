"""Validation gates: a run loads nothing unless every one of its outputs validated."""

from aps_etl.domains.aps_balance.assets import JOB as BALANCE_JOB
from aps_etl.domains.aps_balance.assets import OUTPUTS as BALANCE
from aps_etl.domains.aps_input.assets import JOB as APS_INPUT_JOB
from aps_etl.domains.aps_input.assets import OUTPUTS as APS_INPUT
from aps_etl.domains.aps_kpi.assets import JOB as KPI_JOB
from aps_etl.domains.aps_kpi.assets import OUTPUTS as KPI
from aps_etl.domains.aps_plan.assets import JOB as PLAN_JOB
from aps_etl.domains.aps_plan.assets import OUTPUTS as PLAN
from aps_etl.factories import build_gate_asset, transform_key
from aps_etl.partitions import DAILY, PLAN_RUNS

daily_gate = build_gate_asset(
    "aps_daily",
    [
        transform_key(job, table.name)
        for job, tables in ((APS_INPUT_JOB, APS_INPUT), (KPI_JOB, KPI), (BALANCE_JOB, BALANCE))
        for table in tables
    ],
    DAILY,
)

plan_gate = build_gate_asset(
    "aps_plan_snapshot", [transform_key(PLAN_JOB, table.name) for table in PLAN], PLAN_RUNS
)

gates = [daily_gate, plan_gate]
