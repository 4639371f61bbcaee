"""`aps_daily` launched the way operators launch it: through the run queue and the daemon.

A `dagster-daemon` runs on the case's own Dagster instance (the project's dagster.yaml
or infra/dagster-dev.yaml: queued runs, MonitoredRunLauncher) with the code location
loaded, as in production. Each round queues a run of the data set's day (`dagster job
launch`, as the UI's "Materialize" and the schedule do), the daemon dequeues it, its code
server starts a run worker, the worker runs the job with the job's own executor. Measured
from the instance's records: queued -> run finished (what the operator waits), split into
the queue's pickup, the worker's start (process, imports, resources) and the run itself.

The schedule and the sensors of the code location are stopped on that instance first:
the daemon must run only what the benchmark queues.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from benchmarks import harness
from benchmarks.conftest import Bench
from benchmarks.machine import load_average

REPO = Path(__file__).resolve().parent.parent
BIN = REPO / ".venv" / "bin"
# (data set role, case): the few-thousand-row day bounds the fixed cost, the 1M-row day
# compares with the in-process cases of test_benchmarks.py
LAUNCHED = [("tiny", "embedded"), ("tiny", "trino"), ("day", "trino"), ("day", "embedded")]
INSTIGATORS = {"sensor": ["plan_run_sensor", "source_change_sensor", "run_failure_alerts"],
               "schedule": ["aps_daily_schedule"]}  # fmt: skip


def _env(spec: dict[str, Any], home: Path) -> dict[str, str]:
    env = {**os.environ, **spec["environ"], "APS_ENV": spec["env"], "DAGSTER_HOME": str(home)}
    if spec["env"] == "dev":
        from aps_etl.env.stack import export_stack_env

        # here too: this process reads the dev instance (its storage settings are env:);
        # the case's own settings (its source database, lake) win over the stack's
        env.update({**export_stack_env(), **spec["environ"]})
    return env


def _instance_timeline(home: Path, run_id: str) -> dict[str, float]:
    import dagster as dg

    with dg.DagsterInstance.from_config(str(home)) as instance:
        (record,) = instance.get_run_records(filters=dg.RunsFilter(run_ids=[run_id]))
        marks = {"queued": record.create_timestamp.timestamp()}
        for entry in instance.all_logs(run_id):
            event = entry.dagster_event
            kind = event.event_type_value if event else None
            if kind == "PIPELINE_STARTING":
                marks.setdefault("launched", entry.timestamp)
            elif kind == "ENGINE_EVENT" and "Started process" in (entry.message or ""):
                marks.setdefault("worker", entry.timestamp)
            elif kind == "PIPELINE_START":
                marks["started"] = entry.timestamp
            elif kind in ("PIPELINE_SUCCESS", "PIPELINE_FAILURE"):
                marks["ended"] = entry.timestamp
                marks["success"] = float(kind == "PIPELINE_SUCCESS")
        return marks


def _wait_for_end(home: Path, run_id: str, timeout: float) -> dict[str, float]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        marks = _instance_timeline(home, run_id)
        if "ended" in marks:
            return marks
        time.sleep(0.25)
    raise TimeoutError(f"run {run_id} did not end within {timeout:.0f} s")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # the data sets of the scale (the smoke scale has no `tiny`: its `day` is that small)
    scale = harness.SCALES[metafunc.config.getoption("--bench-scale")]
    items = [(role, case) for role, case in LAUNCHED if role in scale.rows]
    if scale.name == "smoke":  # the path once, as production runs it: PostgreSQL instance, Trino
        items = [("day", "trino")]
    metafunc.parametrize(("role", "case"), items, ids=[f"{r}-{c}" for r, c in items])


def test_launched_path(bench: Bench, role: str, case: str, benchmark: Any) -> None:
    server_name = harness.SERVER_OF_CASE[case]
    server = bench.server(server_name, role)
    dataset = bench.dataset(role, server_name)
    stack = bench.stack if server_name == "stack" else None
    home = bench.home(f"{case}_launched")
    m = harness.Measurement(
        key=f"launched/{role}/{case}", kind="launched", tool=case,
        label=f"{role} {dataset.rows:,} rows: {harness.CASES[case]}, launched (queue, daemon, "
        "run worker)", dataset=role, server=server_name, rows=dataset.rows,
    )  # fmt: skip
    bench.measurements.append(m)
    run_tag = harness.new_run_tag()
    spec = harness.our_spec(case, dataset, server, home, run_tag)
    env = _env(spec, home)
    for kind, names in INSTIGATORS.items():
        for name in names:
            subprocess.run(
                [str(BIN / "dagster"), kind, "stop", "-m", "aps_etl.definitions", name],
                env=env,
                capture_output=True,
                check=True,
                timeout=300,
            )
    log = harness.WORK / "logs" / f"{bench.scale.name}_{role}_{case}_launched_daemon.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    daemon = subprocess.Popen(
        [str(BIN / "dagster-daemon"), "run", "-m", "aps_etl.definitions"],
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    rounds = bench.scale.rounds[role]

    def launch() -> dict[str, float]:
        harness.clear_target(dataset, server)
        tags = json.dumps({"dagster/partition": dataset.partition})
        subprocess.run(
            [str(BIN / "dagster"), "job", "launch", "-m", "aps_etl.definitions",
             "-j", spec["job"], "--tags", tags],
            env=env, capture_output=True, text=True, timeout=600, check=True,
        )  # fmt: skip
        run_id = _newest_run(home)  # the benchmark is the instance's only submitter
        marks = _wait_for_end(home, run_id, timeout=1800)
        if not marks.get("success"):
            raise RuntimeError(f"launched run {run_id} failed; daemon log {log}")
        return marks

    try:
        if bench.scale.warmup:  # untimed: lake tables created, Trino JIT warm, as in production
            try:
                launch()
            finally:
                harness.cleanup_our_round(case, spec, stack, last=False)

        def one_round() -> None:
            load = list(load_average())
            try:
                marks = launch()
            finally:
                harness.cleanup_our_round(case, spec, stack, last=len(m.rounds) + 1 >= rounds)
            stages = {
                "queue": marks.get("launched", marks["queued"]) - marks["queued"],
                "worker start": marks["started"] - marks.get("launched", marks["queued"]),
                "run": marks["ended"] - marks["started"],
            }
            m.rounds.append(
                harness.Round(
                    wall=marks["ended"] - marks["queued"],
                    peak_rss_mb=0.0,
                    load_before=load,
                    result={"stages": stages, "when": dt.datetime.now().isoformat()},
                )
            )

        benchmark.pedantic(one_round, rounds=rounds, iterations=1)
    except Exception as exc:
        m.error = str(exc)[:500]
        raise
    finally:
        os.killpg(daemon.pid, signal.SIGTERM)
        try:
            daemon.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(daemon.pid, signal.SIGKILL)
        _wipe_heartbeats(home)


def _wipe_heartbeats(home: Path) -> None:
    """The stopped daemon's heartbeats read as a running daemon for a minute: a command
    that comes next on an instance of the same storage (the scale-out's `aps-etl backfill`
    on the stack's `bench_dagster`) would hand its backfill to a daemon that is gone."""
    import dagster as dg

    with dg.DagsterInstance.from_config(str(home)) as instance:
        instance.wipe_daemon_heartbeats()


def _newest_run(home: Path) -> str:
    import dagster as dg

    with dg.DagsterInstance.from_config(str(home)) as instance:
        (record,) = instance.get_run_records(limit=1)
        return record.dagster_run.run_id
