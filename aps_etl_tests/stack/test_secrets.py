"""No secret leaks: the real daily job on the dev stack, then everything it left behind is
searched for every secret value of the stack (each *_PASSWORD / *_SECRET_KEY / *_ACCESS_KEY
of stack.env):

- the run's event log through the instance (every record, `all_logs`, serialized), its run
  record, job and execution-plan snapshots, and asset materialization metadata;
- the same rows read straight from the `dagster` database (runs, run_tags, event_logs,
  asset_keys, asset_event_tags, asset_check_executions, snapshots decompressed);
- every file under the run's $DAGSTER_HOME (captured compute logs included);
- every object the run wrote under its lake prefix (bytes, and the Parquet footers'
  key-value and schema metadata and statistics) and its tables in Trino's file metastore;
- the process's output: stdout/stderr at the file-descriptor level and every logging
  record, all loggers at DEBUG;
- the stack's log files (.stack/**/*log*, rotated ones included).

A self-check plants a known secret in each of these channels and proves the scanner finds
it there; a failing run with a known wrong source password proves that password appears in
none of them either. Failures name the place and the variable, never the value.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import logging
import os
import re
import secrets
import shutil
import uuid
import zlib
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

import dagster as dg
import psycopg2
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from dagster._serdes import serialize_value

from aps_etl.devdata import seed_source
from aps_etl.env.settings import resources_for
from aps_etl.env.stack import REPO_ROOT, export_stack_env, postgres_uri, stack_home, trino_settings
from aps_etl.lib.sources.database import SourceDatabase
from aps_etl.lib.warehouse.lake_catalog import drop_lake_schemas
from aps_etl.lib.warehouse.trino import TrinoResource
from aps_etl_tests.pipeline_harness import run_daily, step_failures

pytestmark = pytest.mark.stack

REPO = REPO_ROOT
DEV_YAML = REPO / "infra" / "dagster-dev.yaml"
SECRET_SUFFIXES = ("_PASSWORD", "_SECRET_KEY", "_ACCESS_KEY")
# The same plant as test_job_dev_stack, so seeding here never changes what it checks.
SEED = {"start_date": dt.date(2026, 11, 20), "days": 3, "lots": 1200, "seed": 7}
# Every channel a run can leave a secret in (see the module doc).
RUN_CHANNELS = {
    "event log",
    "event records",
    "materialization metadata",
    "run record",
    "snapshots",
    "dagster db",
    "dagster home",
    "compute logs",
    "process output",
}


class PasswordProbe(dg.ConfigurableResource):
    password: str | None = None


def stack_secrets(settings: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in settings.items() if k.endswith(SECRET_SUFFIXES) and v}


class Scanner:
    """Finds secret values (as they are, or URL-encoded) in text and bytes. Findings are
    (place, variable name): a value is never kept in a message."""

    def __init__(self, named_secrets: Mapping[str, str]) -> None:
        self.needles = {
            name: {value.encode(), quote(value, safe="").encode()}
            for name, value in named_secrets.items()
        }
        self.scanned: Counter[str] = Counter()  # channel -> pieces looked at
        self.found: set[tuple[str, str]] = set()

    def scan(self, channel: str, where: str, data: str | bytes | memoryview) -> None:
        blob = data.encode("utf-8", "surrogateescape") if isinstance(data, str) else bytes(data)
        self.scanned[channel] += 1
        for name, forms in self.needles.items():
            if any(form in blob for form in forms):
                self.found.add((f"{channel}: {where}", name))

    def channels_with(self, name: str) -> set[str]:
        return {where.split(":", 1)[0] for where, found in self.found if found == name}

    def report(self) -> str:
        return "\n".join(f"  {name} in {where}" for where, name in sorted(self.found))


# ---------------------------------------------------------------- what is scanned


def scan_run(scanner: Scanner, instance: dg.DagsterInstance, run_id: str, db_uri: str) -> None:
    """The run as the instance gives it, and its rows in the `dagster` database."""
    for entry in instance.all_logs(run_id):
        scanner.scan("event log", entry.dagster_event_type or "log message", serialize_value(entry))
        scanner.scan("event log", "message", entry.user_message or "")
    for record in instance.get_records_for_run(run_id).records:
        where = f"storage id {record.storage_id}"
        scanner.scan("event records", where, serialize_value(record.event_log_entry))
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION):
        materialization = entry.asset_materialization
        assert materialization is not None
        where = materialization.asset_key.to_user_string()
        scanner.scan("materialization metadata", where, serialize_value(materialization))
        for label, value in materialization.metadata.items():
            scanner.scan("materialization metadata", f"{where} {label}", repr(value))
    run = instance.get_run_by_id(run_id)
    assert run is not None
    scanner.scan("run record", "run", serialize_value(run))
    if run.job_snapshot_id:
        snapshot = instance.get_job_snapshot(run.job_snapshot_id)
        scanner.scan("snapshots", "job snapshot", serialize_value(snapshot))
    if run.execution_plan_snapshot_id:
        plan = instance.get_execution_plan_snapshot(run.execution_plan_snapshot_id)
        scanner.scan("snapshots", "execution plan snapshot", serialize_value(plan))
    queries = {
        "runs": "SELECT * FROM runs WHERE run_id = %(run)s",
        "run_tags": "SELECT * FROM run_tags WHERE run_id = %(run)s",
        "event_logs": "SELECT * FROM event_logs WHERE run_id = %(run)s",
        "asset_keys": "SELECT * FROM asset_keys WHERE last_run_id = %(run)s",
        "asset_event_tags": "SELECT t.* FROM asset_event_tags t"
        " JOIN event_logs e ON e.id = t.event_id WHERE e.run_id = %(run)s",
        "asset_check_executions": "SELECT * FROM asset_check_executions WHERE run_id = %(run)s",
        "snapshots": "SELECT * FROM snapshots WHERE snapshot_id IN (%(job)s, %(plan)s)",
    }
    params = {
        "run": run_id,
        "job": run.job_snapshot_id or "",
        "plan": run.execution_plan_snapshot_id or "",
    }
    db = psycopg2.connect(db_uri)  # as the role `dagster`
    try:
        cur = db.cursor()
        for table, sql in queries.items():
            cur.execute(sql, params)
            for row in cur.fetchall():
                for value in row:
                    _scan_value(scanner, "dagster db", table, value)
    finally:
        db.close()


def _scan_value(scanner: Scanner, channel: str, where: str, value: Any) -> None:
    if isinstance(value, memoryview | bytes):
        data = bytes(value)
        scanner.scan(channel, where, data)
        with contextlib.suppress(zlib.error):  # snapshot bodies are zlib-compressed JSON
            scanner.scan(channel, f"{where} (decompressed)", zlib.decompress(data))
    elif value is not None:
        scanner.scan(channel, where, str(value))


def scan_tree(scanner: Scanner, channel: str, root: Path) -> list[Path]:
    """Every file under `root`; returns them."""
    files = sorted(p for p in root.rglob("*") if p.is_file())
    for path in files:
        data = path.read_bytes()
        scanner.scan(channel, str(path.relative_to(root)), data)
        if "compute_logs" in path.parts:
            scanner.scan("compute logs", path.name, data)
    return files


def scan_lake(scanner: Scanner, fs: Any, prefix: str) -> list[str]:
    """Every object under `prefix` (bucket/path): its bytes, and for Parquet the footer's
    key-value metadata, Arrow schema metadata and column statistics. Returns the objects."""
    objects = sorted(fs.find(prefix)) if fs.exists(prefix) else []
    for path in objects:
        data = fs.cat_file(path)
        scanner.scan("lake", path, data)
        if path.endswith(".parquet"):
            meta = pq.read_metadata(io.BytesIO(data))
            scanner.scan("lake", f"{path} footer", repr(meta.metadata))
            scanner.scan("lake", f"{path} schema", repr(meta.schema.to_arrow_schema().metadata))
            for group in range(meta.num_row_groups):
                row_group = meta.row_group(group)
                for column in range(row_group.num_columns):
                    stats = row_group.column(column).statistics
                    scanner.scan("lake", f"{path} statistics", repr(stats and stats.to_dict()))
    return objects


def scan_stack_logs(scanner: Scanner, home: Path) -> list[Path]:
    """The stack's log files, rotated ones included; data folders are not logs."""
    skip = ("postgres/data/base", "pg_wal", "minio/data", "mariadb/data")
    logs = [
        p
        for p in sorted(home.rglob("*"))
        if "log" in p.name and p.is_file() and not any(s in str(p) for s in skip)
    ]
    for path in logs:
        scanner.scan("stack logs", str(path.relative_to(home)), path.read_bytes())
    return logs


