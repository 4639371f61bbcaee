"""Trino as production runs it, on the dev stack: HTTPS with a certificate of the stack's CA,
password authentication, file-based access control (infra/trino/rules.json), the lake read
with a read-only MinIO user, and a coordinator with its worker(s): a real cluster.

A wrong password, an untrusted certificate or the wrong scheme fails at once, names its
cause, and is not retried by the load's retry policy; the pipeline's user may read the lake
and write only the stage schema."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import subprocess
import time
import uuid
from pathlib import Path

import dagster as dg
import psycopg2
import pytest
import s3fs

from aps_etl.definitions import build_defs
from aps_etl.devdata import seed_source
from aps_etl.env.settings import resources_for
from aps_etl.env.stack import (
    parse_env_file,
    postgres_uri,
    stack_home,
    trino_connect,
    trino_settings,
)
from aps_etl.lib.warehouse.target import STAGE_SCHEMA
from aps_etl.lib.warehouse.trino import TrinoError, TrinoResource
from aps_etl_tests.pipeline_harness import run_daily, step_failures

DAY = "2026-11-21"
LOADS = [
    dg.AssetKey(["load", "aps_input", name])
    for name in ("aps_input_wip", "aps_input_cycle_time", "aps_input_lead_time")
]


def _other_ca(tmp_path: Path) -> str:
    other = tmp_path / "other-ca.crt"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(tmp_path / "other.key"), "-out", str(other), "-subj", "/CN=other"],
        check=True, capture_output=True,
    )  # fmt: skip
    return str(other)


def _refused(trino: TrinoResource, statement: str = "SELECT 1") -> TrinoError:
    started = time.monotonic()
    with pytest.raises(TrinoError) as error:
        trino.execute(statement)
    assert time.monotonic() - started < 10, "a permanent refusal must fail fast"
    return error.value


# ------------------------------------------------------------------ HTTPS and the password


def test_https_with_the_password_and_the_stack_ca(stack_settings: dict[str, str]) -> None:
    trino = TrinoResource(**trino_settings(stack_settings))
    assert trino.http_scheme == "https" and trino.sslrootcert
    assert trino.execute("SELECT 1") == [[1]]
    # the host name is checked against the certificate: localhost is in it too
    assert TrinoResource(**{**trino_settings(stack_settings), "host": "localhost"}).execute(
        "SELECT 2"
    ) == [[2]]


def test_a_wrong_password_fails_at_once_named(stack_settings: dict[str, str]) -> None:
    wrong = "wrong-" + uuid.uuid4().hex
    error = _refused(TrinoResource(**{**trino_settings(stack_settings), "password": wrong}))
    assert error.permanent
    assert "refused the credentials (HTTP 401)" in str(error)
    assert wrong not in str(error) and stack_settings["APS_TRINO_PASSWORD"] not in str(error)


def test_an_untrusted_certificate_and_plain_http_are_refused(
    stack_settings: dict[str, str], tmp_path: Path
) -> None:
    settings = trino_settings(stack_settings)
    untrusted = _refused(TrinoResource(**{**settings, "sslrootcert": _other_ca(tmp_path)}))
    assert untrusted.permanent and "certificate is not trusted" in str(untrusted)
    # nor does the system's CA list know the stack's CA
    system = _refused(TrinoResource(**{**settings, "sslrootcert": None}))
    assert system.permanent and "certificate is not trusted" in str(system)
    # plain http to the client port: the server answers in TLS
    plain = _refused(
        TrinoResource(**{**settings, "http_scheme": "http", "password": None, "sslrootcert": None})
    )
    assert plain.permanent and "plain http to a port that speaks https" in str(plain)
    # the coordinator's internal HTTP port (for its workers) refuses clients
    internal = _refused(
        TrinoResource(
            **{
                **settings,
                "port": settings["port"] + 1,
                "http_scheme": "http",
                "password": None,
                "sslrootcert": None,
            }
        )
    )
    assert internal.permanent and "https only" in str(internal)


# ------------------------------------------------------------------ not retried by the job


@pytest.fixture(scope="module")
def transformed(stack_settings: dict[str, str]):
    """A day extracted and transformed into this module's corner of the lake, loaded once."""
    run = uuid.uuid4().hex[:8]
    owner = postgres_uri(stack_settings, stack_settings["APS_MES_DB"], "mes_owner")
    seed_source(owner, start_date=dt.date(2026, 11, 20), days=3, lots=600, seed=11, progress=False)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("APS_ENV", "dev")
        mp.setenv("APS_LAKE_ROOT", f"s3://{stack_settings['APS_S3_BUCKET']}/tests/{run}")
        mp.setenv("APS_TRINO_LAKE_SCHEMA_PREFIX", f"s{run}_")
        instance = dg.DagsterInstance.ephemeral()
        first = run_daily(resources_for("dev"), DAY, instance)
        assert first.success, step_failures(first)  # through access control, on the cluster
        yield {"instance": instance, "mp": mp}
        lake = resources_for("dev")["lake"].process_config_and_initialize()
        if lake.fs.exists(lake.root):
            lake.fs.rm(lake.root, recursive=True)


