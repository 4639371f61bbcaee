"""Least privilege for the lake and Trino, on the dev stack (issue 27):

- Trino's `aps` catalog connects as the stage writer, not as `aps_loader` (the owner of
  `aps`): it fills and makes stage tables, reads the master dimensions, nothing else;
- the pipeline reads and writes the lake as a MinIO user of its own, not MinIO's root;
- the store keeps the extracts: the pipeline's keys cannot delete one, and an extract
  overwritten keeps its earlier version (bucket versioning under extract/ only);
- compose's MinIO setup (infra/docker/minio-init.py), run here against the dev stack's
  MinIO: the compute logs in a bucket of their own, read by a read-only user, written by
  the pipeline's, out of Trino's reach.
"""

from __future__ import annotations

import contextlib
import io
import json
import secrets
import string
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg2
import pytest
import s3fs
from minio import Minio, MinioAdmin
from minio.credentials import StaticProvider
from minio.error import MinioAdminException, S3Error

from aps_etl.env.stack import (
    REPO_ROOT,
    parse_env_file,
    postgres_uri,
    stack_env_file,
    stack_home,
    trino_settings,
)
from aps_etl.lib.warehouse.target import STAGE_SCHEMA
from aps_etl.lib.warehouse.trino import TrinoError, TrinoResource

if str(REPO_ROOT / "infra") not in sys.path:
    sys.path.insert(0, str(REPO_ROOT / "infra"))

from dev_stack.minio import minio_init  # noqa: E402

pytestmark = pytest.mark.stack

PIPELINE_POLICY = REPO_ROOT / "infra" / "docker" / "lake-pipeline-policy.json"
DAGSTER_YAML = REPO_ROOT / "infra" / "docker" / "dagster.yaml"


def _pg(settings: dict[str, str], role: str, database: str = "aps") -> Any:
    conn = psycopg2.connect(postgres_uri(settings, database, role))
    conn.autocommit = True
    return conn


def _refused(conn: Any, statement: str) -> str:
    with conn.cursor() as cur, pytest.raises(psycopg2.Error) as error:
        cur.execute(statement)
    return str(error.value)


def _letters() -> str:
    return "".join(secrets.choice(string.ascii_lowercase) for _ in range(10))


def _environ(pid_file: Path) -> dict[bytes, bytes]:
    raw = Path(f"/proc/{pid_file.read_text().split()[0]}/environ").read_bytes()
    return dict(v.split(b"=", 1) for v in raw.split(b"\0") if b"=" in v)


# ------------------------------------------------------------------ Trino's stage writer


