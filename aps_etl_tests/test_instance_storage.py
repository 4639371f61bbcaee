"""Dagster's own storage per environment: `local` on SQLite under $DAGSTER_HOME (the repo's
dagster.yaml), `dev` in the stack's PostgreSQL database `dagster` (infra/dagster-dev.yaml),
as the role `dagster` that can reach nothing else."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import dagster as dg
import psycopg2
import pytest
import yaml
from dagster._core.remote_origin import (
    RegisteredCodeLocationOrigin,
    RemoteJobOrigin,
    RemoteRepositoryOrigin,
)
from dagster._core.run_coordinator import QueuedRunCoordinator
from dagster._core.run_coordinator.base import SubmitRunContext
from dagster._core.storage.event_log import SqliteEventLogStorage
from dagster._core.storage.runs import SqliteRunStorage
from dagster._core.storage.schedules import SqliteScheduleStorage
from dagster._serdes import serialize_value
from dagster_postgres import (
    PostgresEventLogStorage,
    PostgresRunStorage,
    PostgresScheduleStorage,
)

from aps_etl.env.stack import export_stack_env, postgres_uri
from aps_etl.instance.run_launcher import MonitoredRunLauncher
from aps_etl.instance.sqlite_storage import (
    SQLITE_ENGINES_KEPT,
    PooledSqliteEventLogStorage,
    write_local_instance_config,
)

REPO = Path(__file__).resolve().parent.parent
LOCAL_YAML = REPO / "dagster.yaml"
DEV_YAML = REPO / "infra" / "dagster-dev.yaml"
DOCKER_YAML = REPO / "infra" / "docker" / "dagster.yaml"
SECRET_SUFFIXES = ("_PASSWORD", "_SECRET_KEY", "_ACCESS_KEY")


def _probe_asset(name: str) -> dg.AssetsDefinition:
    @dg.asset(name=name)
    def _probe() -> int:
        return 1

    return _probe


def _dagster_home(tmp_path: Path, source: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copyfile(source, home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return home


@pytest.fixture
def stack_environ(stack_settings: dict[str, str]) -> Iterator[dict[str, str]]:
    """The stack settings in os.environ (what infra/dagster-dev.yaml's `env:` refer to),
    put back as they were afterwards."""
    saved = dict(os.environ)
    try:
        yield export_stack_env()
    finally:
        os.environ.clear()
        os.environ.update(saved)


def test_local_instance_is_sqlite_under_dagster_home(tmp_path, monkeypatch) -> None:
    home = _dagster_home(tmp_path, LOCAL_YAML, monkeypatch)
    key = f"instance_storage_probe_{uuid.uuid4().hex[:8]}"
    with dg.DagsterInstance.get() as instance:
        assert isinstance(instance.run_storage, SqliteRunStorage)
        assert isinstance(instance.event_log_storage, SqliteEventLogStorage)
        assert isinstance(instance.schedule_storage, SqliteScheduleStorage)
        # launched runs queue (the daemon drains it); a killed worker is seen
        assert isinstance(instance.run_coordinator, QueuedRunCoordinator)
        assert isinstance(instance.run_launcher, MonitoredRunLauncher)
        assert instance.run_launcher.supports_check_run_worker_health
        assert instance.run_monitoring_enabled
        assert instance.run_retries_enabled
        assert not instance.run_retries_retry_on_asset_or_op_failure
        assert instance.get_settings("telemetry") == {"enabled": False}
        result = dg.materialize([_probe_asset(key)], instance=instance)
        assert result.success
        run = instance.get_run_by_id(result.run_id)
        assert run and run.status == dg.DagsterRunStatus.SUCCESS
        event = instance.get_latest_materialization_event(dg.AssetKey(key))
        assert event and event.run_id == result.run_id
    assert (home / "history" / "runs.db").exists()  # the files are under $DAGSTER_HOME
    assert (home / "history" / "runs" / f"{result.run_id}.db").exists()


PROBE_READER = """
import sys, dagster as dg
with dg.DagsterInstance.from_config(sys.argv[1]) as instance:
    event = instance.get_latest_materialization_event(dg.AssetKey(sys.argv[2]))
    print(event.run_id if event else "none")
"""


def test_homes_made_here_keep_event_log_connections_and_the_history(tmp_path) -> None:
    """A home that aps-etl writes (`aps-etl run`, the benchmarks) gets the pooled SQLite
    event log at Dagster's place: a home made with Dagster's own keeps its history, another
    process reads what a run wrote, the run databases are in WAL mode, and a wipe leaves no
    handle on the files it unlinks."""
    home = tmp_path / "home"
    home.mkdir()
    shutil.copyfile(LOCAL_YAML, home / "dagster.yaml")
    key = f"instance_storage_probe_{uuid.uuid4().hex[:8]}"
    with dg.DagsterInstance.from_config(str(home)) as instance:  # Dagster's own event log
        assert type(instance.event_log_storage) is SqliteEventLogStorage
        before = dg.materialize([_probe_asset(key)], instance=instance).run_id

    write_local_instance_config(home, LOCAL_YAML)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        storage = instance.event_log_storage
        assert isinstance(storage, PooledSqliteEventLogStorage)
        assert storage._base_dir == str((home / "history" / "runs").resolve())
        event = instance.get_latest_materialization_event(dg.AssetKey(key))
        assert event and event.run_id == before  # the history is still there
        after = dg.materialize([_probe_asset(key)], instance=instance).run_id
        assert len(storage._engines) <= SQLITE_ENGINES_KEPT
        with storage.run_connection(after) as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
        read = subprocess.run(
            [sys.executable, "-c", PROBE_READER, str(home), key],
            capture_output=True, text=True, check=True, timeout=120,
        )  # fmt: skip
        assert read.stdout.strip() == after
        storage.wipe()
        assert set(storage._engines) <= {"index"}  # the index is emptied, not unlinked
        assert instance.get_latest_materialization_event(dg.AssetKey(key)) is None
        assert not list((home / "history" / "runs").glob(f"{after}.db*"))


def test_dev_yaml_holds_only_env_references_consistent_with_compose() -> None:
    from aps_etl.env.container_start import dagster_storage_url

    dev = yaml.safe_load(DEV_YAML.read_text())
    docker = yaml.safe_load(DOCKER_YAML.read_text())
    db = dev["event_log_storage"]["config"]["postgres_db"]
    # Dagster's storage has an endpoint of its own, in dev as in the compose deployment
    names = {
        "hostname": "APS_DAGSTER_PG_HOST",
        "port": "APS_DAGSTER_PG_PORT",
        "username": "APS_DAGSTER_PG_USER",
        "password": "APS_DAGSTER_PG_PASSWORD",
    }
    assert {field: db[field] for field in names} == {f: {"env": n} for f, n in names.items()}
    assert db["db_name"] == "dagster"
    # compose: the image's entry point composes the URL from the same variables
    values = {n: f"<{n}>" for n in names.values()}
    url = dagster_storage_url(values)
    assert all(v in url or quote(v, safe="") in url for v in values.values())
    assert url.endswith("/dagster")
    for storage in ("run_storage", "event_log_storage", "schedule_storage"):
        assert (
            dev[storage]["module"]
            == docker[storage]["module"]
            == "aps_etl.instance.postgres_storage"
        )
        assert dev[storage]["config"]["postgres_db"] == db
        assert docker[storage]["config"]["postgres_url"] == {"env": "APS_DAGSTER_PG_URL"}
    assert dev["telemetry"] == {"enabled": False}
    assert dev["run_coordinator"]["class"] == "QueuedRunCoordinator"


@pytest.mark.parametrize("config", [LOCAL_YAML, DEV_YAML, DOCKER_YAML], ids=lambda p: p.name)
def test_every_instance_config_queues_guards_and_monitors_runs(config: Path) -> None:
    settings = yaml.safe_load(config.read_text())
    assert settings["run_coordinator"]["class"] == "QueuedRunCoordinator"
    limits = settings["run_coordinator"]["config"]["tag_concurrency_limits"]
    guarded = {limit["key"]: limit for limit in limits}
    assert guarded["dagster/partition"]["value"] == {"applyLimitPerUniqueValue": True}
    assert guarded["dagster/partition"]["limit"] == 1
    assert guarded["dagster/asset_partition_range_start"]["limit"] == 1  # range runs
    assert guarded["aps_etl/lane"] == {"key": "aps_etl/lane", "value": "plan_snapshot", "limit": 1}
    # each run in a container of its own in the compose deployment; elsewhere a process
    # whose health run monitoring can see
    launcher = "ComposeRunLauncher" if config == DOCKER_YAML else "MonitoredRunLauncher"
    assert settings["run_launcher"]["class"] == launcher
    monitoring = settings["run_monitoring"]
    assert monitoring["enabled"] is True
    assert 0 < monitoring["poll_interval_seconds"] <= 60
    assert settings["run_retries"] == {
        "enabled": True,
        "max_retries": 2,
        "retry_on_asset_or_op_failure": False,
    }


@pytest.mark.stack
def test_dev_instance_keeps_runs_and_events_in_postgres(
    tmp_path, monkeypatch, stack_environ: dict[str, str]
) -> None:
    _dagster_home(tmp_path, DEV_YAML, monkeypatch)
    key = f"instance_storage_probe_{uuid.uuid4().hex[:8]}"
    with dg.DagsterInstance.get() as instance:
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
        assert isinstance(instance.schedule_storage, PostgresScheduleStorage)
        # pooled (aps_etl/instance/postgres_storage.py): a connection kept, not one per event
        for storage in (instance.run_storage, instance.event_log_storage):
            assert type(storage._engine.pool).__name__ == "QueuePool"
        assert isinstance(instance.run_coordinator, QueuedRunCoordinator)
        queue = instance.run_coordinator.get_run_queue_config()
        assert 1 <= queue.max_concurrent_runs <= 4
        assert {
            "key": "dagster/partition",
            "value": {"applyLimitPerUniqueValue": True},
            "limit": 1,
        } in (queue.tag_concurrency_limits)
        assert instance.get_settings("telemetry") == {"enabled": False}
        # What travels to run workers and the daemon is the `env:` references, no value.
        ref = serialize_value(instance.get_ref())
        assert "APS_DAGSTER_PG_PASSWORD" in ref
        leaked = [k for k, v in stack_environ.items() if k.endswith(SECRET_SUFFIXES) and v in ref]
        assert not leaked, f"the instance ref holds the value of {leaked}"

        result = dg.materialize([_probe_asset(key)], instance=instance)
        try:
            assert result.success
            run = instance.get_run_by_id(result.run_id)
            assert run and run.status == dg.DagsterRunStatus.SUCCESS
            events = [e.dagster_event for e in instance.all_logs(result.run_id)]
            types = {e.event_type_value for e in events if e is not None}
            expected = {
                dg.DagsterEventType.RUN_START.value,  # stored under its legacy PIPELINE_ name
                dg.DagsterEventType.STEP_START.value,
                dg.DagsterEventType.ASSET_MATERIALIZATION.value,
                dg.DagsterEventType.RUN_SUCCESS.value,
            }
            assert expected <= types
            event = instance.get_latest_materialization_event(dg.AssetKey(key))
            assert event and event.run_id == result.run_id

            # The same run, read straight from the database as the role `dagster`.
            db = psycopg2.connect(postgres_uri(stack_environ, "dagster", "dagster"))
            try:
                cur = db.cursor()
                cur.execute("SELECT status FROM runs WHERE run_id = %s", (result.run_id,))
                assert cur.fetchall() == [("SUCCESS",)]
                cur.execute(
                    "SELECT dagster_event_type, asset_key FROM event_logs WHERE run_id = %s",
                    (result.run_id,),
                )
                rows = cur.fetchall()
                assert {t for t, _ in rows if t} == types
                assert ("ASSET_MATERIALIZATION", f'["{key}"]') in rows
            finally:
                db.close()
        finally:
            instance.delete_run(result.run_id)
            instance.wipe_assets([dg.AssetKey(key)])


@pytest.mark.stack
def test_dev_instance_queues_submitted_runs(
    tmp_path, monkeypatch, stack_environ: dict[str, str]
) -> None:
    """A run submitted (UI, schedule, sensor) waits in the queue for the daemon."""
    _dagster_home(tmp_path, DEV_YAML, monkeypatch)
    job = dg.Definitions(
        assets=[_probe_asset(f"instance_storage_probe_{uuid.uuid4().hex[:8]}")],
        jobs=[dg.define_asset_job("instance_storage_queue_probe")],
    ).resolve_job_def("instance_storage_queue_probe")
    with dg.DagsterInstance.get() as instance:
        # A queued run names the code location the daemon would launch it from.
        origin = RemoteJobOrigin(
            RemoteRepositoryOrigin(RegisteredCodeLocationOrigin("aps_etl"), "__repository__"),
            job.name,
        )
        run = instance.create_run_for_job(job_def=job, remote_job_origin=origin)
        try:
            queued = instance.run_coordinator.submit_run(SubmitRunContext(run, workspace=None))  # type: ignore[arg-type]
            assert queued.status == dg.DagsterRunStatus.QUEUED
            db = psycopg2.connect(postgres_uri(stack_environ, "dagster", "dagster"))
            try:
                cur = db.cursor()
                cur.execute("SELECT status FROM runs WHERE run_id = %s", (run.run_id,))
                assert cur.fetchall() == [("QUEUED",)]
            finally:
                db.close()
            # Out of the queue again before a daemon could pick it up.
            assert instance.run_coordinator.cancel_run(run.run_id)
        finally:
            instance.delete_run(run.run_id)


@pytest.mark.stack
def test_dagster_role_is_confined_to_its_database(stack_settings: dict[str, str]) -> None:
    s = stack_settings
    conn = psycopg2.connect(postgres_uri(s, "dagster", "dagster"))
    try:
        cur = conn.cursor()
        cur.execute(
            "SELECT rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls"
            " FROM pg_roles WHERE rolname = current_user"
        )
        assert cur.fetchone() == (False,) * 5
        cur.execute(
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()"
        )
        assert cur.fetchone() == (s["APS_DAGSTER_PG_USER"],)
        cur.execute(
            "SELECT has_database_privilege(d, 'CONNECT'), has_database_privilege(d, 'CREATE'),"
            " has_database_privilege(d, 'TEMP') FROM unnest(array['mes', 'aps']) AS d"
        )
        assert cur.fetchall() == [(False, False, False)] * 2
    finally:
        conn.close()
    for db in (s["APS_MES_DB"], s["APS_APS_DB"]):
        with pytest.raises(psycopg2.OperationalError, match="permission denied for database"):
            psycopg2.connect(postgres_uri(s, db, "dagster"))
    for role in ("mes_owner", "mes_reader", "aps_loader"):
        with pytest.raises(psycopg2.OperationalError, match="permission denied for database"):
            psycopg2.connect(postgres_uri(s, "dagster", role))
