"""Fault injection on the dev stack: each fault, then the recovery an operator would use.

`aps-etl run --env dev` runs in its own process and is frozen at a failpoint
(aps_etl/lib/failpoints.py) and killed with SIGKILL there: during an extract's write, with
its Trino INSERT running, between the last stage fill and the swap, inside the swap's
transaction. Trino, MinIO and PostgreSQL are killed with SIGKILL mid-run and restarted. A
long reader holds a table during a reload; two runs of one day overlap; the local lake's
disk fills up. After each: the day is entirely the old or entirely the new version (every
table compared row by row, and one run's load in the load log for all of them), nothing
is lost or doubled once recovered (the target equals the reference SQL on the source), no
stage is left after the next load, and a killed run is marked FAILURE by run monitoring's
own check and alerted.

The figures (faults, rows lost, half-loaded days, reader waits, detection time) are
written to .aps-etl/fault-report.json for the README's reliability section.
"""

from __future__ import annotations

import datetime as dt
import importlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import adbc_driver_postgresql.dbapi as adbc
import dagster as dg
import psutil
import pyarrow.parquet as pq
import pytest
from dagster._core.events import DagsterEventType
from dagster._daemon.monitoring.run_monitoring import monitor_started_run

from aps_etl.defs.alerts import SENSOR_NAME, alert_resources_from_env, build_alert_sensor
from aps_etl.devdata import seed_source
from aps_etl.env.settings import resources_for
from aps_etl.env.stack import REPO_ROOT, postgres_uri
from aps_etl.lib.warehouse.swap import SwapBlocked
from aps_etl_tests.living_source import correct_results
from aps_etl_tests.pipeline_harness import (
    DAILY_TABLES,
    assert_rows_equal,
    fetch,
    reference_partition,
    run_daily,
    step_failures,
    target_partition,
)
from aps_etl_tests.stand_ins import SlackStandIn

pytestmark = [pytest.mark.stack, pytest.mark.faults]

REPO = REPO_ROOT
START = dt.date(2026, 11, 20)
DAY = "2026-11-21"
DATE = dt.date.fromisoformat(DAY)
REPORT = REPO / ".aps-etl" / "fault-report.json"
FIGURES: dict[str, Any] = {
    "faults_injected": 0,
    "rows_lost": 0,
    "days_seen_half_loaded": 0,
    "longest_other_reader_wait_s": 0.0,
    "dead_run_detection_s": [],
}


def _stack_module():
    """infra/dev_stack's commands (the package infra/stack runs), for its services' pids."""
    if str(REPO / "infra") not in sys.path:
        sys.path.insert(0, str(REPO / "infra"))
    return importlib.import_module("dev_stack.cli")