def test_trino_writes_aps_as_the_stage_writer(stack_settings: dict[str, str]) -> None:
    """The stages Trino fills are bounded by PostgreSQL's grants to the stage writer, not
    only by Trino's rules (which let its user write any stage): a stage the loader withholds
    is refused by PostgreSQL. Trino's processes hold the stage writer's password, never the
    loader's."""
    tag = uuid.uuid4().hex[:8]
    stage, withheld = f"acl_{tag}", f"acl_{tag}_withheld"
    # made after the setup, readable all the same; letters only (infra/trino/rules.json)
    dimension = f"aps_dim_acl_{_letters()}"
    writer = stack_settings["APS_APS_STAGE_WRITER_USER"]
    loader = _pg(stack_settings, "aps_loader")
    trino = TrinoResource(**trino_settings(stack_settings))
    try:
        with loader.cursor() as cur:
            cur.execute(f"CREATE SCHEMA IF NOT EXISTS {STAGE_SCHEMA}")
            for name in (stage, withheld):
                cur.execute(f"CREATE TABLE {STAGE_SCHEMA}.{name} (a integer)")
            cur.execute(f'REVOKE ALL ON {STAGE_SCHEMA}.{withheld} FROM "{writer}"')
            cur.execute(f"CREATE TABLE public.{dimension} (a integer)")
            cur.execute(f"INSERT INTO public.{dimension} VALUES (1), (2)")
        # Trino's transactional INSERT: a temporary table of its own in the stage schema,
        # made, copied from and dropped by the stage writer
        assert trino.execute(f"INSERT INTO aps.{STAGE_SCHEMA}.{stage} VALUES 1") == [[1]]
        # the loads' INSERT: straight into the stage
        direct = {"aps.non_transactional_insert": "true"}
        assert trino.execute(
            f"INSERT INTO aps.{STAGE_SCHEMA}.{stage} VALUES 2", session_properties=direct
        ) == [[1]]
        # the merge's comparison reads the master dimensions
        assert trino.execute(f"SELECT count(*) FROM aps.public.{dimension}") == [[2]]
        for session in (None, direct):
            with pytest.raises(TrinoError, match="permission denied"):
                trino.execute(
                    f"INSERT INTO aps.{STAGE_SCHEMA}.{withheld} VALUES 1",
                    session_properties=session,
                )
        # through Trino, neither a table in public nor dropping an output table
        for statement in (
            f"CREATE TABLE aps.public.acl_new_{tag} (a integer)",
            f"DROP TABLE aps.public.{dimension}",
        ):
            with pytest.raises(TrinoError, match="Access Denied"):
                trino.execute(statement)
        with loader.cursor() as cur:
            cur.execute(f"SELECT a FROM {STAGE_SCHEMA}.{stage} ORDER BY a")
            assert cur.fetchall() == [(1,), (2,)]
            cur.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = %s AND tableowner = %s",
                (STAGE_SCHEMA, writer),
            )
            assert cur.fetchall() == [], "Trino left a temporary table behind"
    finally:
        with loader.cursor() as cur:
            for name in (f"{STAGE_SCHEMA}.{stage}", f"{STAGE_SCHEMA}.{withheld}"):
                cur.execute(f"DROP TABLE IF EXISTS {name}")
            cur.execute(f"DROP TABLE IF EXISTS public.{dimension}")
        loader.close()
    pid_files = list(stack_home().glob("trino/**/trino.pid"))
    assert pid_files
    for pid_file in pid_files:
        environ = _environ(pid_file)
        writer_password = stack_settings["APS_APS_STAGE_WRITER_PASSWORD"]
        assert environ[b"APS_APS_STAGE_WRITER_PASSWORD"].decode() == writer_password
        loader_password = stack_settings["APS_APS_LOADER_PASSWORD"].encode()
        assert not [v for v in environ.values() if loader_password in v], pid_file


