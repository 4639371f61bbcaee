"""The compose deployment, run for real: images built here (make images), every service of
infra/docker-compose.yml up and healthy, `aps_daily` for one day launched through the
webserver's GraphQL API (behind the UI's front), run in a container of its own (started by
the daemon through the Docker socket proxy), and its target rows equal to the contract's
reference SQL on the source. The deployment's trust boundaries: test_compose_boundaries.py."""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import shutil
import subprocess
import time
from typing import Any

import pytest
import s3fs
from dagster_graphql import DagsterGraphQLClient, DagsterGraphQLClientError

from aps_etl_tests.deploy.deployment import (
    COMPOSE,
    PROJECT,
    REPO,
    compose,
    docker,
    pg_uri,
    ui_client,
)
from aps_etl_tests.pipeline_harness import (
    DAILY_TABLES,
    JOB,
    assert_rows_equal,
    reference_partition,
    target_partition,
)

pytestmark = pytest.mark.docker

DAY = "2026-11-20"


def _wait_for_run(client: DagsterGraphQLClient, run_id: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    status = "unknown"
    while time.monotonic() < deadline:
        status = client.get_run_status(run_id).value
        if status in ("SUCCESS", "FAILURE", "CANCELED"):
            return status
        time.sleep(3)
    return status


def _run_logs(run_id: str, deployment: dict[str, Any]) -> str:
    """The run container's and the daemon's last lines, for a failure message."""
    out = []
    for container in docker("ps", "-aq", "--filter", f"label=dagster/run_id={run_id}").split():
        logs = subprocess.run(["docker", "logs", "--tail", "60", container], capture_output=True)
        out.append((logs.stdout + logs.stderr).decode(errors="replace"))
    daemon = compose(deployment["env_file"], "logs", "--tail", "30", "daemon").stdout
    return "\n".join(out) + "\n--- daemon ---\n" + daemon


def test_daily_run_in_its_own_container_loads_the_contract(
    deployment: dict[str, Any], mes_source: str
) -> None:
    env, source = deployment["env"], mes_source  # seeded once for the package (conftest.py)

    client = ui_client(deployment)  # through the UI's front: TLS and the admin's password
    try:
        run_id = client.submit_job_execution(JOB, tags={"dagster/partition": DAY})
    except DagsterGraphQLClientError as e:  # the message says which part was refused
        raise AssertionError(f"submitting {JOB} through GraphQL: {e}") from None
    status = _wait_for_run(client, run_id, timeout=900)
    assert status == "SUCCESS", f"run {run_id}: {status}\n{_run_logs(run_id, deployment)}"

    # The run had a container of its own (DockerRunLauncher), not the code location's.
    containers = docker("ps", "-a", "--filter", f"label=dagster/run_id={run_id}", "-q").split()
    assert len(containers) == 1, f"run {run_id}: containers {containers}"
    inspected = json.loads(docker("inspect", containers[0]))[0]
    # created through the socket proxy, which answers for this name only
    assert inspected["Name"] == f"/{PROJECT}-run-{run_id}", inspected["Name"]
    run_config = inspected["Config"]
    # on the image of the build deploy runs, by its code's commit, not aps-etl:latest
    tag = (REPO / ".docker" / "image-tag").read_text().strip()
    assert run_config["Image"] == f"aps-etl:{tag}", run_config["Image"]
    run_env = run_config["Env"]
    assert "APS_ENV=prod" in run_env
    names = {e.split("=", 1)[0] for e in run_env}
    assert not names & {"APS_PG_SUPERUSER_PASSWORD", "APS_MES_OWNER_PASSWORD"}, names

    # Every daily table holds exactly the contract's rows for the day.
    target = pg_uri(env, "aps_loader", "APS_APS_LOADER_PASSWORD", "aps")
    day = dt.date.fromisoformat(DAY)
    for table in DAILY_TABLES:
        want = reference_partition(source, table, day)
        assert want, f"{table}: the seeded day has no reference rows"
        assert_rows_equal(table, target_partition(target, table, day), want)

    # The steps' compute logs are in MinIO's logs bucket, where the webserver reads them with
    # the logs reader's keys (infra/docker/dagster.yaml: compute_logs).
    fs = s3fs.S3FileSystem(
        key=env["APS_LOGS_S3_ACCESS_KEY"],
        secret=env["APS_LOGS_S3_SECRET_KEY"],
        client_kwargs={"endpoint_url": f"http://127.0.0.1:{env['APS_COMPOSE_MINIO_PORT']}"},
        skip_instance_cache=True,
    )
    logs = fs.find(f"dagster-logs/compute_logs/storage/{run_id}")
    assert any(p.endswith((".out", ".err")) for p in logs), logs


def test_dagster_containers_hold_only_their_secrets(deployment: dict[str, Any]) -> None:
    env_file = deployment["env_file"]
    owner_only = {"APS_PG_SUPERUSER_PASSWORD", "APS_MES_OWNER_PASSWORD", "POSTGRES_PASSWORD"}
    pipeline = {"APS_MES_READER_PASSWORD", "APS_APS_LOADER_PASSWORD"}
    root = deployment["env"]["APS_MINIO_ROOT_PASSWORD"]
    for service in ("code-location", "webserver", "daemon", "trino"):
        container = compose(env_file, "ps", "-q", service).stdout.split()[0]
        values = json.loads(docker("inspect", container))[0]["Config"]["Env"]
        names = {e.split("=", 1)[0] for e in values}
        assert not names & owner_only, f"{service}: {names & owner_only}"
        assert not [v for v in values if root in v], f"{service} holds MinIO's root password"
        if service == "trino":  # the lake's read-only user, none of the pipeline's secrets
            keys = deployment["env"]["APS_TRINO_S3_ACCESS_KEY"]
            assert f"AWS_ACCESS_KEY_ID={keys}" in values
            for name in ("APS_S3_SECRET_KEY", "APS_TRINO_PASSWORD", "APS_DAGSTER_PG_PASSWORD"):
                secret = deployment["env"][name]
                assert not [v for v in values if secret in v], f"trino holds {name}"
        else:  # Trino's own secrets stay in Trino
            for name in ("APS_TRINO_SHARED_SECRET_KEY", "APS_TRINO_S3_SECRET_KEY"):
                secret = deployment["env"][name]
                assert not [v for v in values if secret in v], f"{service} holds {name}"
        if service == "webserver":
            assert not names & pipeline, f"{service}: {names & pipeline}"
        if service != "trino":
            assert "APS_ENV" in names


def test_every_database_connection_is_encrypted(deployment: dict[str, Any]) -> None:
    """Dagster's storage, and Trino's catalogs once they ran, connect with verify-full."""
    from aps_etl_tests.pipeline_harness import fetch

    env = deployment["env"]
    superuser = pg_uri(env, "postgres", "APS_PG_SUPERUSER_PASSWORD", "postgres")
    rows = fetch(
        superuser + "?sslmode=require",
        "select a.usename, s.ssl from pg_stat_activity a join pg_stat_ssl s using (pid) "
        "where a.backend_type = 'client backend' and a.usename is not null",
    )
    assert rows, "no client connection to look at"
    # and the server takes nothing else over the network (hostssl only)
    with pytest.raises(Exception, match="no pg_hba.conf entry|SSL off"):
        fetch(superuser + "?sslmode=disable", "select 1")
    assert any(r["usename"] == "dagster" for r in rows), rows
    assert all(r["ssl"] for r in rows), [r for r in rows if not r["ssl"]]


def test_trino_asks_for_the_password_over_https(deployment: dict[str, Any]) -> None:
    import requests

    env = deployment["env"]
    url = f"https://127.0.0.1:{env['APS_COMPOSE_TRINO_PORT']}/v1/statement"
    ca = str(deployment["tls"] / "ca.crt")
    headers = {"X-Trino-User": "aps_etl"}
    anonymous = requests.post(url, data="SELECT 1", headers=headers, verify=ca, timeout=30)
    assert anonymous.status_code == 401
    wrong = requests.post(
        url, data="SELECT 1", headers=headers, verify=ca, timeout=30, auth=("aps_etl", "nope")
    )
    assert wrong.status_code == 401
    right = requests.post(
        url,
        data="SELECT 1",
        headers=headers,
        verify=ca,
        timeout=30,
        auth=("aps_etl", env["APS_TRINO_PASSWORD"]),
    )
    assert right.status_code == 200, right.text


def _start(image_env: dict[str, str], *command: str) -> subprocess.CompletedProcess:
    flags = [a for k, v in image_env.items() for a in ("-e", f"{k}={v}")]
    return subprocess.run(
        ["docker", "run", "--rm", *flags, "aps-etl:latest", *command],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_image_refuses_a_missing_secret_by_name(images: None) -> None:
    result = _start(
        {"APS_DAGSTER_PG_HOST": "postgres", "APS_DAGSTER_PG_USER": "dagster"},
        "dagster-webserver",
        "-h",
        "0.0.0.0",
    )
    assert result.returncode == 78, result.stderr
    assert "APS_DAGSTER_PG_PASSWORD" in result.stderr
    assert "Traceback" not in result.stderr


def test_image_refuses_local_unless_asked(images: None) -> None:
    refused = _start({"APS_ENV": "local"}, "aps-etl", "--help")
    assert refused.returncode == 78 and "APS_ENV=local" in refused.stderr, refused.stderr
    allowed = _start({"APS_ENV": "local", "APS_ALLOW_LOCAL": "1"}, "aps-etl", "--help")
    assert allowed.returncode == 0, allowed.stderr
    assert "usage" in allowed.stdout.lower()


def test_image_refuses_an_owner_password(images: None) -> None:
    result = _start({"APS_ENV": "prod", "APS_MES_OWNER_PASSWORD": "x"}, "dagster-webserver")
    assert result.returncode == 78, result.stderr
    assert "APS_MES_OWNER_PASSWORD" in result.stderr and "must not reach" in result.stderr


def test_image_reads_a_mariadb_source_through_its_odbc_driver(images: None) -> None:
    # the driver loads and tries the server (nothing listens on port 1): not "Can't open lib"
    probe = (
        "import arrow_odbc\n"
        "try:\n"
        "    arrow_odbc.connect('Driver={MariaDB Unicode};Server=127.0.0.1;Port=1;', "
        "user='r', password='p', login_timeout_sec=5)\n"
        "except arrow_odbc.Error as exc:\n"
        "    print(exc)\n"
    )
    result = _start({"APS_ENV": "local", "APS_ALLOW_LOCAL": "1"}, "python", "-c", probe)
    assert result.returncode == 0, result.stderr
    assert "Can't connect to server on '127.0.0.1'" in result.stdout, result.stdout
    assert "Can't open lib" not in result.stdout


def test_image_runs_as_non_root_with_no_secret_in_its_layers(images: None) -> None:
    config = json.loads(docker("image", "inspect", "aps-etl:latest"))[0]["Config"]
    assert config["User"] not in ("", "0", "root")
    assert not [e for e in config["Env"] if any(w in e for w in ("PASSWORD", "SECRET"))]
    history = docker("history", "--no-trunc", "--format", "{{.CreatedBy}}", "aps-etl:latest")
    assert "PASSWORD" not in history and "SECRET" not in history


def test_postgres_applies_changed_passwords_at_restart_and_serves_without_them(
    deployment: dict[str, Any],
) -> None:
    """Last of the deployment's tests (deploy/conftest.py puts it there, whatever the file
    order): it recreates the database's container. A password
    changed in infra/.env takes effect with the restart (the entry point applies the roles
    and passwords at every start, not only the first), and the server process itself holds
    no password in its environment."""
    from aps_etl_tests.pipeline_harness import fetch

    env, env_file = deployment["env"], deployment["env_file"]
    container = compose(env_file, "ps", "-q", "postgres").stdout.split()[0]
    server_env = docker("exec", container, "cat", "/proc/1/environ").split("\0")
    assert not [e for e in server_env if "PASSWORD" in e], "the server holds a password"
    assert any(e.startswith("PGDATA=") for e in server_env)  # it is the server's environment

    old = dict(env)
    env["APS_PG_SUPERUSER_PASSWORD"] = secrets.token_urlsafe(18)
    env["APS_MES_OWNER_PASSWORD"] = secrets.token_urlsafe(18)
    text = env_file.read_text()
    for name in ("APS_PG_SUPERUSER_PASSWORD", "APS_MES_OWNER_PASSWORD"):
        text = text.replace(f"{name}={old[name]}\n", f"{name}={env[name]}\n")
    env_file.write_text(text)
    # as infra/docker/deploy runs compose: its TLS folder and the project's network by name
    command = [
        str(shutil.which("docker-compose")), "-p", PROJECT, "--env-file", str(env_file),
        "-f", str(COMPOSE), "up", "-d", "--no-deps", "postgres",
    ]  # fmt: skip
    recreated = subprocess.run(
        command,
        env={
            **os.environ,
            "APS_COMPOSE_TLS_DIR": str(deployment["tls"]),
            "APS_COMPOSE_PROJECT": PROJECT,
        },
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert recreated.returncode == 0, recreated.stderr[-2000:]
    deadline = time.monotonic() + 180
    container = compose(env_file, "ps", "-q", "postgres").stdout.split()[0]
    health = ""
    while time.monotonic() < deadline and health != "healthy":
        time.sleep(2)
        health = docker("inspect", "-f", "{{.State.Health.Status}}", container).strip()
    assert health == "healthy", compose(env_file, "logs", "--tail", "30", "postgres").stdout

    for user, var, database in (
        ("postgres", "APS_PG_SUPERUSER_PASSWORD", "postgres"),
        ("mes_owner", "APS_MES_OWNER_PASSWORD", "mes"),
    ):
        assert fetch(pg_uri(env, user, var, database) + "?sslmode=require", "select 1 as one")
        with pytest.raises(Exception, match="password authentication failed"):
            fetch(pg_uri(old, user, var, database) + "?sslmode=require", "select 1")
