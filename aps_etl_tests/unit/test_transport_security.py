"""prod refuses, at start and by name, every setting that would cross the network in the
clear (aps_etl/env/transport.py): PostgreSQL without TLS (libpq's default `prefer` goes on
in plain text when the server offers none), an http:// lake, an SMTP login without
STARTTLS. The compose deployment's own settings pass."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from aps_etl.env.container_start import StartRefused, check_settings
from aps_etl.env.settings import resources_for
from aps_etl.env.stack import REPO_ROOT
from aps_etl.env.transport import plaintext_settings
from aps_etl.lib.errors import ConfigurationError

SAFE = {
    "APS_ENV": "prod",
    "APS_SOURCE_PG_HOST": "mes.plant",
    "APS_SOURCE_PG_SSLMODE": "verify-full",
    "APS_TARGET_PG_HOST": "aps.plant",
    "APS_TARGET_PG_SSLMODE": "require",
    "APS_DAGSTER_PG_HOST": "dagster.plant",
    "APS_DAGSTER_PG_SSLMODE": "verify-ca",
    "APS_S3_ENDPOINT": "https://s3.plant:9000",
    "APS_ALERT_SMTP_HOST": "smtp.plant",
    "APS_ALERT_SMTP_USER": "aps",
    "APS_ALERT_SMTP_STARTTLS": "true",
}


def test_a_tls_setting_everywhere_passes() -> None:
    assert plaintext_settings(SAFE) == []
    # a plain relay without a login sends no secret; AWS S3's default endpoint is https
    relay = {k: v for k, v in SAFE.items() if not k.startswith("APS_ALERT_SMTP_USER")}
    relay.pop("APS_S3_ENDPOINT")
    assert plaintext_settings(relay | {"APS_ALERT_SMTP_STARTTLS": ""}) == []


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"APS_SOURCE_PG_SSLMODE": ""}, "APS_SOURCE_PG_SSLMODE (or APS_PG_SSLMODE) is not set"),
        (
            {"APS_SOURCE_PG_SSLMODE": "prefer"},
            "APS_SOURCE_PG_SSLMODE (or APS_PG_SSLMODE) is prefer",
        ),
        (
            {"APS_TARGET_PG_SSLMODE": "disable"},
            "APS_TARGET_PG_SSLMODE (or APS_PG_SSLMODE) is disable",
        ),
        ({"APS_TARGET_PG_SSLMODE": "allow"}, "APS_TARGET_PG_SSLMODE (or APS_PG_SSLMODE) is allow"),
        ({"APS_DAGSTER_PG_SSLMODE": ""}, "APS_DAGSTER_PG_SSLMODE is not set"),
        ({"APS_S3_ENDPOINT": "http://minio:9000"}, "APS_S3_ENDPOINT is http://minio:9000"),
        ({"APS_ALERT_SMTP_STARTTLS": "false"}, "APS_ALERT_SMTP_USER is set without"),
        (
            {"APS_SOURCE_ENGINE": "mariadb", "APS_SOURCE_TLS": "disable"},
            "APS_SOURCE_TLS is disable",
        ),
    ],
)
def test_each_plaintext_setting_is_named(change: dict[str, str], named: str) -> None:
    (found,) = plaintext_settings(SAFE | change)
    assert named in found


def test_the_shared_sslmode_covers_source_and_target_but_not_dagsters_storage() -> None:
    env = {k: v for k, v in SAFE.items() if "_PG_SSLMODE" not in k} | {"APS_PG_SSLMODE": "require"}
    (found,) = plaintext_settings(env)
    assert found.startswith("APS_DAGSTER_PG_SSLMODE is not set")


def test_an_http_lake_passes_only_when_said_to_be_on_a_private_network() -> None:
    env = SAFE | {"APS_S3_ENDPOINT": "http://minio:9000"}
    assert plaintext_settings(env | {"APS_S3_ALLOW_HTTP": "true"}) == []
    assert plaintext_settings(env | {"APS_S3_ALLOW_HTTP": "no"})


def test_the_containers_refuse_to_start_naming_every_plaintext_setting() -> None:
    env = {
        **SAFE,
        "APS_DAGSTER_PG_PORT": "5432",
        "APS_DAGSTER_PG_USER": "dagster",
        "APS_DAGSTER_PG_PASSWORD": "secret-pw-2",
        "APS_S3_BUCKET": "lake",
        "APS_S3_REGION": "us-east-1",
        "APS_DAGSTER_PG_SSLMODE": "prefer",
        "APS_S3_ENDPOINT": "http://minio:9000",
    }
    with pytest.raises(StartRefused) as refused:
        check_settings(["dagster-webserver"], env)
    message = str(refused.value)
    assert message.startswith("APS_ENV=prod refuses unencrypted connections")
    assert "APS_DAGSTER_PG_SSLMODE is prefer" in message and "APS_S3_ENDPOINT" in message
    assert "secret-pw-2" not in message
    # dev is the stack's business (TLS throughout already)
    assert check_settings(["dagster-webserver"], env | {"APS_ENV": "dev"}) == "webserver"


def test_the_prod_resources_are_never_built_over_plain_text(monkeypatch) -> None:
    for name, value in {
        "APS_PG_HOST": "pg.plant",
        "APS_PG_PORT": "5432",
        "APS_S3_BUCKET": "lake",
        "APS_S3_ENDPOINT": "https://s3.plant",
        "APS_TRINO_HOST": "trino.plant",
        "APS_TRINO_PORT": "8443",
        "APS_TRINO_PASSWORD": "pw",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("APS_PG_SSLMODE", raising=False)
    for role in ("SOURCE", "TARGET"):
        monkeypatch.delenv(f"APS_{role}_PG_SSLMODE", raising=False)
    with pytest.raises(ConfigurationError, match="APS_SOURCE_PG_SSLMODE .* is not set"):
        resources_for("prod")
    monkeypatch.setenv("APS_PG_SSLMODE", "require")
    assert resources_for("prod")["loader"].target.sslmode == "require"


def test_the_compose_deployments_dagster_settings_pass(tmp_path: Path) -> None:
    """What compose hands the code location, the webserver, the daemon and each run."""
    compose = yaml.safe_load((REPO_ROOT / "infra" / "docker-compose.yml").read_text())
    for name in ("code-location", "webserver", "daemon"):
        environment = {k: str(v) for k, v in compose["services"][name]["environment"].items()}
        resolved = {k: "" if v.startswith("${") else v for k, v in environment.items()}
        assert plaintext_settings(resolved) == [], name
    # the runs' containers get the same names from the daemon (DockerRunLauncher env_vars)
    instance = yaml.safe_load((REPO_ROOT / "infra" / "docker" / "dagster.yaml").read_text())
    passed = set(instance["run_launcher"]["config"]["env_vars"])
    assert {"APS_S3_ALLOW_HTTP", "APS_SOURCE_PG_SSLMODE", "APS_DAGSTER_PG_SSLMODE"} <= passed


def test_a_refusal_at_container_start_is_one_line_and_the_config_status() -> None:
    env = {
        "APS_ENV": "prod",
        "APS_DAGSTER_PG_HOST": "db",
        "APS_DAGSTER_PG_USER": "dagster",
        "APS_DAGSTER_PG_PASSWORD": "secret-pw-1",
        "APS_S3_BUCKET": "lake",
        "APS_S3_REGION": "us-east-1",
        "APS_S3_ENDPOINT": "http://minio:9000",
        "PATH": "/usr/bin:/bin",
    }
    result = subprocess.run(
        [sys.executable, "-m", "aps_etl.env.container_start", "dagster-webserver"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 78, result.stderr
    assert "APS_DAGSTER_PG_SSLMODE is not set" in result.stderr
    assert "Traceback" not in result.stderr and "secret-pw-1" not in result.stderr
