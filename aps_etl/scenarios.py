"""The scenarios of the PRD (§10.1 to §10.4). Each registers itself: its package under
aps_etl/domains/ declares one `SCENARIO` in its assets.py, and everything that needs the
list (the definitions, the jobs' selections, the validation gates and loads, `aps-etl run`'s
report, the tests' harness, the benchmarks) reads it from here. A new scenario is a new
package; nothing else lists them.

    python -c "from aps_etl.scenarios import SCENARIOS; print(*SCENARIOS, sep='\\n')"
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from functools import cache
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


@cache
def _registered() -> tuple[Scenario, ...]:
    import aps_etl.domains as domains

    found = []
    for info in pkgutil.iter_modules(domains.__path__):
        if info.ispkg:
            module = importlib.import_module(f"{domains.__name__}.{info.name}.assets")
            scenario = getattr(module, "SCENARIO", None)
            if not isinstance(scenario, Scenario):
                raise TypeError(f"{module.__name__} declares no SCENARIO")
            found.append(scenario)
    return tuple(sorted(found, key=lambda s: tuple(int(p) for p in s.prd.split("."))))


def of_run(run: str) -> list[Scenario]:
    return [s for s in _registered() if s.run == run]


def outputs_of_run(run: str) -> list[tuple[str, Any]]:
    """(namespace, output table) of every scenario of `run`, in PRD order."""
    return [(s.namespace, table) for s in of_run(run) for table in s.outputs]


def __getattr__(name: str) -> Any:
    # SCENARIOS is read lazily: the domains import this module for `Scenario`.
    if name == "SCENARIOS":
        return list(_registered())
    raise AttributeError(name)