class _Records(logging.Handler):
    """Every record as (where: logger and level, text: formatted with its traceback)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[tuple[str, str]] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        where = f"logger {record.name} {record.levelname}"
        try:
            self.records.append((where, self.format(record)))
        except Exception:  # a record that cannot format is still text we must see
            self.records.append((where, f"{record.msg!r} {record.args!r}"))


@pytest.fixture
def process_output(capfd: pytest.CaptureFixture[str]) -> Iterator[Any]:
    """Everything the process prints (fd 1 and 2) and logs (every logger, DEBUG up), as
    `read(scanner)` scans it."""
    from _pytest.logging import LogCaptureHandler

    handler = _Records()
    root = logging.getLogger()
    level = root.level
    # pytest would print a failing test's captured records in its report, a leaked value
    # with them: here the scanner reads them instead.
    muted = {h: h.level for h in root.handlers if isinstance(h, LogCaptureHandler)}
    for h in muted:
        h.setLevel(logging.CRITICAL + 1)
    root.handlers.insert(0, handler)
    root.setLevel(logging.DEBUG)

    def read(scanner: Scanner) -> None:
        out, err = capfd.readouterr()
        for where, text in [("stdout", out), ("stderr", err), *handler.records]:
            scanner.scan("process output", where, text)
        handler.records.clear()

    try:
        yield read
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        for h, was in muted.items():
            h.setLevel(was)


# ---------------------------------------------------------------- fixtures


@pytest.fixture
def dev_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stack_settings) -> Iterator[Path]:
    """$DAGSTER_HOME with infra/dagster-dev.yaml, the stack's variables in os.environ
    (restored afterwards)."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copyfile(DEV_YAML, home / "dagster.yaml")
    saved = dict(os.environ)
    export_stack_env()
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    try:
        yield home
    finally:
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture
def isolated_run(monkeypatch: pytest.MonkeyPatch, stack_settings) -> Iterator[dict[str, str]]:
    """APS_ENV=dev with this test's own lake prefix and Trino lake schemas, both removed
    afterwards."""
    tag = uuid.uuid4().hex[:8]
    bucket = stack_settings["APS_S3_BUCKET"]
    run = {
        "tag": tag,
        "lake_prefix": f"{bucket}/tests/secrets-{tag}",
        "schema_prefix": f"s{tag}_",
        "metastore": f"{bucket}/_trino_metastore",
    }
    monkeypatch.setenv("APS_ENV", "dev")
    monkeypatch.setenv("APS_LAKE_ROOT", f"s3://{run['lake_prefix']}")
    monkeypatch.setenv("APS_TRINO_LAKE_SCHEMA_PREFIX", run["schema_prefix"])
    yield run
    _drop_trino_schemas(stack_settings, run["schema_prefix"])
    fs = _lake_fs(stack_settings)
    for prefix in (run["lake_prefix"], *fs.glob(f"{run['metastore']}/{run['schema_prefix']}*")):
        if fs.exists(prefix):
            fs.rm(prefix, recursive=True)