def test_the_stage_writer_role_writes_the_stages_and_reads_the_dimensions_only(
    stack_settings: dict[str, str],
) -> None:
    """What the role itself may do in PostgreSQL, whoever connects as it; and the loader
    may still read and drop the tables it leaves in the stages."""
    tag = uuid.uuid4().hex[:8]
    stage, own, output = f"acl_{tag}", f"acl_{tag}_own", f"acl_out_{tag}"
    dimension = f"aps_dim_acl_{tag}"
    loader = _pg(stack_settings, "aps_loader")
    writer = None
    try:
        with loader.cursor() as cur:
            cur.execute(f"CREATE SCHEMA IF NOT EXISTS {STAGE_SCHEMA}")
            cur.execute(f"CREATE TABLE {STAGE_SCHEMA}.{stage} (a integer)")
            cur.execute(f"CREATE TABLE public.{output} (a integer)")
            cur.execute(f"CREATE TABLE public.{dimension} AS SELECT 1 AS a")
        writer = _pg(stack_settings, "aps_stage_writer")
        with writer.cursor() as cur:
            # the loader's stage: filled, read, changed
            cur.execute(f"INSERT INTO {STAGE_SCHEMA}.{stage} VALUES (1), (2)")
            cur.execute(f"UPDATE {STAGE_SCHEMA}.{stage} SET a = 3 WHERE a = 2")
            cur.execute(f"DELETE FROM {STAGE_SCHEMA}.{stage} WHERE a = 1")
            cur.execute(f"SELECT a FROM {STAGE_SCHEMA}.{stage}")
            assert cur.fetchall() == [(3,)]
            # a table of its own in the stage schema: made, filled, dropped
            cur.execute(f"CREATE TABLE {STAGE_SCHEMA}.{own}_gone (a integer)")
            cur.execute(f"INSERT INTO {STAGE_SCHEMA}.{own}_gone VALUES (1)")
            cur.execute(f"DROP TABLE {STAGE_SCHEMA}.{own}_gone")
            # the master dimensions, read only
            cur.execute(f"SELECT a FROM public.{dimension}")
            assert cur.fetchall() == [(1,)]
        for statement in (
            f"CREATE TABLE public.acl_new_{tag} (a integer)",
            f"DROP TABLE public.{output}",
            f"DROP TABLE public.{dimension}",
            f"SELECT * FROM public.{output}",
            f"INSERT INTO public.{output} VALUES (1)",
            f"INSERT INTO public.{dimension} VALUES (2)",
            f"DELETE FROM public.{dimension}",
            f"TRUNCATE public.{dimension}",
            f"DROP TABLE {STAGE_SCHEMA}.{stage}",  # the loader's: not its own
            f"ALTER TABLE {STAGE_SCHEMA}.{stage} SET SCHEMA public",
            "SELECT * FROM public.aps_load_log",
            f"CREATE SCHEMA acl_{tag}",
            f"CREATE TEMP TABLE acl_{tag} (a integer)",
        ):
            message = _refused(writer, statement)
            assert "permission denied" in message or "must be owner" in message, statement
        with writer.cursor() as cur:  # a leftover, as a killed Trino insert leaves one
            cur.execute(f"CREATE TABLE {STAGE_SCHEMA}.{own} (a integer)")
            cur.execute(f"INSERT INTO {STAGE_SCHEMA}.{own} VALUES (7)")
        with loader.cursor() as cur:
            cur.execute(f"SELECT a FROM {STAGE_SCHEMA}.{own}")
            assert cur.fetchall() == [(7,)]
            cur.execute(f"DROP TABLE {STAGE_SCHEMA}.{own}")
        for database in ("mes", "dagster"):
            with pytest.raises(psycopg2.OperationalError, match="permission denied"):
                psycopg2.connect(postgres_uri(stack_settings, database, "aps_stage_writer"))
    finally:
        if writer is not None:
            writer.close()
        with loader.cursor() as cur:
            for name in (f"{STAGE_SCHEMA}.{stage}", f"{STAGE_SCHEMA}.{own}"):
                cur.execute(f"DROP TABLE IF EXISTS {name}")
            for name in (output, dimension):
                cur.execute(f"DROP TABLE IF EXISTS public.{name}")
        loader.close()


# ------------------------------------------------------------------ MinIO's users


def _root() -> tuple[str, str]:
    """MinIO's root keys, kept in the stack's state for MinIO and its setup only."""
    values = parse_env_file(stack_home() / "minio" / "root.env")
    return values["APS_MINIO_ROOT_USER"], values["APS_MINIO_ROOT_PASSWORD"]


def _endpoint(settings: dict[str, str]) -> str:
    return settings["APS_S3_ENDPOINT"].removeprefix("http://")


def _client(settings: dict[str, str], access: str, secret: str) -> Minio:
    return Minio(
        _endpoint(settings), access, secret, secure=False, region=settings["APS_S3_REGION"]
    )


def _admin(settings: dict[str, str], access: str, secret: str) -> MinioAdmin:
    return MinioAdmin(
        endpoint=_endpoint(settings), credentials=StaticProvider(access, secret), secure=False
    )


