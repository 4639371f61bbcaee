"""The dev stack from infra/stack: health, least privilege, lake -> Trino -> PostgreSQL.

These assume `infra/stack up` ran before pytest (the test command does it). When the stack
is down they fail, never skip: a skipped stack test would hide a broken stack.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import psycopg2
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import s3fs
import trino

from aps_etl.env.stack import (
    REPO_ROOT,
    STACK_VARIABLES,
    load_stack_env,
    postgres_uri,
    stack_home,
    trino_connect,
)

pytestmark = pytest.mark.stack

REPO = REPO_ROOT
STACK = REPO / "infra" / "stack"
SERVICES = ("postgres", "mariadb", "minio", "trino")


def run_stack(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(STACK), *args], capture_output=True, text=True, env=env, timeout=600)


def healthy_pids(status_output: str) -> dict[str, int]:
    found = re.findall(r"^(\w+)\s+healthy\s+pid (\d+)", status_output, re.M)
    return {name: int(pid) for name, pid in found}


@pytest.fixture(scope="module")
def settings() -> dict[str, str]:
    return load_stack_env()  # raises (test error) when `infra/stack up` never ran


@pytest.fixture
def trino_cursor(settings: dict[str, str]) -> Iterator[trino.dbapi.Cursor]:
    conn = trino_connect(settings)  # https, the stack's CA, the pipeline user's password
    yield conn.cursor()
    conn.close()


def trino_run(cur: trino.dbapi.Cursor, query: str) -> list[list[object]]:
    cur.execute(query)
    return cur.fetchall()  # fetching is what surfaces a failed statement


def test_status_reports_every_service_healthy() -> None:
    result = run_stack("status")
    assert result.returncode == 0, result.stdout + result.stderr
    assert set(healthy_pids(result.stdout)) == set(SERVICES), result.stdout


def test_stack_env_is_private_and_complete(settings: dict[str, str]) -> None:
    env_file = stack_home() / "stack.env"
    assert env_file.stat().st_mode & 0o777 == 0o600
    keys = [line.split("=", 1)[0] for line in env_file.read_text().splitlines() if "=" in line]
    assert sorted(keys) == sorted(STACK_VARIABLES)


def test_no_secret_in_logs_or_config(settings: dict[str, str]) -> None:
    secrets = [
        v for k, v in settings.items() if k.endswith(("_PASSWORD", "_SECRET_KEY", "_ACCESS_KEY"))
    ]
    home = stack_home()
    checked = 0
    for path in home.rglob("*"):
        skip = ("postgres/data/base", "pg_wal", "minio/data", "mariadb/data")
        if path.name == "stack.env" or not path.is_file() or any(s in str(path) for s in skip):
            continue
        if path.suffix in (".log", ".properties", ".config", ".conf") or "log" in path.name:
            content = path.read_bytes()
            leaked = [s for s in secrets if s.encode() in content]
            assert not leaked, f"a secret is written in {path}"
            checked += 1
    assert checked >= 5  # the service logs and Trino's config were really looked at


def test_mes_reader_can_read_but_not_write(settings: dict[str, str]) -> None:
    table = f"mes.stack_test_{uuid.uuid4().hex[:10]}"
    owner = psycopg2.connect(postgres_uri(settings, "mes", "mes_owner"))
    owner.autocommit = True
    with owner.cursor() as cur:
        cur.execute(f"CREATE TABLE {table} (id int)")
        cur.execute(f"INSERT INTO {table} VALUES (1)")
    try:
        reader = psycopg2.connect(postgres_uri(settings, "mes", "mes_reader"))
        reader.autocommit = True
        with reader.cursor() as cur:
            # Readable through ALTER DEFAULT PRIVILEGES: the table is newer than the grants.
            cur.execute(f"SELECT count(*) FROM {table}")
            assert cur.fetchone() == (1,)
            cur.execute(
                "SELECT has_table_privilege(%s, 'INSERT'), has_table_privilege(%s, 'DELETE'),"
                " has_schema_privilege('mes', 'CREATE'), has_schema_privilege('public', 'CREATE'),"
                " has_database_privilege('mes', 'CREATE'), has_database_privilege('mes', 'TEMP')",
                (table, table),
            )
            assert cur.fetchone() == (False,) * 6
            for statement in (
                f"INSERT INTO {table} VALUES (2)",
                f"DELETE FROM {table}",
                "CREATE TABLE mes.stack_test_reader (id int)",
                "CREATE TABLE public.stack_test_reader (id int)",
            ):
                with pytest.raises(psycopg2.Error):
                    cur.execute(statement)
        reader.close()
    finally:
        with owner.cursor() as cur:
            cur.execute(f"DROP TABLE {table}")
        owner.close()


def test_mes_reader_sessions_are_bounded_whoever_connects(settings: dict[str, str]) -> None:
    """The reader role carries the bounds (infra/dev_stack/config.py), so a planner's
    tool connecting as the reader cannot hold the MES either."""
    reader = psycopg2.connect(postgres_uri(settings, "mes", "mes_reader"))
    try:
        with reader.cursor() as cur:
            cur.execute("SHOW statement_timeout")
            assert cur.fetchone() == ("30min",)
            cur.execute("SHOW idle_in_transaction_session_timeout")
            assert cur.fetchone() == ("5min",)
    finally:
        reader.close()


def test_aps_reader_reads_the_output_tables_and_nothing_else(settings: dict[str, str]) -> None:
    """The planners' tools' role: SELECT on the APS tables (made later by the loader too),
    never a write, a stage table, the MES or Dagster's storage."""
    table = f"public.stack_test_{uuid.uuid4().hex[:10]}"
    stage = f"aps_stage.stack_test_{uuid.uuid4().hex[:10]}"
    loader = psycopg2.connect(postgres_uri(settings, "aps", "aps_loader"))
    loader.autocommit = True
    with loader.cursor() as cur:
        cur.execute("CREATE SCHEMA IF NOT EXISTS aps_stage")
        for name in (table, stage):
            cur.execute(f"CREATE TABLE {name} (id int)")
            cur.execute(f"INSERT INTO {name} VALUES (1)")
    try:
        reader = psycopg2.connect(postgres_uri(settings, "aps", "aps_reader"))
        reader.autocommit = True
        with reader.cursor() as cur:
            cur.execute(f"SELECT count(*) FROM {table}")
            assert cur.fetchone() == (1,)
            cur.execute("SHOW statement_timeout")
            assert cur.fetchone() == ("30min",)
            for statement in (
                f"SELECT count(*) FROM {stage}",
                f"INSERT INTO {table} VALUES (2)",
                f"DELETE FROM {table}",
                "CREATE TABLE public.stack_test_reader (id int)",
            ):
                with pytest.raises(psycopg2.Error):
                    cur.execute(statement)
        reader.close()
        for database in ("mes", "dagster"):
            with pytest.raises(psycopg2.OperationalError, match="permission denied"):
                psycopg2.connect(postgres_uri(settings, database, "aps_reader")).close()
    finally:
        with loader.cursor() as cur:
            cur.execute(f"DROP TABLE {table}")
            cur.execute(f"DROP TABLE {stage}")
        loader.close()