def _lake_fs(settings: Mapping[str, str]) -> Any:
    import s3fs

    return s3fs.S3FileSystem(
        key=settings["APS_S3_ACCESS_KEY"],
        secret=settings["APS_S3_SECRET_KEY"],
        endpoint_url=settings["APS_S3_ENDPOINT"],
        client_kwargs={"region_name": settings["APS_S3_REGION"]},
        skip_instance_cache=True,
        use_listings_cache=False,
    )


def _drop_trino_schemas(settings: Mapping[str, str], prefix: str) -> None:
    trino = TrinoResource(**trino_settings(settings))
    drop_lake_schemas(trino, prefix)


def seeded_partition(settings: Mapping[str, str]) -> str:
    """A business day the source holds; seeds the source (as mes_owner) if it is empty."""
    comment = None
    conn = psycopg2.connect(postgres_uri(settings, settings["APS_MES_DB"], "mes_reader"))
    try:
        cur = conn.cursor()
        cur.execute("SELECT to_regclass('process_result') IS NOT NULL")
        if cur.fetchone()[0]:
            cur.execute(
                "SELECT obj_description('process_result'::regclass, 'pg_class'),"
                " EXISTS (SELECT 1 FROM process_result)"
            )
            comment, has_rows = cur.fetchone()
            comment = comment if has_rows else None
    finally:
        conn.close()
    found = re.search(r"start_date=(\S+) days=(\d+)", comment or "")
    if not found:
        owner = postgres_uri(settings, settings["APS_MES_DB"], "mes_owner")
        seed_source(owner, progress=False, **SEED)  # type: ignore[arg-type]
        start, days = SEED["start_date"], SEED["days"]
    else:
        start, days = dt.date.fromisoformat(found[1]), int(found[2])
    assert isinstance(start, dt.date) and isinstance(days, int)
    return (start + dt.timedelta(days=min(1, days - 1))).isoformat()