def test_the_pipeline_uses_a_minio_user_of_its_own(stack_settings: dict[str, str]) -> None:
    """The pipeline's keys (stack.env) are a user with compose's pipeline policy; MinIO's
    root keys stay in the stack's state, out of stack.env and of the pipeline's reach."""
    root_user, root_password = _root()
    access, secret = stack_settings["APS_S3_ACCESS_KEY"], stack_settings["APS_S3_SECRET_KEY"]
    assert access != root_user
    stack_env = stack_env_file().read_text()
    assert root_user not in stack_env and root_password not in stack_env
    # the root's view: the user and its policy, the one compose's pipeline gets
    admin = _admin(stack_settings, root_user, root_password)
    assert json.loads(admin.user_info(access))["policyName"] == "aps-lake-pipeline"
    policy = json.loads(admin.policy_info("aps-lake-pipeline"))
    assert _statements(policy.get("Policy", policy)) == _statements(
        json.loads(PIPELINE_POLICY.read_text())
    )
    # the pipeline's keys: no administration, no other bucket
    with pytest.raises(MinioAdminException):
        _admin(stack_settings, access, secret).user_list()
    pipeline = _client(stack_settings, access, secret)
    with pytest.raises(S3Error, match="AccessDenied|Access Denied"):
        pipeline.make_bucket(f"acl-test-{uuid.uuid4().hex[:8]}")
    with pytest.raises(S3Error, match="AccessDenied|Access Denied"):
        pipeline.set_bucket_versioning(stack_settings["APS_S3_BUCKET"], _suspended())
    # MinIO itself runs with the root keys
    environ = _environ(stack_home() / "minio" / "minio.pid")
    assert environ[b"MINIO_ROOT_USER"].decode() == root_user


def _statements(policy: dict[str, Any]) -> set[tuple[str, frozenset[str], frozenset[str]]]:
    """A policy's statements, as MinIO may hand them back (order, single values)."""

    def values(value: str | list[str]) -> frozenset[str]:
        return frozenset([value] if isinstance(value, str) else value)

    return {(s["Effect"], values(s["Action"]), values(s["Resource"])) for s in policy["Statement"]}


def _suspended() -> Any:
    from minio.versioningconfig import SUSPENDED, VersioningConfig

    return VersioningConfig(SUSPENDED)


@pytest.fixture
def extract_key(stack_settings: dict[str, str]) -> Iterator[str]:
    """A key under the lake's extract/ prefix; every version of it removed afterwards, as
    only MinIO's root can."""
    key = f"extract/job_name=acl_test_{uuid.uuid4().hex[:8]}/date=2026-11-21/t/data.parquet"
    yield key
    root = _client(stack_settings, *_root())
    bucket = stack_settings["APS_S3_BUCKET"]
    for item in root.list_objects(bucket, prefix=key, include_version=True):
        root.remove_object(bucket, item.object_name, version_id=item.version_id)


def test_the_store_keeps_every_extract(stack_settings: dict[str, str], extract_key: str) -> None:
    bucket = stack_settings["APS_S3_BUCKET"]
    access, secret = stack_settings["APS_S3_ACCESS_KEY"], stack_settings["APS_S3_SECRET_KEY"]
    root = _client(stack_settings, *_root())
    config = root.get_bucket_versioning(bucket)
    assert config.status == "Enabled"
    assert {"transform/", "_trino_metastore/", "tests/"} <= set(config.excluded_prefixes or [])
    assert not [p for p in config.excluded_prefixes or [] if "extract/".startswith(p)]

    fs = s3fs.S3FileSystem(
        key=access,
        secret=secret,
        endpoint_url=stack_settings["APS_S3_ENDPOINT"],
        skip_instance_cache=True,
        use_listings_cache=False,
    )
    path = f"{bucket}/{extract_key}"
    fs.pipe_file(path, b"first", mode="create")  # as the code publishes an extract
    first = root.stat_object(bucket, extract_key).version_id
    assert first and first != "null"
    # the code's write-once guard still holds on a versioned bucket
    with pytest.raises(OSError, match="(?i)pre-?condition"):
        fs.pipe_file(path, b"again", mode="create")
    fs.pipe_file(path, b"second")  # an overwrite by hand, with the pipeline's keys
    pipeline = _client(stack_settings, access, secret)
    for version in (None, first):
        with pytest.raises(S3Error, match="AccessDenied|Access Denied"):
            pipeline.remove_object(bucket, extract_key, version_id=version)
    with contextlib.suppress(PermissionError, OSError):  # s3fs's bulk delete may not raise
        fs.rm(path)
    assert fs.cat_file(path) == b"second"
    # the earlier version, for whoever administers the store
    versions = list(root.list_objects(bucket, prefix=extract_key, include_version=True))
    assert len(versions) == 2 and not any(v.is_delete_marker for v in versions)
    response = root.get_object(bucket, extract_key, version_id=first)
    try:
        assert response.read() == b"first"
    finally:
        response.close()
        response.release_conn()


