"""The dev instance (infra/dagster-dev.yaml) on the dev stack's PostgreSQL: runs, events and
the queue kept there, by a role confined to its database."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import dagster as dg
import psycopg2
import pytest
from dagster._core.remote_origin import (
    RegisteredCodeLocationOrigin,
    RemoteJobOrigin,
    RemoteRepositoryOrigin,
)
from dagster._core.run_coordinator import QueuedRunCoordinator
from dagster._core.run_coordinator.base import SubmitRunContext
from dagster._serdes import serialize_value
from dagster_postgres import (
    PostgresEventLogStorage,
    PostgresRunStorage,
    PostgresScheduleStorage,
)

from aps_etl.env.stack import export_stack_env, postgres_uri
from aps_etl_tests.unit.test_instance_storage import (  # noqa: F401
    DEV_YAML,
    SECRET_SUFFIXES,
    _dagster_home,
    _probe_asset,
)


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