def _dagster_db(settings: Mapping[str, str]) -> str:
    return postgres_uri(settings, "dagster", "dagster")


def _fail_message(scanner: Scanner, what: str) -> str:
    return f"{what}:\n{scanner.report()}"


# ---------------------------------------------------------------- tests


def test_scanner_finds_a_planted_secret_in_every_channel(
    dev_home: Path, stack_settings, process_output, tmp_path: Path
) -> None:
    """The self-check: a canary secret written where a leak would go is found there."""
    canary = "canary-" + secrets.token_urlsafe(18)
    scanner = Scanner({"APS_CANARY_PASSWORD": canary})
    key = f"secrets_canary_{uuid.uuid4().hex[:8]}"

    @dg.asset(name=key)
    def leaky(context, leaky: PasswordProbe) -> dg.MaterializeResult:
        context.log.info(f"connecting with password {canary}")  # event log
        print(f"dsn=postgresql://u:{canary}@h/db")  # stdout: compute logs, process output
        logging.getLogger("aps_etl.canary").debug("secret %s", canary)  # process logging
        return dg.MaterializeResult(metadata={"dsn": f"postgresql://u:{canary}@h/db"})

    with dg.DagsterInstance.get() as instance:
        result = dg.materialize(
            [leaky],
            instance=instance,
            # a literal in resource config: Dagster stores it in the job snapshot
            resources={"leaky": PasswordProbe(password=canary)},
            tags={"note": canary},  # the run record and run_tags
        )
        try:
            assert result.success
            scan_run(scanner, instance, result.run_id, _dagster_db(stack_settings))
        finally:
            instance.delete_run(result.run_id)
            instance.wipe_assets([dg.AssetKey(key)])
    logging.getLogger("aps_etl.canary").warning("scratch log line: %s", canary)
    process_output(scanner)
    scan_tree(scanner, "dagster home", dev_home)

    # The lake: a Parquet file with the canary in its footer metadata only.
    fs = _lake_fs(stack_settings)
    prefix = f"{stack_settings['APS_S3_BUCKET']}/tests/secrets-canary-{uuid.uuid4().hex[:8]}"
    table = pa.table({"x": [1]}).replace_schema_metadata({"note": canary})
    try:
        with fs.open(f"{prefix}/data.parquet", "wb") as f:
            pq.write_table(table, f, compression="zstd")
        assert scan_lake(scanner, fs, prefix)
    finally:
        fs.rm(prefix, recursive=True)

    # A stack-like folder with a scratch log line.
    scratch = tmp_path / "stack"
    (scratch / "trino").mkdir(parents=True)
    (scratch / "trino" / "server.log").write_text(f"INFO Bootstrap s3.key {canary}\n")
    assert scan_stack_logs(scanner, scratch)

    found = scanner.channels_with("APS_CANARY_PASSWORD")
    missed = (RUN_CHANNELS | {"lake", "stack logs"}) - found
    assert not missed, f"the scanner did not see the planted secret in: {sorted(missed)}"


