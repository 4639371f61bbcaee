"""The image's entry point refuses wrong settings at start, by name
(aps_etl/env/container_start.py). The same checks run inside the built image in
test_compose_deployment.py."""

from __future__ import annotations

import subprocess
import sys
from urllib.parse import urlsplit

import pytest

from aps_etl.env.container_start import (
    EXIT_CONFIG,
    StartRefused,
    check_settings,
    dagster_storage_url,
    role_needs,
    role_of,
)

STORAGE = {
    "APS_ENV": "prod",
    "APS_DAGSTER_PG_HOST": "db.internal",
    "APS_DAGSTER_PG_PORT": "6432",
    "APS_DAGSTER_PG_USER": "dagster",
    "APS_DAGSTER_PG_PASSWORD": "p@ss/w:rd?",
    "APS_S3_ENDPOINT": "http://minio:9000",
    "APS_S3_REGION": "us-east-1",
    "APS_S3_BUCKET": "data-lake",
    "APS_S3_ALLOW_HTTP": "true",
    "APS_DAGSTER_PG_SSLMODE": "require",
}
# prod refuses a plain-text database connection (aps_etl/env/transport.py)
TLS = {"APS_PG_SSLMODE": "require", "APS_DAGSTER_PG_SSLMODE": "verify-full"}


@pytest.mark.parametrize(
    ("command", "role"),
    [
        (["dagster-webserver", "-h", "0.0.0.0"], "webserver"),
        (["/opt/venv/bin/dagster-daemon", "run"], "daemon"),
        (["dagster", "code-server", "start", "-m", "aps_etl.definitions"], "code-server"),
        (["dagster", "api", "execute_run", "{}"], "run"),
        (["aps-etl", "report"], "other"),
        (["python", "-c", "pass"], "other"),
    ],
)
def test_role_comes_from_the_command(command: list[str], role: str) -> None:
    assert role_of(command) == role


def test_local_is_refused_unless_asked() -> None:
    with pytest.raises(StartRefused, match="APS_ENV=local"):
        check_settings(["aps-etl", "run"], {})
    assert check_settings(["aps-etl", "run"], {"APS_ALLOW_LOCAL": "1"}) == "other"


def test_an_unknown_environment_is_named() -> None:
    with pytest.raises(StartRefused, match="APS_ENV='staging'"):
        check_settings(["aps-etl", "run"], {"APS_ENV": "staging"})


@pytest.mark.parametrize("role", ["webserver", "daemon", "run", "code-server"])
def test_each_missing_setting_is_named(role: str) -> None:
    command = {
        "webserver": ["dagster-webserver"],
        "daemon": ["dagster-daemon", "run"],
        "run": ["dagster", "api", "execute_run"],
        "code-server": ["dagster", "code-server", "start"],
    }[role]
    full = {n.split("|")[0]: "x" for n in role_needs(role, {})} | {"APS_ENV": "prod"} | TLS
    assert check_settings(command, full) == role
    for name in role_needs(role, {}):
        first = name.split("|")[0]
        env = {k: v for k, v in full.items() if k != first}
        with pytest.raises(StartRefused) as refused:
            check_settings(command, env)
        assert first in str(refused.value) and role in str(refused.value)


def test_a_mariadb_source_needs_its_own_settings_not_postgresqls() -> None:
    command = ["dagster", "api", "execute_run"]
    env = {"APS_ENV": "prod", "APS_SOURCE_ENGINE": "mariadb"}
    needs = role_needs("run", env)
    assert "APS_SOURCE_PASSWORD" in needs and "APS_MES_READER_PASSWORD" not in needs
    full = {n.split("|")[0]: "x" for n in needs} | env | TLS
    assert check_settings(command, full) == "run"
    with pytest.raises(StartRefused, match="needs APS_SOURCE_HOST"):
        check_settings(command, {k: v for k, v in full.items() if k != "APS_SOURCE_HOST"})
    assert role_needs("webserver", env) == role_needs("webserver", {})  # no source there


def test_the_shared_host_stands_in_for_the_source_and_target_hosts() -> None:
    needs = [n for n in role_needs("run", {}) if "|" not in n]
    env = {n: "x" for n in needs} | {"APS_ENV": "prod", "APS_PG_HOST": "pg", "APS_PG_PORT": "1"}
    env |= TLS
    assert check_settings(["dagster", "api", "execute_run"], env) == "run"


def test_an_owner_or_superuser_password_is_refused_in_a_dagster_container() -> None:
    for name in (
        "APS_PG_SUPERUSER_PASSWORD",
        "APS_MES_OWNER_PASSWORD",
        "POSTGRES_PASSWORD",
        "APS_MINIO_ROOT_PASSWORD",
        "MINIO_ROOT_PASSWORD",
        "APS_TRINO_SHARED_SECRET_KEY",
    ):
        with pytest.raises(StartRefused, match=name):
            check_settings(["dagster-webserver"], STORAGE | {name: "secret"})


def test_a_missing_ca_file_is_named(tmp_path) -> None:
    env = STORAGE | {"APS_DAGSTER_PG_SSLROOTCERT": str(tmp_path / "ca.crt")}
    with pytest.raises(StartRefused, match="APS_DAGSTER_PG_SSLROOTCERT"):
        check_settings(["dagster-webserver"], env)


def test_storage_url_quotes_credentials_and_carries_tls(tmp_path) -> None:
    ca = tmp_path / "ca.crt"
    url = dagster_storage_url(
        STORAGE | {"APS_DAGSTER_PG_SSLMODE": "verify-full", "APS_DAGSTER_PG_SSLROOTCERT": str(ca)}
    )
    parts = urlsplit(url)
    assert parts.scheme == "postgresql+psycopg2"
    assert parts.hostname == "db.internal" and parts.port == 6432 and parts.path == "/dagster"
    assert parts.username == "dagster" and "p%40ss%2Fw%3Ard%3F" in url
    assert f"sslmode=verify-full&sslrootcert={str(ca).replace('/', '%2F')}" in parts.query


def test_a_command_that_does_not_exist_is_named() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "aps_etl.env.container_start", "dagster-webservr"],
        env={"APS_ENV": "local", "APS_ALLOW_LOCAL": "1", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 127
    assert "dagster-webservr" in result.stderr and "Traceback" not in result.stderr


def test_refusal_exits_with_the_config_status_and_no_traceback() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "aps_etl.env.container_start", "dagster-webserver"],
        env={"APS_ENV": "prod", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == EXIT_CONFIG
    assert "APS_DAGSTER_PG_HOST" in result.stderr and "Traceback" not in result.stderr


def test_a_setup_command_may_hold_minio_root() -> None:
    """minio-init (a one-shot setup, not a Dagster role) makes the lake's users as root."""
    env = {"APS_ENV": "prod", "MINIO_ROOT_PASSWORD": "root-secret"}
    assert check_settings(["python", "/opt/minio-init.py"], env) == "other"
