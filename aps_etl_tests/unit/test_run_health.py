"""Run monitoring's view of a run worker (aps_etl.instance.run_health, MonitoredRunLauncher): a
worker process that is gone is FAILED, a live one RUNNING, and a worker on a host this
machine cannot see is never judged. Real processes, a real SQLite Dagster instance."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.events import EngineEventData
from dagster._core.launcher.base import WorkerStatus
from dagster._core.storage.tags import GRPC_INFO_TAG

from aps_etl.env.stack import REPO_ROOT
from aps_etl.instance.run_health import dead_runs, fail_dead_run
from aps_etl.instance.run_launcher import MonitoredRunLauncher
from aps_etl.lib.liveness import Owner, process_started, this_process

REPO = REPO_ROOT


@pytest.fixture
def instance(tmp_path: Path):
    shutil.copyfile(REPO / "dagster.yaml", tmp_path / "dagster.yaml")
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        assert isinstance(instance.run_launcher, MonitoredRunLauncher)
        yield instance


@dg.op
def noop() -> None:
    pass


@dg.job
def probe() -> None:
    noop()


def _started_run(instance: dg.DagsterInstance, tags: dict[str, str]) -> dg.DagsterRun:
    run = instance.create_run_for_job(probe, tags=tags)
    instance.handle_run_event(  # as a run worker reports its start
        run.run_id,
        dg.DagsterEvent(
            event_type_value="PIPELINE_START", job_name=run.job_name, message="started"
        ),
    )
    run = instance.get_run_by_id(run.run_id)
    assert run is not None and run.status == dg.DagsterRunStatus.STARTED
    return run


def _worker() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])


def _launched(instance: dg.DagsterInstance, host: str, pid: int) -> dg.DagsterRun:
    """A run as DefaultRunLauncher leaves it: the code server's address in a tag, the
    worker's pid in the "Started process" engine event."""
    run = _started_run(instance, {GRPC_INFO_TAG: json.dumps({"host": host, "port": 4266})})
    instance.report_engine_event(
        f"Started process for run (pid: {pid}).", run, EngineEventData.in_process(pid)
    )
    return run


def test_a_launched_run_whose_worker_dies_is_failed(instance: dg.DagsterInstance) -> None:
    worker = _worker()
    run = _launched(instance, "localhost", worker.pid)
    launcher = instance.run_launcher
    assert launcher.check_run_worker_health(run).status == WorkerStatus.RUNNING
    assert dead_runs(instance) == []
    worker.kill()
    worker.wait()
    health = launcher.check_run_worker_health(run)
    assert health.status == WorkerStatus.FAILED
    assert f"pid {worker.pid}" in (health.msg or "") and "gone" in (health.msg or "")
    (dead,) = dead_runs(instance)
    fail_dead_run(instance, dead)
    failed = instance.get_run_by_id(run.run_id)
    assert failed is not None and failed.status == dg.DagsterRunStatus.FAILURE


def test_a_worker_on_another_host_is_never_judged(instance: dg.DagsterInstance) -> None:
    # a pid that surely does not exist here: on the code server's host it may well run
    run = _launched(instance, "dagster-code-location", 2_000_000)
    health = instance.run_launcher.check_run_worker_health(run)
    assert health.status == WorkerStatus.RUNNING
    assert "not here" in (health.msg or "")
    assert dead_runs(instance) == []


def test_a_cli_run_is_judged_by_the_process_it_names(instance: dg.DagsterInstance) -> None:
    me = _started_run(instance, this_process().tags())
    assert instance.run_launcher.check_run_worker_health(me).status == WorkerStatus.RUNNING
    worker = _worker()
    owner = Owner(this_process().host, worker.pid, process_started(worker.pid) or 0.0)
    gone = _started_run(instance, owner.tags())
    worker.kill()
    worker.wait()
    assert instance.run_launcher.check_run_worker_health(gone).status == WorkerStatus.FAILED


def test_a_reused_pid_is_not_taken_for_the_worker(instance: dg.DagsterInstance) -> None:
    # this very process, but recorded as started long before it was: another process
    me = this_process()
    recorded = Owner(me.host, me.pid, me.started - 3600)
    run = _started_run(instance, recorded.tags())
    assert instance.run_launcher.check_run_worker_health(run).status == WorkerStatus.FAILED


def test_a_run_without_a_recorded_worker_is_left_alone(instance: dg.DagsterInstance) -> None:
    run = _started_run(instance, {})
    assert instance.run_launcher.check_run_worker_health(run).status == WorkerStatus.RUNNING