def test_daily_run_on_the_dev_stack_leaks_no_secret(
    dev_home: Path, stack_settings, isolated_run, process_output
) -> None:
    partition = seeded_partition(stack_settings)
    resources = resources_for("dev")
    scanner = Scanner(stack_secrets(stack_settings))
    assert {"APS_PG_SUPERUSER_PASSWORD", "APS_S3_ACCESS_KEY", "APS_DAGSTER_PG_PASSWORD"} <= set(
        scanner.needles
    )
    with dg.DagsterInstance.get() as instance:
        result = run_daily(resources, partition, instance)
        try:
            assert result.success, step_failures(result)
            assert result.get_asset_materialization_events()
            scan_run(scanner, instance, result.run_id, _dagster_db(stack_settings))
        finally:
            instance.delete_run(result.run_id)
    process_output(scanner)
    files = scan_tree(scanner, "dagster home", dev_home)
    assert any("compute_logs" in f.parts and f.stat().st_size for f in files)
    fs = _lake_fs(stack_settings)
    written = scan_lake(scanner, fs, isolated_run["lake_prefix"])
    assert any(p.endswith(".parquet") for p in written)
    metastore = fs.glob(f"{isolated_run['metastore']}/{isolated_run['schema_prefix']}*")
    assert metastore, "the run registered no lake table in Trino"
    for schema in metastore:
        scan_lake(scanner, fs, schema)

    missed = RUN_CHANNELS - set(scanner.scanned)
    assert not missed, f"nothing was scanned in: {sorted(missed)}"
    assert not scanner.found, _fail_message(scanner, "secrets written by the daily run")


def test_a_wrong_source_password_stays_out_of_the_failed_run(
    dev_home: Path, stack_settings, isolated_run, process_output, monkeypatch
) -> None:
    wrong = "wrong-" + secrets.token_urlsafe(18)
    partition = seeded_partition(stack_settings)
    resources = resources_for("dev")
    # As production passes a password: through an environment variable (dg.EnvVar).
    monkeypatch.setenv("APS_SECRETS_TEST_WRONG_PASSWORD", wrong)
    resources["source"] = SourceDatabase(
        database=dg.EnvVar("APS_MES_DB"),
        host=stack_settings["APS_PG_HOST"],
        port=int(stack_settings["APS_PG_PORT"]),
        user=dg.EnvVar("APS_MES_READER_USER"),
        password=dg.EnvVar("APS_SECRETS_TEST_WRONG_PASSWORD"),
    )
    scanner = Scanner({**stack_secrets(stack_settings), "WRONG_SOURCE_PASSWORD": wrong})
    errors: list[str] = []
    with dg.DagsterInstance.get() as instance:
        result = run_daily(resources, partition, instance)
        try:
            assert not result.success
            for entry in instance.all_logs(result.run_id):
                event = entry.dagster_event
                error = getattr(event and event.event_specific_data, "error", None)
                while error is not None:  # the error, its causes and contexts
                    errors.append(f"{error.message}\n{''.join(error.stack)}")
                    error = error.cause or error.context
            scan_run(scanner, instance, result.run_id, _dagster_db(stack_settings))
        finally:
            instance.delete_run(result.run_id)
    for text in errors:
        scanner.scan("error messages", text.splitlines()[0], text)
    process_output(scanner)
    scan_tree(scanner, "dagster home", dev_home)
    scan_stack_logs(scanner, stack_home())

    assert any("password authentication failed" in text for text in errors), (
        "the run should fail because the source refused the password"
    )
    # The stack's own secrets in its logs are test_stack_logs_hold_no_secret's business.
    scanner.found = {
        (where, name)
        for where, name in scanner.found
        if name == "WRONG_SOURCE_PASSWORD" or not where.startswith("stack logs")
    }
    assert not scanner.found, _fail_message(scanner, "secrets written by the failed run")


