"""A flaky network between the pipeline and every service it talks to (issue 29): a real TCP
fault proxy (Toxiproxy: aps_etl_tests/fault_proxy.py) in front of the dev stack's source,
target and Dagster storage (PostgreSQL), lake (MinIO) and Trino; `aps-etl run --env dev`
runs through it as an operator starts it.

- Named moments: the run is frozen at a failpoint (aps_etl/lib/failpoints.py) and one
  service goes away for seconds (open connections closed, new ones refused) while it
  resumes: inside the extract's lake write, the transform's lake write, the Trino stage
  fill, the swap's transaction, and Dagster's event writes. Each day ends exact, loaded by
  one run.
- A soak (`make soak`, marker `soak`: not in make test, it does not hold 99% yet; see
  docs/operations.md): business days one after another with 5% of every service's
  connections reset and one service down for seconds every 12 s (each about once a
  minute); at least 99% of the days must succeed without a person, each exact. The figures
  go to .aps-etl/fault-soak.json (a measured copy: benchmarks/results/fault_soak.json).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import time
import uuid
from typing import Any

import pytest

from aps_etl.devdata import seed_source
from aps_etl.env.stack import REPO_ROOT, postgres_uri
from aps_etl_tests.fault_proxy import fault_proxy
from aps_etl_tests.faults.test_faults import Plant
from aps_etl_tests.pipeline_harness import DAILY_TABLES, assert_rows_equal

pytestmark = [pytest.mark.stack, pytest.mark.faults]

START = dt.date(2026, 11, 2)
SOAK_DAYS = [START + dt.timedelta(days=n) for n in range(10)]
MOMENT_DAY = "2026-11-12"
# the figures of the last soak (benchmarks/results/fault_soak.json keeps a measured one)
SOAK_REPORT = REPO_ROOT / ".aps-etl" / "fault-soak.json"

# (failpoint the run is frozen at, the service that goes away while it resumes)
MOMENTS = {
    "inside the extract's lake write": ("lake.publish.extract", "lake"),
    "the transform's lake write": ("lake.publish.transform", "lake"),
    "the Trino stage fill": ("trino.insert", "trino"),
    "the swap's transaction": ("load.swap", "target"),
    "Dagster's event writes": ("load.filled", "dagster"),
}
FROZEN_S = 2.0  # how long the run waits at its failpoint
DOWN_S = 5.0  # how long the service is away (the run resumes into the outage)


@pytest.fixture(scope="module")
def flaky(stack_settings: dict[str, str], tmp_path_factory: pytest.TempPathFactory):
    home = tmp_path_factory.mktemp("network-faults")
    owner = postgres_uri(stack_settings, stack_settings["APS_MES_DB"], "mes_owner")
    seed_source(owner, start_date=START, days=len(SOAK_DAYS) + 1, lots=300, seed=29, progress=False)
    run = uuid.uuid4().hex[:8]
    with fault_proxy(stack_settings, home / "toxiproxy.log") as proxy:
        env = {
            "APS_LAKE_ROOT": f"s3://{stack_settings['APS_S3_BUCKET']}/tests/network-{run}",
            "APS_TRINO_LAKE_SCHEMA_PREFIX": f"n{run}_",
            "DAGSTER_HOME": str(home / "dagster"),
            "APS_RETRY_DELAY_S": "3",  # production waits 5 s; 3 s then 9 s and 21 s here
            **proxy.env(stack_settings),
        }
        (home / "dagster").mkdir()
        (home / "dagster" / "dagster.yaml").write_text(
            (REPO_ROOT / "infra" / "dagster-dev.yaml").read_text()
        )
        yield Plant(stack_settings, home, env), proxy


def _exact(plant: Plant, day: dt.date) -> None:
    want = plant.reference(day)
    got = plant.day(day)
    for table in DAILY_TABLES:
        assert_rows_equal(table, got[table], want[table])
    assert len(plant.loaded_by(day.isoformat())) == 1, "the day holds more than one load"


@pytest.mark.parametrize("moment", list(MOMENTS))
def test_a_service_away_at_a_named_moment_costs_no_day(flaky: Any, moment: str) -> None:
    plant, proxy = flaky
    point, service = MOMENTS[moment]
    proxy.clear()
    process = plant.start("run", "--date", MOMENT_DAY, failpoint=point, sleep_s=FROZEN_S)
    plant.wait_for_failpoint(process)
    proxy.down(service, DOWN_S)
    status = plant.finish(process)
    log = process.log.read_text()
    assert status == 0, log[-4000:]
    assert "Traceback" not in log and "Stack Trace" not in log
    _exact(plant, dt.date.fromisoformat(MOMENT_DAY))


@pytest.mark.soak
def test_a_soak_through_resets_and_outages_keeps_99_percent(flaky: Any) -> None:
    plant, proxy = flaky
    proxy.clear()
    for service in proxy.upstream:
        proxy.resets(service, toxicity=0.05, after_ms=300)
    outcomes: list[dict[str, Any]] = []
    started = time.monotonic()
    with proxy.outages(every_s=12, down_s=4, seed=29) as outages:
        for day in SOAK_DAYS:
            began = time.monotonic()
            process = plant.start("run", "--date", day.isoformat())
            status = plant.finish(process)
            log = process.log.read_text()
            outcomes.append({
                "day": day.isoformat(),
                "exit_status": status,
                "seconds": round(time.monotonic() - began, 1),
                "run_reexecutions": len(re.findall(r"re-executing it from the failure", log)),
                "step_retries": log.count(" retrying"),
                "storage_retries": log.count("lost its connection"),
                "traceback": "Traceback" in log or "Stack Trace" in log,
            })  # fmt: skip
            if status != 0:
                outcomes[-1]["tail"] = log[-1500:]
        injected = list(outages)
    proxy.clear()
    succeeded = [o for o in outcomes if o["exit_status"] == 0]
    figures = {
        "days": len(outcomes),
        "succeeded": len(succeeded),
        "success_rate": round(len(succeeded) / len(outcomes), 4),
        "outages_injected": len(injected),
        "outages_by_service": {s: sum(1 for f in injected if f["service"] == s)
                               for s in proxy.upstream},
        "reset_share_of_new_connections": 0.05,
        "run_reexecutions": sum(o["run_reexecutions"] for o in outcomes),
        "step_retries": sum(o["step_retries"] for o in outcomes),
        "seconds_total": round(time.monotonic() - started, 1),
        "seconds_per_day": [o["seconds"] for o in outcomes],
        "outcomes": outcomes,
    }  # fmt: skip
    SOAK_REPORT.parent.mkdir(parents=True, exist_ok=True)
    SOAK_REPORT.write_text(json.dumps(figures, indent=2) + "\n")
    # the faults were there: outages throughout (each service about once a minute)
    assert figures["outages_injected"] >= len(SOAK_DAYS), figures["outages_injected"]
    assert not any(o["traceback"] for o in outcomes), outcomes
    assert figures["success_rate"] >= 0.99, json.dumps(outcomes, indent=1)[-6000:]
    for day in SOAK_DAYS:
        _exact(plant, day)
