"""The list of the PRD's scenarios: everything that needs it (the definitions, the jobs'
selections, the validation gates and loads, `aps-etl run`'s report, the tests' harness, the
benchmarks) reads `SCENARIOS` here. A new scenario is a new package under defs/scenarios/
and one line below.

    python -c "from aps_etl.defs.registry import SCENARIOS; print(*SCENARIOS, sep='\\n')"
"""

from __future__ import annotations

from typing import Any

from aps_etl.defs.scenario import DAILY_RUN, PLAN_RUN, Scenario
from aps_etl.defs.scenarios.aps_balance.assets import SCENARIO as APS_BALANCE
from aps_etl.defs.scenarios.aps_input.assets import SCENARIO as APS_INPUT
from aps_etl.defs.scenarios.aps_kpi.assets import SCENARIO as APS_KPI
from aps_etl.defs.scenarios.aps_master.assets import SCENARIO as APS_MASTER
from aps_etl.defs.scenarios.aps_plan.assets import SCENARIO as APS_PLAN

__all__ = ["DAILY_RUN", "PLAN_RUN", "SCENARIOS", "Scenario", "of_run", "outputs_of_run"]

# In PRD order; the master-data dimensions (§3.4's upsert) last.
SCENARIOS: tuple[Scenario, ...] = (APS_INPUT, APS_PLAN, APS_KPI, APS_BALANCE, APS_MASTER)


def of_run(run: str) -> list[Scenario]:
    return [s for s in SCENARIOS if s.run == run]


def outputs_of_run(run: str) -> list[tuple[str, Any]]:
    """(namespace, output table) of every scenario of `run`, in PRD order."""
    return [(s.namespace, table) for s in of_run(run) for table in s.outputs]
