"""What a scenario of the PRD hands up to the definitions: its namespace, its run, its
output tables and its assets. Each package under defs/scenarios/ declares one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# The jobs a scenario runs in: every daily scenario in `aps_daily` for a business day, the
# plan snapshot in `aps_plan_snapshot` per plan run.
DAILY_RUN = "aps_daily"
PLAN_RUN = "aps_plan_snapshot"


@dataclass(frozen=True)
class Scenario:
    prd: str  # the PRD section, "10.1"
    title: str
    namespace: str  # lake namespace and asset-key prefix: extract/<ns>, transform/<ns>, load/<ns>
    run: str  # DAILY_RUN or PLAN_RUN
    outputs: tuple[Any, ...]  # its OutputTable declarations, loaded into PostgreSQL
    assets: tuple[Any, ...]  # its extract and transform assets (their checks included)

    def __str__(self) -> str:
        tables = ", ".join(t.name for t in self.outputs)
        keys = [k for a in self.assets for k in a.keys]
        checks = sum(len(list(a.check_keys)) for a in self.assets)
        return (
            f"§{self.prd} {self.title} [{self.namespace}, in {self.run}]: outputs {tables}; "
            f"{len(keys)} assets, {checks} checks"
        )
