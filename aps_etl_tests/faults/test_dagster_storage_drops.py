"""Dagster's own PostgreSQL storage loses its connections while a run writes to it
(issue 29): the run ends succeeded, with every event written once.

The faults are the server's: the storage's kept connections terminated between steps (as a
failover or a restarted server leaves them), and a connection terminated in the middle of
an event's INSERT (a trigger ends its own backend, so nothing of that statement commits).
Runs on an embedded PostgreSQL of the test's own (aps_etl/lib/embedded_postgres.py).
"""

from __future__ import annotations

import contextlib
import logging
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import psycopg2
import pytest
from dagster._core.events import DagsterEventType

from aps_etl.lib.embedded_postgres import start_embedded_postgres

DB = "dagster_drops"

# Ends the connection that inserts the first STEP_SUCCESS, in the middle of its INSERT (a
# sequence: what a transaction does is rolled back with it, nextval is not).
KILL_ONCE = """
create sequence if not exists drop_once;
create or replace function drop_connection_once() returns trigger language plpgsql as $$
begin
  if new.dagster_event_type = 'STEP_SUCCESS' then  -- (AND would not short-circuit)
    if nextval('drop_once') = 1 then
      perform pg_terminate_backend(pg_backend_pid());
      perform pg_sleep(5);  -- the termination lands here, before anything commits
    end if;
  end if;
  return new;
end $$;
create trigger drop_connection_once before insert on event_logs
  for each row execute function drop_connection_once();
"""

TERMINATE_OTHERS = """
select count(pg_terminate_backend(pid)) from pg_stat_activity
where datname = current_database() and pid <> pg_backend_pid()
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    pg = start_embedded_postgres(tmp_path_factory.mktemp("storage-drops") / "pg")
    if f" {DB}\n" not in pg.server.psql("select datname from pg_database;"):
        pg.server.psql(f"create database {DB};")
    return pg


@pytest.fixture
def instance(server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    url = server.uri(DB).replace("postgresql://", "postgresql+psycopg2://", 1)
    monkeypatch.setenv("APS_TEST_DAGSTER_PG_URL", url)
    monkeypatch.setenv("APS_DAGSTER_STORAGE_RETRY_S", "30")
    (tmp_path / "dagster.yaml").write_text(
        "telemetry:\n  enabled: false\n"
        + "".join(
            f"{kind}:\n  module: aps_etl.instance.postgres_storage\n  class: {cls}\n"
            f"  config:\n    postgres_url:\n      env: APS_TEST_DAGSTER_PG_URL\n"
            for kind, cls in (
                ("run_storage", "PooledPostgresRunStorage"),
                ("event_log_storage", "PooledPostgresEventLogStorage"),
                ("schedule_storage", "PooledPostgresScheduleStorage"),
            )
        )
    )
    with dg.DagsterInstance.from_config(str(tmp_path)) as inst:
        inst.wipe()
        yield inst


@contextlib.contextmanager
def _connect(server: Any) -> Iterator[Any]:
    conn = psycopg2.connect(server.uri(DB))
    conn.autocommit = True
    try:
        yield conn.cursor()
    finally:
        conn.close()


def _sql(server: Any, statement: str) -> None:
    with _connect(server) as cursor:
        cursor.execute(statement)


def _assets(server: Any) -> list[dg.AssetsDefinition]:
    @dg.asset
    def first() -> int:
        # every connection Dagster's storages keep is ended, as a failover ends them
        with _connect(server) as cursor:
            cursor.execute(TERMINATE_OTHERS)
            (ended,) = cursor.fetchone()
        assert ended >= 1, "the storages kept no connection: nothing was dropped"
        return 1

    @dg.asset
    def second(first: int) -> int:
        return first + 1

    @dg.asset
    def third(second: int) -> int:
        return second + 1

    return [first, second, third]


def _counts(instance: Any, run_id: str) -> Counter[str]:
    return Counter(
        e.dagster_event.event_type_value
        for e in instance.all_logs(run_id)
        if e.dagster_event is not None
    )


def test_a_run_rides_out_dropped_storage_connections(
    server: Any, instance: Any, caplog: pytest.LogCaptureFixture
) -> None:
    _sql(server, "drop trigger if exists drop_connection_once on event_logs")
    _sql(server, KILL_ONCE)
    try:
        with caplog.at_level(logging.WARNING, logger="aps_etl.instance"):
            result = dg.materialize(_assets(server), instance=instance, raise_on_error=False)
    finally:
        _sql(server, "drop trigger if exists drop_connection_once on event_logs")
    assert result.success, [
        e.step_failure_data.error.message for e in result.all_events if e.is_step_failure
    ]
    counts = _counts(instance, result.run_id)
    # each event once: the dropped INSERT was run again, not written twice
    assert counts[DagsterEventType.STEP_SUCCESS.value] == 3
    assert counts[DagsterEventType.ASSET_MATERIALIZATION.value] == 3
    assert counts[DagsterEventType.STEP_START.value] == 3
    assert counts[DagsterEventType.RUN_SUCCESS.value] == 1
    run = instance.get_run_by_id(result.run_id)
    assert run is not None and run.status == dg.DagsterRunStatus.SUCCESS
    for key in ("first", "second", "third"):
        event = instance.get_latest_materialization_event(dg.AssetKey(key))
        assert event is not None and event.run_id == result.run_id
    # the operator sees one line per retry, naming the call
    retried = [r.getMessage() for r in caplog.records if "lost its connection" in r.getMessage()]
    assert any(m.startswith("Dagster storage: store_event ") for m in retried), retried
    assert all("password" not in m and "@" not in m for m in retried)


def test_a_statement_error_is_not_retried(server: Any, instance: Any) -> None:
    """Only a dropped connection is run again: the storage's own errors still surface at
    once (a duplicate run id)."""
    from dagster._core.errors import DagsterRunAlreadyExists

    result = dg.materialize([_assets(server)[0]], instance=instance)
    run = instance.get_run_by_id(result.run_id)
    with pytest.raises(DagsterRunAlreadyExists):
        instance.run_storage.add_run(run)