class Plant:
    """The dev stack with this module's corner of the lake, a Dagster instance of its own,
    and the run process as operators start it."""

    def __init__(self, settings: dict[str, str], home: Path, env: dict[str, str]) -> None:
        self.settings = settings
        self.home = home
        self.env = env
        self.source = postgres_uri(settings, settings["APS_MES_DB"], "mes_owner")
        self.target = postgres_uri(settings, settings["APS_APS_DB"], "aps_loader")
        self.logs = home / "logs"
        self.logs.mkdir(exist_ok=True)

    def start(self, *args: str, failpoint: str | None = None, sleep_s: float | None = None):
        env = {**os.environ, **self.env}
        marker = self.logs / f"marker-{uuid.uuid4().hex[:6]}"
        if failpoint:
            env["APS_FAILPOINT"] = failpoint
            env["APS_FAILPOINT_MARKER"] = str(marker)
            if sleep_s is not None:
                env["APS_FAILPOINT_SLEEP_S"] = str(sleep_s)
        log = self.logs / f"{args[0]}-{uuid.uuid4().hex[:6]}.log"
        process = subprocess.Popen(
            [str(REPO / ".venv" / "bin" / "aps-etl"), *args, "--env", "dev"],
            env=env,
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
            cwd=REPO,
            start_new_session=True,
        )
        process.log = log  # type: ignore[attr-defined]
        process.marker = marker  # type: ignore[attr-defined]
        return process

    def wait_for_failpoint(self, process, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.marker.exists():
                return
            if process.poll() is not None:
                pytest.fail(
                    f"the run ended before its failpoint:\n{process.log.read_text()[-3000:]}"
                )
            time.sleep(0.1)
        process.kill()
        pytest.fail(f"failpoint not reached in {timeout} s:\n{process.log.read_text()[-3000:]}")

    def finish(self, process, timeout: float = 600) -> int:
        try:
            return process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            raise

    def run(self, *args: str) -> None:
        process = self.start(*args)
        rc = self.finish(process)
        assert rc == 0, process.log.read_text()[-4000:]

    def day(self, date: dt.date = DATE) -> dict[str, list[dict[str, Any]]]:
        return {table: target_partition(self.target, table, date) for table in DAILY_TABLES}

    def reference(self, date: dt.date = DATE) -> dict[str, list[dict[str, Any]]]:
        return {table: reference_partition(self.source, table, date) for table in DAILY_TABLES}

    def stages(self) -> int:
        (row,) = fetch(
            self.target,
            "select count(*) as n from information_schema.tables where table_schema = 'aps_stage'",
        )
        return int(row["n"])

    def loaded_by(self, key: str = DAY) -> set[str]:
        """The run whose load each table of the day holds (the newest load-log entry)."""
        rows = fetch(
            self.target,
            "select distinct on (table_name) table_name, dagster_run_id from aps_load_log "
            "where partition_key = $1 order by table_name, load_id desc",
            key,
        )
        assert {r["table_name"] for r in rows} == set(DAILY_TABLES)
        return {r["dagster_run_id"] for r in rows}

    def instance(self) -> dg.DagsterInstance:
        return dg.DagsterInstance.from_config(str(self.home / "dagster"))


def _matches(table: str, got: list[dict], want: list[dict]) -> bool:
    """`got` (target rows) equals `want` (reference rows) as the contract compares them."""
    try:
        assert_rows_equal(table, got, want)
    except AssertionError:
        return False
    return True


def assert_whole(plant: Plant, old: dict, new: dict) -> str:
    """The day is entirely `old` or entirely `new`; which one."""
    now = plant.day()
    is_old = all(now[t] == old[t] for t in DAILY_TABLES)
    is_new = all(_matches(t, now[t], new[t]) for t in DAILY_TABLES)
    if not (is_old or is_new):
        FIGURES["days_seen_half_loaded"] += 1
        mixed = [t for t in DAILY_TABLES if now[t] != old[t]]
        pytest.fail(f"the day is half loaded: {mixed} changed, the others did not")
    assert len(plant.loaded_by()) == 1, "the tables of the day come from different loads"
    return "old" if is_old else "new"


def assert_recovered(plant: Plant) -> None:
    want = plant.reference()
    got = plant.day()
    for table in DAILY_TABLES:
        lost = len(want[table]) - len(got[table])
        FIGURES["rows_lost"] += max(lost, 0)
        assert_rows_equal(table, got[table], want[table])
    assert plant.stages() == 0, "stages of the dead run are left after the next load"
    assert len(plant.loaded_by()) == 1


def change_the_day(plant: Plant) -> dict:
    """A correction in the MES, so that a rerun has a new version to load."""
    before = plant.reference()
    correct_results(plant.source, DAY, n=6, offset=int(time.time()) % 40)
    # and the master data: a product renamed, a merge for the dimensions to make
    fetch(
        plant.source,
        "update product set product_name = product_name || '+' "
        "where product_id = (select min(product_id) from product) returning 1",
    )
    after = plant.reference()
    assert after["aps_dim_product"] != before["aps_dim_product"]
    assert after != before, "the correction should change the day's outputs"
    return after


@pytest.fixture(scope="module")
def plant(stack_settings: dict[str, str], tmp_path_factory: pytest.TempPathFactory):
    run = uuid.uuid4().hex[:8]
    home = tmp_path_factory.mktemp("faults")
    (home / "dagster").mkdir()
    shutil.copyfile(REPO / "dagster.yaml", home / "dagster" / "dagster.yaml")
    owner = postgres_uri(stack_settings, stack_settings["APS_MES_DB"], "mes_owner")
    seed_source(owner, start_date=START, days=3, lots=1200, seed=13, progress=False)
    env = {
        "APS_ENV": "dev",
        "APS_LAKE_ROOT": f"s3://{stack_settings['APS_S3_BUCKET']}/tests/faults-{run}",
        "APS_TRINO_LAKE_SCHEMA_PREFIX": f"f{run}_",
        "DAGSTER_HOME": str(home / "dagster"),
        "APS_RETRY_DELAY_S": "0.5",
    }
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        plant = Plant(stack_settings, home, env)
        plant.run("run", "--date", DAY)
        yield plant
        # this module's corner only (the variable is still set here)
        lake = resources_for("dev")["lake"].process_config_and_initialize()
        assert "/tests/faults-" in lake.root
        if lake.fs.exists(lake.root):
            lake.fs.rm(lake.root, recursive=True)
    REPORT.parent.mkdir(exist_ok=True)
    REPORT.write_text(json.dumps(FIGURES, indent=2, default=str) + "\n")


@pytest.fixture
def alerting(slack: SlackStandIn, monkeypatch: pytest.MonkeyPatch) -> SlackStandIn:
    """Failure alerts switched on, to the Slack stand-in."""
    monkeypatch.setenv("APS_ALERT_SLACK_TOKEN", "xoxb-fault-suite")
    monkeypatch.setenv("APS_ALERT_SLACK_CHANNEL", "#aps-alerts")
    monkeypatch.setenv("APS_ALERT_SLACK_BASE_URL", slack.base_url)
    return slack


def detect_and_alert(plant: Plant, killed_at: float, slack: SlackStandIn) -> dg.DagsterRun:
    """What the daemon's run monitoring does on its next poll, then the failure sensor."""
    instance = plant.instance()
    (record,) = instance.get_run_records(
        filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])
    )
    started = time.monotonic()
    monitor = logging.getLogger("run_monitoring")
    monitor_started_run(instance, None, record, monitor)  # type: ignore[arg-type]
    check_s = time.monotonic() - started
    run = instance.get_run_by_id(record.dagster_run.run_id)
    assert run is not None and run.status == dg.DagsterRunStatus.FAILURE
    # The daemon polls every `poll` s: a dead run is FAILURE at most that long after the
    # kill, plus one check.
    poll = instance.get_settings("run_monitoring")["poll_interval_seconds"]
    FIGURES["dead_run_detection_s"].append(round(poll + check_s, 2))
    (failure,) = instance.all_logs(run.run_id, of_type=DagsterEventType.RUN_FAILURE)
    assert "is gone" in (failure.message or "")
    context = dg.build_run_status_sensor_context(
        sensor_name=SENSOR_NAME,
        dagster_instance=instance,
        dagster_run=run,
        dagster_event=failure.dagster_event,
        resources=alert_resources_from_env(),
    )
    build_alert_sensor()(context)
    (alert,) = slack.requests
    assert run.run_id in alert["body"]["text"]
    assert "is gone" in alert["body"]["text"]
    return run