def test_outside_extracts_the_lake_is_not_versioned(stack_settings: dict[str, str]) -> None:
    """Transforms, Trino's metastore and the tests' corners are overwritten and deleted in
    place: no version piles up behind them."""
    bucket = stack_settings["APS_S3_BUCKET"]
    pipeline = _client(
        stack_settings, stack_settings["APS_S3_ACCESS_KEY"], stack_settings["APS_S3_SECRET_KEY"]
    )
    root = _client(stack_settings, *_root())
    key = f"tests/acl-{uuid.uuid4().hex[:8]}/transform/t/data.parquet"
    for body in (b"one", b"two"):
        pipeline.put_object(bucket, key, io.BytesIO(body), len(body))
    pipeline.remove_object(bucket, key)
    assert list(root.list_objects(bucket, prefix=key, include_version=True)) == []


# ------------------------------------------------------------------ compose's minio-init


@pytest.fixture
def compose_minio(stack_settings: dict[str, str], tmp_path: Path) -> Iterator[dict[str, Any]]:
    """compose's MinIO setup run against the dev stack's MinIO, with users (and keys) of
    the test's own; a compute log an earlier version kept in the lake, planted first. The
    users, the objects and (if it made it) the logs' bucket removed afterwards."""
    init = minio_init()  # infra/docker/minio-init.py
    tag = uuid.uuid4().hex[:8]
    env = {
        name: f"acl{tag}{name.split('_')[1].lower()}" if name.endswith("ACCESS_KEY")
        else secrets.token_urlsafe(18)
        for name in (
            "APS_S3_ACCESS_KEY", "APS_S3_SECRET_KEY",
            "APS_TRINO_S3_ACCESS_KEY", "APS_TRINO_S3_SECRET_KEY",
            "APS_LOGS_S3_ACCESS_KEY", "APS_LOGS_S3_SECRET_KEY",
        )
    }  # fmt: skip
    # compose mounts the three policies in one folder
    policies = tmp_path / "policies"
    policies.mkdir()
    for name, source in (
        ("lake-pipeline-policy.json", PIPELINE_POLICY),
        ("lake-reader-policy.json", REPO_ROOT / "infra" / "trino" / "lake-reader-policy.json"),
        ("logs-reader-policy.json", REPO_ROOT / "infra" / "docker" / "logs-reader-policy.json"),
    ):
        (policies / name).symlink_to(source)
    users = init.compose_users(env, policies)
    root_keys = _root()
    root = _client(stack_settings, *root_keys)
    lake, logs = init.LAKE_BUCKET, init.LOGS_BUCKET
    had_logs_bucket = root.bucket_exists(logs)
    old_log = f"{init.OLD_LOGS_PREFIX}storage/acl-{tag}/step.out"
    root.put_object(lake, old_log, io.BytesIO(b"step output"), 11)
    try:
        for _ in range(2):  # idempotent
            init.setup(_endpoint(stack_settings), *root_keys, users, logs_bucket=True)

        def client(kind: str) -> Minio:
            keys = env[f"APS_{kind}_ACCESS_KEY"], env[f"APS_{kind}_SECRET_KEY"]
            return _client(stack_settings, *keys)

        yield {
            "init": init,
            "env": env,
            "tag": tag,
            "root": root,
            "old_log": old_log,
            "pipeline": client("S3"),
            "trino": client("TRINO_S3"),
            "reader": client("LOGS_S3"),
        }
    finally:
        admin = _admin(stack_settings, *root_keys)
        for user in users:
            with contextlib.suppress(MinioAdminException):  # not made: setup failed first
                admin.user_remove(user.access_key)
        root.remove_object(lake, old_log)
        if root.bucket_exists(logs):
            prefix = f"{init.LOGS_PREFIX}storage/acl-{tag}"
            for item in root.list_objects(logs, prefix=prefix, recursive=True):
                root.remove_object(logs, item.object_name)
            if not had_logs_bucket and not list(root.list_objects(logs, recursive=True)):
                root.remove_bucket(logs)