@pytest.mark.parametrize("fault", ["password", "certificate"])
def test_the_load_is_not_retried_when_trino_refuses_us(
    transformed, stack_settings: dict[str, str], fault: str, tmp_path: Path
) -> None:
    with pytest.MonkeyPatch.context() as mp:
        if fault == "password":
            mp.setenv("APS_TRINO_PASSWORD", "wrong-" + uuid.uuid4().hex)
        else:
            mp.setenv("APS_TRINO_SSLROOTCERT", _other_ca(tmp_path))
        resources = resources_for("dev")
        job = build_defs(resources).resolve_job_def("aps_daily")
        failed = job.execute_in_process(
            partition_key=DAY,
            instance=transformed["instance"],
            asset_selection=LOADS,
            raise_on_error=False,
        )
    assert not failed.success
    retried = [e for e in failed.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    assert not retried, "a refusal by Trino was retried"
    message = step_failures(failed)["load__aps_daily"]
    cause = "refused the credentials" if fault == "password" else "certificate is not trusted"
    assert cause in message
    assert stack_settings["APS_TRINO_PASSWORD"] not in message


# ------------------------------------------------------------------ access control


def test_the_pipeline_user_writes_only_the_stage_schema(stack_settings: dict[str, str]) -> None:
    trino = TrinoResource(**trino_settings(stack_settings))
    tag = uuid.uuid4().hex[:8]
    bucket = stack_settings["APS_S3_BUCKET"]
    schema = f"acl_test_{tag}"
    stage = f"acl_test_{tag}"
    pg = psycopg2.connect(postgres_uri(stack_settings, "aps", "aps_loader"))
    pg.autocommit = True
    with pg.cursor() as cur:
        cur.execute(f"CREATE SCHEMA IF NOT EXISTS {STAGE_SCHEMA}")
        cur.execute(f"CREATE TABLE {STAGE_SCHEMA}.{stage} (a integer)")
        cur.execute(f"CREATE TABLE public.{stage} (a integer)")
        cur.execute("CREATE TABLE IF NOT EXISTS public.aps_dim_acl_check (a integer)")
    try:
        # the master dimensions may be read (a merge ships only what differs from them)
        assert trino.execute("SELECT count(*) FROM aps.public.aps_dim_acl_check") == [[0]]
        # allowed: the stage schema, and the lake's tables (metadata: they are external)
        assert trino.execute(f"INSERT INTO aps.{STAGE_SCHEMA}.{stage} VALUES 1") == [[1]]
        trino.execute(f"CREATE SCHEMA lake.{schema} WITH (location = 's3://{bucket}/{schema}/')")
        trino.execute(
            f"CREATE TABLE lake.{schema}.t (a integer) WITH (format = 'PARQUET', "
            f"external_location = 's3://{bucket}/{schema}/t/')"
        )
        assert trino.execute(f"SELECT count(*) FROM lake.{schema}.t") == [[0]]
        for statement, refusal in (
            (f"CREATE TABLE aps.public.acl_new_{tag} (a integer)", "Cannot create table"),
            (f"INSERT INTO aps.public.{stage} VALUES 1", "Cannot insert into table"),
            (f"SELECT * FROM aps.public.{stage}", "Cannot select from"),
            ("INSERT INTO aps.public.aps_dim_acl_check VALUES 1", "Cannot insert into table"),
            ("DELETE FROM aps.public.aps_dim_acl_check", "Cannot delete from table"),
            (f"CREATE TABLE aps.{STAGE_SCHEMA}.acl_new_{tag} (a integer)", "Cannot create"),
            (f"DELETE FROM lake.{schema}.t", "Cannot delete from table"),
            ("SELECT count(*) FROM mes.information_schema.tables", "Cannot access catalog mes"),
        ):
            error = _refused(trino, statement)
            assert error.error_name == "PERMISSION_DENIED", (statement, str(error))
            assert refusal in str(error) and "Access Denied" in str(error), str(error)
            assert error.permanent
        # Writing the lake's data: Trino's rules must let the user INSERT into lake tables
        # (register_partition is checked as an insert), so the refusal is MinIO's: Trino
        # reads the lake as a user that may write only its metastore's prefix.
        with pytest.raises(TrinoError):
            trino.execute(f"INSERT INTO lake.{schema}.t VALUES 1")
        assert trino.execute(f"SELECT count(*) FROM lake.{schema}.t") == [[0]]
    finally:
        for cleanup in (
            f"DROP TABLE IF EXISTS lake.{schema}.t",
            f"DROP SCHEMA IF EXISTS lake.{schema}",
        ):
            trino.execute(cleanup)
        with pg.cursor() as cur:
            cur.execute(f"DROP TABLE {STAGE_SCHEMA}.{stage}")
            cur.execute(f"DROP TABLE public.{stage}")
            cur.execute("DROP TABLE public.aps_dim_acl_check")
        pg.close()


# ------------------------------------------------------------------ the read-only MinIO user


def test_trino_reads_the_lake_with_a_read_only_minio_user(stack_settings: dict[str, str]) -> None:
    bucket, key = stack_settings["APS_S3_BUCKET"], f"tests/minio-ro-{uuid.uuid4().hex[:8]}"
    pipeline = s3fs.S3FileSystem(
        key=stack_settings["APS_S3_ACCESS_KEY"],
        secret=stack_settings["APS_S3_SECRET_KEY"],
        endpoint_url=stack_settings["APS_S3_ENDPOINT"],
        skip_instance_cache=True,
    )
    reader = s3fs.S3FileSystem(
        key=stack_settings["APS_TRINO_S3_ACCESS_KEY"],
        secret=stack_settings["APS_TRINO_S3_SECRET_KEY"],
        endpoint_url=stack_settings["APS_S3_ENDPOINT"],
        skip_instance_cache=True,
    )
    pipeline.pipe(f"{bucket}/{key}/data.txt", b"lake")
    metastore_probe = f"{bucket}/_trino_metastore/{key.replace('/', '-')}"
    try:
        assert reader.cat(f"{bucket}/{key}/data.txt") == b"lake"  # Get and List allowed
        assert reader.ls(f"{bucket}/{key}")
        for path in (f"{bucket}/{key}/other.txt", f"{bucket}/{key}/data.txt"):
            with pytest.raises(PermissionError):  # S3 AccessDenied
                reader.pipe(path, b"overwritten")
        # (s3fs's bulk delete does not raise on a refused key: what counts is what is left)
        with contextlib.suppress(PermissionError):
            reader.rm(f"{bucket}/{key}/data.txt")
        assert pipeline.cat(f"{bucket}/{key}/data.txt") == b"lake"
        # the one prefix it may write: Trino's file metastore
        reader.pipe(metastore_probe, b"ok")
        reader.rm(metastore_probe)
    finally:
        pipeline.rm(f"{bucket}/{key}", recursive=True)
    # and the Trino processes hold its keys, neither the pipeline's nor MinIO's root keys
    root_password = parse_env_file(stack_home() / "minio" / "root.env")["APS_MINIO_ROOT_PASSWORD"]
    for pid_file in stack_home().glob("trino/**/trino.pid"):
        environ = Path(f"/proc/{pid_file.read_text().split()[0]}/environ").read_bytes()
        variables = dict(v.split(b"=", 1) for v in environ.split(b"\0") if b"=" in v)
        assert variables[b"AWS_ACCESS_KEY_ID"].decode() == stack_settings["APS_TRINO_S3_ACCESS_KEY"]
        assert stack_settings["APS_S3_SECRET_KEY"].encode() not in environ
        assert root_password.encode() not in environ


# ------------------------------------------------------------------ the cluster


def test_the_cluster_has_a_coordinator_and_workers_that_run_the_queries(
    stack_settings: dict[str, str],
) -> None:
    workers = int(os.environ.get("APS_STACK_TRINO_WORKERS") or 1)
    connection = trino_connect(stack_settings)
    try:
        cursor = connection.cursor()
        cursor.execute("SELECT node_id, coordinator, state FROM system.runtime.nodes")
        nodes = {node: (coordinator, state) for node, coordinator, state in cursor.fetchall()}
        assert nodes["aps-dev-coordinator"] == (True, "active")
        expected = {f"aps-dev-worker-{i}" for i in range(1, workers + 1)}
        assert {n for n, (c, s) in nodes.items() if not c and s == "active"} == expected
        assert workers >= 1, "the tests run Trino as a cluster"
        cursor.execute(
            "SELECT count(*) FROM UNNEST(sequence(1, 1000)) AS a(x) "
            "CROSS JOIN UNNEST(sequence(1, 1000)) AS b(y) WHERE (x + y) % 7 = 0"
        )
        want = sum(1 for x in range(1, 1001) for y in range(1, 1001) if (x + y) % 7 == 0)
        assert cursor.fetchall() == [[want]]
        query_id = cursor.query_id
        cursor.execute(
            f"SELECT DISTINCT node_id FROM system.runtime.tasks WHERE query_id = '{query_id}'"
        )
        ran_on = {row[0] for row in cursor.fetchall()}
    finally:
        connection.close()
    # the coordinator only schedules (node-scheduler.include-coordinator=false)
    assert ran_on and ran_on <= expected, ran_on