def doctor(plant: Plant, *args: str) -> tuple[int, str]:
    out = subprocess.run(
        [str(REPO / ".venv" / "bin" / "aps-etl"), "doctor", "--env", "dev", *args],
        env={**os.environ, **plant.env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    return out.returncode, out.stdout + out.stderr


@pytest.mark.parametrize("point", ["lake.publish", "trino.insert", "load.filled", "load.swap"])
def test_a_run_killed_anywhere_leaves_the_whole_old_day_and_a_rerun_the_whole_new(
    plant: Plant, alerting: SlackStandIn, point: str
) -> None:
    old = plant.day()
    new = change_the_day(plant)
    process = plant.start("run", "--date", DAY, failpoint=point)
    plant.wait_for_failpoint(process)
    # inside the swap's transaction: every table swapped or merged (the master dimensions
    # too), nothing committed
    if point == "load.swap":
        (row,) = fetch(
            plant.target,
            "select count(*) as n from pg_stat_activity where state = 'idle in transaction'",
        )
        assert row["n"] >= 1
    os.killpg(process.pid, signal.SIGKILL)
    killed_at = time.time()
    process.wait()
    FIGURES["faults_injected"] += 1

    assert assert_whole(plant, old, new) == "old"
    detect_and_alert(plant, killed_at, alerting)

    rc, report = doctor(plant)  # what the dead run left: its stages or its spool folder
    assert rc == 1 and ("lake spool" in report or "stage table" in report), report
    plant.run("run", "--date", DAY)
    assert assert_whole(plant, old, new) == "new"
    assert_recovered(plant)
    doctor(plant, "--fix")
    rc, report = doctor(plant)
    assert rc == 0, report


def _wait_gone(pid: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return
        except psutil.NoSuchProcess:
            return
        time.sleep(0.1)


def _service(name: str):
    stack = _stack_module()
    return stack, stack.services(stack.load_stack(), [name])[0]


@pytest.mark.parametrize(
    ("service", "point"),
    [("trino", "trino.insert"), ("minio", "lake.publish"), ("postgres", "load.filled")],
)
def test_a_service_killed_mid_run_then_restarted(plant: Plant, service: str, point: str) -> None:
    old = plant.day()
    new = change_the_day(plant)
    # the run pauses at the failpoint for a few seconds, its service dies meanwhile
    process = plant.start("run", "--date", DAY, failpoint=point, sleep_s=4)
    plant.wait_for_failpoint(process)
    stack, svc = _service(service)
    pid = svc.pid()
    os.kill(pid, signal.SIGKILL)
    FIGURES["faults_injected"] += 1
    _wait_gone(pid)
    if service != "postgres":  # with PostgreSQL down there is nothing to read
        assert assert_whole(plant, old, new) == "old"
    for _attempt in range(10):  # PostgreSQL's orphaned backends take a moment to exit
        up = subprocess.run(
            [str(REPO / "infra" / "stack"), "up", service],
            capture_output=True,
            text=True,
            timeout=300,
        )
        if up.returncode == 0:
            break
        time.sleep(2)
    assert up.returncode == 0, up.stdout + up.stderr
    rc = plant.finish(process)
    state = assert_whole(plant, old, new)
    # the step retries may have healed the run; if not, the operator reruns it
    assert (rc == 0) == (state == "new"), process.log.read_text()[-3000:]
    if rc != 0:
        plant.run("run", "--date", DAY)
    assert assert_whole(plant, old, new) == "new"
    assert_recovered(plant)


def test_a_long_reader_delays_the_reload_never_the_other_readers(plant: Plant) -> None:
    old = plant.day()
    new = change_the_day(plant)
    other_day = DATE - dt.timedelta(days=1)
    reader = adbc.connect(plant.target + "?application_name=fault-long-reader")
    cursor = reader.cursor()
    cursor.execute("select count(*) from aps_input_wip where base_date = $1", parameters=(DATE,))
    cursor.fetchall()  # its transaction stays open: AccessShare on the table held
    waits: list[float] = []
    stop = threading.Event()

    def other_reader() -> None:
        with adbc.connect(plant.target) as conn, conn.cursor() as cur:
            cur.execute("set statement_timeout = '10s'")
            while not stop.is_set():
                started = time.monotonic()
                cur.execute(
                    "select count(*) from aps_input_wip where base_date = $1",
                    parameters=(other_day,),
                )
                cur.fetchall()
                conn.commit()
                waits.append(time.monotonic() - started)
                time.sleep(0.05)

    thread = threading.Thread(target=other_reader)
    thread.start()
    process = plant.start("run", "--date", DAY)
    try:
        # the run fills and checks a stage per table, then its swap waits for the reader
        deadline = time.monotonic() + 300
        while plant.stages() < len(DAILY_TABLES) and time.monotonic() < deadline:
            assert process.poll() is None, process.log.read_text()[-3000:]
            time.sleep(0.2)
        time.sleep(4)  # a few rounds of the swap's wait
        assert process.poll() is None, process.log.read_text()[-3000:]
        assert assert_whole(plant, old, new) == "old"
        (blocked,) = fetch(
            plant.target,
            "select count(*) as n from pg_stat_activity where wait_event_type = 'Lock'",
        )
    finally:
        reader.commit()  # the reader leaves
        cursor.close()
        reader.close()
    assert plant.finish(process) == 0, process.log.read_text()[-3000:]
    stop.set()
    thread.join()
    FIGURES["faults_injected"] += 1
    FIGURES["longest_other_reader_wait_s"] = max(
        FIGURES["longest_other_reader_wait_s"], round(max(waits), 3)
    )
    assert len(waits) > 50
    # a reader behind a queued swap waits at most the swap's lock_timeout (2 s)
    assert max(waits) < 2.5, f"another reader waited {max(waits):.2f} s"
    assert blocked["n"] == 0, "the waiting swap must not sit in the lock queue"
    assert assert_whole(plant, old, new) == "new"
    assert_recovered(plant)


def test_a_reader_that_never_leaves_fails_the_swap_by_name(plant: Plant) -> None:
    from aps_etl.defs.registry import DAILY_RUN, outputs_of_run
    from aps_etl.defs.transforms import transform_table

    old = plant.day()
    tables = [(output, transform_table(output, ns)) for ns, output in outputs_of_run(DAILY_RUN)]
    configured = resources_for("dev")["loader"].model_copy(update={"swap_budget_s": 4.0})
    reader = adbc.connect(plant.target + "?application_name=fault-stuck-report")
    cursor = reader.cursor()
    cursor.execute(
        "select count(*) from aps_kpi_plan_vs_actual where base_date = $1", parameters=(DATE,)
    )
    cursor.fetchall()
    try:
        with configured.process_config_and_initialize_cm() as loader:
            result = loader.load_partitions(tables, [DAY], job="aps_daily", run_id=None)
    finally:
        reader.rollback()
        cursor.close()
        reader.close()
    FIGURES["faults_injected"] += 1
    ((_, error),) = result.failures[DAY]
    assert isinstance(error, SwapBlocked)
    assert "fault-stuck-report" in str(error) and "aps_kpi_plan_vs_actual" in str(error)
    assert "nothing was swapped" in str(error)
    assert plant.day() == old
    assert plant.stages() == 0


def test_two_overlapping_runs_of_one_day_leave_one_whole_day(plant: Plant) -> None:
    old = plant.day()
    new = change_the_day(plant)
    single = plant.start("run", "--date", DAY)
    backfill = plant.start("backfill", "--from", "2026-11-20", "--to", DAY)
    rcs = [plant.finish(single), plant.finish(backfill)]
    FIGURES["faults_injected"] += 1
    logs = single.log.read_text() + backfill.log.read_text()  # type: ignore[attr-defined]
    assert 0 in rcs, logs[-4000:]
    if 1 in rcs:  # the loser says why, in words
        why = ("already being run by", "newer snapshots", "write-once", "snapshot version")
        assert any(w in logs for w in why), logs[-4000:]
    assert assert_whole(plant, old, new) == "new"
    plant.run("run", "--date", DAY)  # the next load
    assert_recovered(plant)


def test_a_full_disk_under_the_local_lake_publishes_nothing_partial(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aps_etl.env.embedded import SOURCE_DB, TARGET_DB, start_embedded_postgres

    home = tmp_path / "home"
    lake = tmp_path / "lake"
    lake.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96k", "tmpfs", str(lake)], check=True)
    try:
        monkeypatch.setenv("APS_LOCAL_HOME", str(home))
        monkeypatch.setenv("APS_ENV", "local")
        monkeypatch.setenv("APS_LAKE_ROOT", str(lake))
        pg = start_embedded_postgres(home / "postgres")
        seed_source(pg.uri(SOURCE_DB), start_date=START, days=3, lots=600, progress=False)
        resources = resources_for("local")
        instance = dg.DagsterInstance.ephemeral()
        result = run_daily(resources, DAY, instance)
        FIGURES["faults_injected"] += 1
        assert not result.success
        assert "No space left on device" in " ".join(step_failures(result).values())
        for path in lake.rglob("*"):
            assert not path.name.startswith(".tmp-"), f"temp file left: {path}"
            if path.suffix == ".parquet":
                pq.read_metadata(path)  # every published file is whole
        loaded = fetch(
            pg.uri(TARGET_DB),
            "select count(*) as n from information_schema.tables "
            "where table_name = 'aps_input_wip'",
        )
        if loaded[0]["n"]:
            assert target_partition(pg.uri(TARGET_DB), "aps_input_wip", DATE) == []
        subprocess.run(["mount", "-o", "remount,size=64m", str(lake)], check=True)
        result = run_daily(resources, DAY, instance)
        assert result.success, step_failures(result)
        for table in DAILY_TABLES:
            assert_rows_equal(
                table,
                target_partition(pg.uri(TARGET_DB), table, DATE),
                reference_partition(pg.uri(SOURCE_DB), table, DATE),
            )
    finally:
        subprocess.run(["umount", "-l", str(lake)], check=False)


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
