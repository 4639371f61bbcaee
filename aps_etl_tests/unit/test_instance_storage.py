"""Dagster's own storage per environment: `local` on SQLite under $DAGSTER_HOME (the repo's
dagster.yaml), `dev` in the stack's PostgreSQL database `dagster` (infra/dagster-dev.yaml),
as the role `dagster` that can reach nothing else."""

from __future__ import annotations

import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import quote

import dagster as dg
import pytest
import yaml
from dagster._core.run_coordinator import QueuedRunCoordinator
from dagster._core.storage.event_log import SqliteEventLogStorage
from dagster._core.storage.runs import SqliteRunStorage
from dagster._core.storage.schedules import SqliteScheduleStorage

from aps_etl.env.stack import REPO_ROOT
from aps_etl.instance.run_launcher import MonitoredRunLauncher
from aps_etl.instance.sqlite_storage import (
    SQLITE_ENGINES_KEPT,
    PooledSqliteEventLogStorage,
    write_local_instance_config,
)

REPO = REPO_ROOT
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