def test_minio_init_keeps_the_compute_logs_apart_for_a_read_only_user(
    compose_minio: dict[str, Any], stack_settings: dict[str, str]
) -> None:
    """The logs' bucket: written by the pipeline's user, read by the webserver's, never
    reached by Trino's; the logs an earlier version kept in the lake moved there."""
    init, root, tag = compose_minio["init"], compose_minio["root"], compose_minio["tag"]
    pipeline, trino, reader = (compose_minio[k] for k in ("pipeline", "trino", "reader"))
    lake, logs = init.LAKE_BUCKET, init.LOGS_BUCKET
    assert lake == stack_settings["APS_S3_BUCKET"]
    moved = f"{init.LOGS_PREFIX}storage/acl-{tag}/step.out"
    written = f"{init.LOGS_PREFIX}storage/acl-{tag}/written.err"
    assert root.get_object(logs, moved).read() == b"step output"
    assert not list(root.list_objects(lake, prefix=compose_minio["old_log"]))
    pipeline.put_object(logs, written, io.BytesIO(b"stderr"), 6)  # a run's upload
    assert reader.get_object(logs, written).read() == b"stderr"
    listed = reader.list_objects(logs, prefix=init.LOGS_PREFIX, recursive=True)
    assert {moved, written} <= {o.object_name for o in listed}
    for attempt in (
        lambda: reader.put_object(logs, written, io.BytesIO(b"x"), 1),
        lambda: reader.remove_object(logs, written),
        lambda: reader.get_object(lake, "anything"),
        lambda: list(reader.list_objects(lake)),
        lambda: list(trino.list_objects(logs)),
        lambda: trino.get_object(logs, written),
        lambda: pipeline.remove_object(logs, written),  # logs are kept
    ):
        with pytest.raises(S3Error, match="AccessDenied|Access Denied"):
            attempt()


def _compute_log_manager(
    settings: dict[str, str], keys: tuple[str, str], local: Path, monkeypatch: pytest.MonkeyPatch
) -> Any:
    """Dagster's compute log manager as infra/docker/dagster.yaml configures it, with these
    keys in the environment (as compose gives them: AWS_ACCESS_KEY_ID, ...) and its local
    copies in `local` (each container has its own)."""
    import yaml
    from dagster_aws.s3.compute_log_manager import S3ComputeLogManager

    section = yaml.safe_load(DAGSTER_YAML.read_text())["compute_logs"]
    assert section["class"] == "S3ComputeLogManager"
    names = {"APS_S3_ENDPOINT": settings["APS_S3_ENDPOINT"], "APS_S3_REGION": "us-east-1"}
    config = {
        key: names[value["env"]] if isinstance(value, dict) else value
        for key, value in section["config"].items()
    }
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", keys[0])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", keys[1])
    return S3ComputeLogManager(**config, local_dir=str(local))


def test_a_runs_compute_logs_reach_the_webserver_through_the_read_only_user(
    compose_minio: dict[str, Any],
    stack_settings: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """compose's compute log manager (infra/docker/dagster.yaml): a run uploads its step's
    output with the pipeline's keys; the webserver finds and reads it with the logs
    reader's, which may do nothing else."""
    from dagster._core.storage.compute_log_manager import ComputeIOType

    env, tag = compose_minio["env"], compose_minio["tag"]
    log_key = [f"acl-{tag}", "compute_logs", "step"]  # under storage/acl-{tag}/
    run = _compute_log_manager(
        stack_settings,
        (env["APS_S3_ACCESS_KEY"], env["APS_S3_SECRET_KEY"]),
        tmp_path / "run",
        monkeypatch,
    )
    with run.open_log_stream(log_key, ComputeIOType.STDOUT) as stream:
        assert stream is not None
        stream.write("step says hello\n")
    web = _compute_log_manager(
        stack_settings,
        (env["APS_LOGS_S3_ACCESS_KEY"], env["APS_LOGS_S3_SECRET_KEY"]),
        tmp_path / "web",
        monkeypatch,
    )
    assert web.is_capture_complete(log_key)
    data, _ = web.get_log_data_for_type(log_key, ComputeIOType.STDOUT, 0, None)
    assert data == b"step says hello\n"