def test_aps_loader_cannot_touch_mes_and_mes_roles_cannot_touch_aps(
    settings: dict[str, str],
) -> None:
    with pytest.raises(psycopg2.OperationalError, match="permission denied for database"):
        psycopg2.connect(postgres_uri(settings, "mes", "aps_loader"))
    for role in ("mes_owner", "mes_reader"):
        with pytest.raises(psycopg2.OperationalError, match="permission denied for database"):
            psycopg2.connect(postgres_uri(settings, "aps", role))


def test_parquet_in_lake_through_trino_into_postgres(
    settings: dict[str, str], trino_cursor: trino.dbapi.Cursor
) -> None:
    tag = uuid.uuid4().hex[:10]
    bucket, prefix = settings["APS_S3_BUCKET"], f"stack-test-{tag}"
    schema, target = f"stack_test_{tag}", f"stack_test_{tag}"
    pg_columns = (
        "id bigint, qty integer, price numeric(12, 3), weight double precision, label text,"
        " event_ts timestamptz, made_on date"
    )
    data = pa.table(
        {
            "id": pa.array([1, 2, 3], pa.int64()),
            "qty": pa.array([10, None, -5], pa.int32()),
            "price": pa.array([Decimal("12.345"), Decimal("-0.001"), None], pa.decimal128(12, 3)),
            "weight": pa.array([1.5, None, 2.25], pa.float64()),
            "label": pa.array(["alpha", "ünïcode β", None], pa.string()),
            "event_ts": pa.array(
                [
                    datetime(2024, 1, 2, 3, 4, 5, 123456, tzinfo=UTC),
                    None,
                    datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
                ],
                pa.timestamp("us", tz="UTC"),
            ),
            "made_on": pa.array([date(2024, 1, 2), date(1970, 1, 1), None], pa.date32()),
        }
    )
    fs = s3fs.S3FileSystem(
        key=settings["APS_S3_ACCESS_KEY"],
        secret=settings["APS_S3_SECRET_KEY"],
        endpoint_url=settings["APS_S3_ENDPOINT"],
        client_kwargs={"region_name": settings["APS_S3_REGION"]},
    )
    with fs.open(f"{bucket}/{prefix}/items/part-0.parquet", "wb") as f:
        pq.write_table(data, f)
    cur = trino_cursor
    columns = "id bigint, qty integer, price decimal(12, 3), weight double, label varchar"
    try:
        trino_run(cur, f"CREATE SCHEMA lake.{schema} WITH (location = 's3://{bucket}/{prefix}/')")
        trino_run(
            cur,
            f"CREATE TABLE lake.{schema}.items ({columns}, event_ts timestamp(6), made_on date)"
            f" WITH (external_location = 's3://{bucket}/{prefix}/items/', format = 'PARQUET')",
        )
        # Trino's user may only write the stage schema, whose tables the loader creates
        # directly in PostgreSQL (as the pipeline does)
        _aps(settings, f"CREATE TABLE aps_stage.{target} ({pg_columns})")
        inserted = trino_run(
            cur,
            f"INSERT INTO aps.aps_stage.{target} SELECT id, qty, price, weight, label,"
            f" with_timezone(event_ts, 'UTC'), made_on FROM lake.{schema}.items",
        )
        assert inserted == [[3]]
        rows = _aps(
            settings,
            f"SELECT id, qty, price, weight, label, event_ts, made_on FROM aps_stage.{target}"
            " ORDER BY id",
        )
        expected = [tuple(row.values()) for row in data.to_pylist()]
        assert rows == expected
    finally:
        _aps(settings, f"DROP TABLE IF EXISTS aps_stage.{target}")
        for cleanup in (
            f"DROP TABLE IF EXISTS lake.{schema}.items",  # external: drops metadata only
            f"DROP SCHEMA IF EXISTS lake.{schema}",
        ):
            with contextlib.suppress(trino.exceptions.TrinoQueryError):
                trino_run(cur, cleanup)
        fs.rm(f"{bucket}/{prefix}", recursive=True)


