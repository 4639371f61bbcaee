"""Least privilege in the running compose deployment (issue 27): Trino's `aps` catalog as the
stage writer, made by the compose PostgreSQL's own setup script; MinIO as minio-init left it
(extracts kept by the store, the compute logs in a bucket of their own that the webserver
reads with a read-only user). The dev stack runs the same checks on its own services
(aps_etl_tests/stack/test_least_privilege.py)."""

from __future__ import annotations

import io
import json
import secrets
import string
import sys
import uuid
from typing import Any

import psycopg2
import pytest
from minio import Minio
from minio.error import S3Error

from aps_etl_tests.deploy.deployment import REPO, container_of, docker

if str(REPO / "infra") not in sys.path:
    sys.path.insert(0, str(REPO / "infra"))

from dev_stack.minio import minio_init  # noqa: E402  (infra/docker/minio-init.py)

pytestmark = pytest.mark.docker

DENIED = "AccessDenied|Access Denied"


def _pg(env: dict[str, str], role: str, database: str = "aps") -> Any:
    conn = psycopg2.connect(
        host="127.0.0.1",
        port=int(env["APS_COMPOSE_PG_PORT"]),
        dbname=database,
        user=env[f"APS_{role}_USER"],
        password=env[f"APS_{role}_PASSWORD"],
        sslmode="require",  # the server's certificate names `postgres`, not 127.0.0.1
    )
    conn.autocommit = True
    return conn


def _environ(env_file: Any, service: str) -> dict[str, str]:
    values = json.loads(docker("inspect", container_of(service)))[0]["Config"]["Env"]
    return dict(v.split("=", 1) for v in values)


def _minio(env: dict[str, str], access: str, secret: str) -> Minio:
    return Minio(
        f"127.0.0.1:{env['APS_COMPOSE_MINIO_PORT']}",
        access,
        secret,
        secure=False,
        region="us-east-1",
    )


def test_trino_reaches_aps_as_the_stage_writer(deployment: dict[str, Any]) -> None:
    env = deployment["env"]
    trino = _environ(deployment["env_file"], "trino")
    assert trino["APS_APS_STAGE_WRITER_PASSWORD"] == env["APS_APS_STAGE_WRITER_PASSWORD"]
    assert env["APS_APS_LOADER_PASSWORD"] not in "\n".join(trino.values())

    letters = "".join(secrets.choice(string.ascii_lowercase) for _ in range(10))
    stage, own = f"acl_{letters}", f"acl_{letters}_own"
    output, dimension = f"acl_out_{letters}", f"aps_dim_acl_{letters}"
    loader = _pg(env, "APS_LOADER")
    writer = None
    try:
        with loader.cursor() as cur:
            cur.execute("CREATE SCHEMA IF NOT EXISTS aps_stage")
            cur.execute(f"CREATE TABLE aps_stage.{stage} (a integer)")
            cur.execute(f"CREATE TABLE public.{output} (a integer)")
            cur.execute(f"CREATE TABLE public.{dimension} AS SELECT 1 AS a")
        writer = _pg(env, "APS_STAGE_WRITER")
        with writer.cursor() as cur:
            cur.execute(f"INSERT INTO aps_stage.{stage} VALUES (1)")
            cur.execute(f"SELECT a FROM public.{dimension}")  # granted by the event trigger
            assert cur.fetchall() == [(1,)]
            cur.execute(f"CREATE TABLE aps_stage.{own} (a integer)")
        for statement in (
            f"CREATE TABLE public.acl_new_{letters} (a integer)",
            f"DROP TABLE public.{output}",
            f"DROP TABLE public.{dimension}",
            f"SELECT * FROM public.{output}",
            f"DELETE FROM public.{dimension}",
            f"DROP TABLE aps_stage.{stage}",
        ):
            with writer.cursor() as cur, pytest.raises(psycopg2.Error) as error:
                cur.execute(statement)
            assert "permission denied" in str(error.value) or "must be owner" in str(error.value)
        with loader.cursor() as cur:  # the loader clears what the writer left
            cur.execute(f"DROP TABLE aps_stage.{own}")
        for database in ("mes", "dagster"):
            with pytest.raises(psycopg2.OperationalError, match="permission denied"):
                _pg(env, "APS_STAGE_WRITER", database)
    finally:
        if writer is not None:
            writer.close()
        with loader.cursor() as cur:
            for name in (f"aps_stage.{stage}", f"aps_stage.{own}"):
                cur.execute(f"DROP TABLE IF EXISTS {name}")
            for name in (output, dimension):
                cur.execute(f"DROP TABLE IF EXISTS public.{name}")
        loader.close()


def test_minio_keeps_the_extracts_and_the_logs_apart(deployment: dict[str, Any]) -> None:
    env, init = deployment["env"], minio_init()
    lake, logs = init.LAKE_BUCKET, init.LOGS_BUCKET
    root = _minio(env, env["APS_MINIO_ROOT_USER"], env["APS_MINIO_ROOT_PASSWORD"])
    pipeline = _minio(env, env["APS_S3_ACCESS_KEY"], env["APS_S3_SECRET_KEY"])
    trino = _minio(env, env["APS_TRINO_S3_ACCESS_KEY"], env["APS_TRINO_S3_SECRET_KEY"])
    reader = _minio(env, env["APS_LOGS_S3_ACCESS_KEY"], env["APS_LOGS_S3_SECRET_KEY"])
    tag = uuid.uuid4().hex[:8]

    # extracts: versioned, never deleted by the pipeline, an overwrite keeps the earlier one
    config = root.get_bucket_versioning(lake)
    assert config.status == "Enabled"
    assert sorted(config.excluded_prefixes or []) == sorted(init.UNVERSIONED)
    extract = f"extract/job_name=acl_test_{tag}/date=2026-11-20/t/data.parquet"
    try:
        first = pipeline.put_object(lake, extract, io.BytesIO(b"first"), 5).version_id
        pipeline.put_object(lake, extract, io.BytesIO(b"second"), 6)
        for version in (None, first):
            with pytest.raises(S3Error, match=DENIED):
                pipeline.remove_object(lake, extract, version_id=version)
        assert root.get_object(lake, extract, version_id=first).read() == b"first"
    finally:
        for item in root.list_objects(lake, prefix=extract, include_version=True):
            root.remove_object(lake, item.object_name, version_id=item.version_id)

    # the compute logs: written by the runs' user, read by the webserver's, not by Trino's
    log = f"{init.LOGS_PREFIX}storage/acl-{tag}/step.err"
    pipeline.put_object(logs, log, io.BytesIO(b"stderr"), 6)
    try:
        assert reader.get_object(logs, log).read() == b"stderr"
        for attempt in (
            lambda: reader.put_object(logs, log, io.BytesIO(b"x"), 1),
            lambda: reader.remove_object(logs, log),
            lambda: list(reader.list_objects(lake)),
            lambda: list(trino.list_objects(logs)),
            lambda: trino.get_object(logs, log),
        ):
            with pytest.raises(S3Error, match=DENIED):
                attempt()
    finally:
        root.remove_object(logs, log)

    # and the webserver holds the logs reader's keys, none of the lake's
    web = _environ(deployment["env_file"], "webserver")
    assert web["AWS_ACCESS_KEY_ID"] == env["APS_LOGS_S3_ACCESS_KEY"]
    everything = "\n".join(web.values())
    for name in ("APS_S3_SECRET_KEY", "APS_TRINO_S3_SECRET_KEY", "APS_MINIO_ROOT_PASSWORD"):
        assert env[name] not in everything, f"the webserver holds {name}"