def test_every_secret_reaches_the_resources_as_an_env_var(monkeypatch, stack_settings) -> None:
    """A literal in resource config is stored in the run's job snapshot (the dagster
    database, the UI); a dg.EnvVar is stored by name. So every secret must be an EnvVar."""
    saved = dict(os.environ)
    try:
        export_stack_env()
        for env in ("dev", "prod"):
            monkeypatch.setenv("APS_ENV", env)
            if env == "prod":  # prod refuses plain text (aps_etl/env/transport.py)
                for name, value in {
                    "APS_PG_SSLMODE": "verify-full",
                    "APS_PG_SSLROOTCERT": stack_settings["APS_TRINO_SSLROOTCERT"],
                    "APS_DAGSTER_PG_SSLMODE": "verify-full",
                    "APS_S3_ALLOW_HTTP": "true",
                }.items():
                    monkeypatch.setenv(name, value)
            fields = dict(_secret_fields(resources_for(env)))
            assert any(name.endswith("s3_secret_key") for name in fields)
            literal = [name for name, value in fields.items() if not isinstance(value, dg.EnvVar)]
            assert not literal, f"{env}: secrets given as literal values: {literal}"
    finally:
        os.environ.clear()
        os.environ.update(saved)

    # Why: Dagster's own behaviour, shown on an ephemeral instance.
    @dg.asset
    def probe(resource: PasswordProbe) -> None:
        return None

    value = "probe-" + secrets.token_urlsafe(12)
    monkeypatch.setenv("APS_SECRETS_TEST_PROBE", value)
    stored = {}
    for label, password in (("literal", value), ("env var", dg.EnvVar("APS_SECRETS_TEST_PROBE"))):
        instance = dg.DagsterInstance.ephemeral()
        result = dg.materialize(
            [probe], resources={"resource": PasswordProbe(password=password)}, instance=instance
        )
        run = instance.get_run_by_id(result.run_id)
        assert run and run.job_snapshot_id
        stored[label] = value in serialize_value(instance.get_job_snapshot(run.job_snapshot_id))
    assert stored == {"literal": True, "env var": False}


def _secret_fields(resources: Mapping[str, Any]) -> Iterator[tuple[str, Any]]:
    def walk(obj: Any, path: str) -> Iterator[tuple[str, Any]]:
        for name in type(obj).model_fields:
            value = getattr(obj, name)
            if hasattr(type(value), "model_fields"):
                yield from walk(value, f"{path}.{name}")
            elif re.search(r"password|secret|access_key", name) and value is not None:
                yield f"{path}.{name}", value

    for key, resource in resources.items():
        yield from walk(resource, key)


def test_stack_logs_hold_no_secret(stack_settings) -> None:
    """Last in this module, so it also sees what the runs above made the services log."""
    scanner = Scanner(stack_secrets(stack_settings))
    logs = scan_stack_logs(scanner, stack_home())
    names = {p.name for p in logs}
    assert {"postgres.log", "mariadb.log", "minio.log", "launcher.log", "server.log"} <= names, (
        names
    )
    assert not scanner.found, _fail_message(
        scanner,
        "secrets in the stack's logs (Trino prints s3.aws-access-key at startup when it is a "
        "catalog property, as infra/stack wrote it before it passed the S3 keys as AWS_* "
        "variables: restart a Trino older than that with `infra/stack down trino && "
        "infra/stack up trino`, then delete the old server.log-* files listed)",
    )