def _aps(settings: dict[str, str], sql: str) -> list[tuple[object, ...]]:
    """A statement in `aps` as aps_loader, directly (no Trino)."""
    pg = psycopg2.connect(postgres_uri(settings, "aps", "aps_loader"))
    pg.autocommit = True
    try:
        with pg.cursor() as cur:
            cur.execute("CREATE SCHEMA IF NOT EXISTS aps_stage")
            cur.execute(sql)
            return cur.fetchall() if cur.description else []
    finally:
        pg.close()


def test_unknown_service_is_rejected_with_the_valid_names() -> None:
    result = run_stack("status", "postgress")
    assert result.returncode == 2
    assert "postgress" in result.stderr
    for name in SERVICES:
        assert name in result.stderr


def test_port_taken_by_another_process_fails_before_anything_starts(tmp_path: Path) -> None:
    home = tmp_path / "stack"
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        env = {**os.environ, "APS_STACK_HOME": str(home), "APS_STACK_PG_PORT": str(port)}
        result = run_stack("up", "postgres", env=env)
    message = result.stdout + result.stderr
    assert result.returncode != 0, message
    assert str(port) in message and "postgres" in message
    assert f"pid {os.getpid()}" in message  # names the process that holds the port
    assert not (home / "postgres").exists()
    assert not (home / "stack.env").exists()
    ours = [p for p in Path("/proc").glob("[0-9]*/cmdline") if str(home) in _read(p)]
    assert not ours, "a process was started for the temporary stack"


def test_trino_node_ports_and_worker_count_are_checked_before_anything_starts(
    tmp_path: Path,
) -> None:
    home = tmp_path / "stack"
    env = {**os.environ, "APS_STACK_HOME": str(home)}
    bad = run_stack("up", "trino", env={**env, "APS_STACK_TRINO_WORKERS": "many"})
    assert bad.returncode == 2 and "APS_STACK_TRINO_WORKERS='many'" in bad.stderr
    # the coordinator's internal port (client port + 1) is held by another process
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        internal = listener.getsockname()[1]
        client = str(internal - 1)
        result = run_stack("up", "trino", env={**env, "APS_STACK_TRINO_PORT": client})
    message = result.stdout + result.stderr
    assert result.returncode != 0, message
    assert f"internal port {internal}" in message and f"pid {os.getpid()}" in message
    assert not (home / "trino").exists() and not (home / "stack.env").exists()


def test_down_never_stops_a_process_it_did_not_start(tmp_path: Path) -> None:
    home = tmp_path / "stack"
    (home / "minio").mkdir(parents=True)
    (home / "trino").mkdir()
    (home / "mariadb" / "run").mkdir(parents=True)
    stranger = subprocess.Popen(["sleep", "60"])
    try:
        # Pid files that point at someone else's process, as after a pid was reused.
        (home / "minio" / "minio.pid").write_text(f"{stranger.pid}\n")
        (home / "trino" / "trino.pid").write_text(f"{stranger.pid}\n")
        (home / "mariadb" / "run" / "mariadbd.pid").write_text(f"{stranger.pid}\n")
        result = run_stack("down", env={**os.environ, "APS_STACK_HOME": str(home)})
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.count("not running") == len(SERVICES)
        assert stranger.poll() is None, "down killed a process that is not the stack's"
    finally:
        stranger.kill()
        stranger.wait()


def _read(path: Path) -> str:
    try:
        return path.read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def test_second_up_is_quick_and_keeps_the_same_processes() -> None:
    before = healthy_pids(run_stack("status").stdout)
    assert set(before) == set(SERVICES)
    started = time.monotonic()
    result = run_stack("up")
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("already running") == len(SERVICES), result.stdout
    # Generous bound: scripts/bootstrap re-syncs .venv when the lock file changed.
    assert elapsed < 30
    assert healthy_pids(run_stack("status").stdout) == before
