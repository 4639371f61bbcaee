"""The Docker route (compose file and Dockerfile), validated without a Docker engine."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from aps_etl.env.stack import REPO_ROOT

REPO = REPO_ROOT
COMPOSE = REPO / "infra" / "docker-compose.yml"
EXAMPLE_ENV = REPO / "infra" / ".env.example"


def _compose_config(env_file: Path) -> subprocess.CompletedProcess[str]:
    docker_compose = shutil.which("docker-compose")
    assert docker_compose, "docker-compose (Debian package) is missing: run scripts/test-tools"
    return subprocess.run(
        [docker_compose, "--env-file", str(env_file), "-f", str(COMPOSE), "config"],
        capture_output=True,
        text=True,
        check=False,
    )


def _filled_env(tmp_path: Path) -> Path:
    lines = []
    for line in EXAMPLE_ENV.read_text().splitlines():
        if line.endswith("="):
            line += "test-value-" + line.split("=")[0].lower()
        lines.append(line)
    env_file = tmp_path / "compose.env"
    env_file.write_text("\n".join(lines) + "\n")
    return env_file


@pytest.mark.tools
def test_compose_file_resolves_with_every_service(tmp_path: Path) -> None:
    result = _compose_config(_filled_env(tmp_path))
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(result.stdout)
    assert set(config["services"]) == {
        "postgres",
        "minio",
        "minio-init",
        "trino",
        "code-location",
        "webserver",
        "daemon",
    }
    # Every image is one infra/docker/build makes here (no registry is reachable).
    images = {name: service["image"] for name, service in config["services"].items()}
    assert images == {
        "postgres": "aps-etl/postgres:15",
        "minio": "aps-etl/minio:latest",
        "minio-init": "aps-etl:latest",
        "trino": "aps-etl/trino:476",
        "code-location": "aps-etl:latest",
        "webserver": "aps-etl:latest",
        "daemon": "aps-etl:latest",
    }
    build = (REPO / "infra" / "docker" / "build").read_text()
    assert all(f"-t {image} " in build or f"build {image} " in build for image in images.values())
    # Dagster runs as prod; the database's superuser and owner passwords reach only its own
    # container, the MinIO root keys only MinIO's and its one-shot setup's.
    for name in ("code-location", "webserver", "daemon"):
        environment = config["services"][name]["environment"]
        assert environment["APS_ENV"] == "prod"
        assert not {"APS_PG_SUPERUSER_PASSWORD", "APS_MES_OWNER_PASSWORD"} & set(environment)
    # Every published port is bound to loopback only.
    for service in config["services"].values():
        for port in service.get("ports", []):
            # compose v1 prints the short syntax "127.0.0.1:55432:5432"
            host_ip = port.get("host_ip") if isinstance(port, dict) else port.split(":")[0]
            assert host_ip == "127.0.0.1", port


@pytest.mark.tools
def test_compose_refuses_to_start_without_a_secret(tmp_path: Path) -> None:
    env_file = _filled_env(tmp_path)
    kept = [
        line
        for line in env_file.read_text().splitlines()
        if not line.startswith("APS_S3_SECRET_KEY=")
    ]
    env_file.write_text("\n".join(kept) + "\n")
    result = _compose_config(env_file)
    assert result.returncode != 0
    assert "APS_S3_SECRET_KEY" in result.stderr


def test_no_secret_value_is_committed_in_the_example_env() -> None:
    for line in EXAMPLE_ENV.read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        key, _, value = line.partition("=")
        if key.endswith(("_PASSWORD", "_SECRET_KEY", "_ACCESS_KEY")):
            assert value == "", f"{key} has a value in {EXAMPLE_ENV}"


@pytest.mark.parametrize(
    "path",
    [
        "Dockerfile",
        "infra/docker/images/postgres.Dockerfile",
        "infra/docker/images/minio.Dockerfile",
        "infra/docker/images/trino.Dockerfile",
    ],
)
def test_dockerfile_passes_hadolint(path: str) -> None:
    hadolint = shutil.which("hadolint") or str(REPO / ".venv" / "bin" / "hadolint")
    result = subprocess.run(
        [hadolint, "--failure-threshold", "info", str(REPO / path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _pins(path: Path) -> dict[str, str]:
    text = path.read_text()
    return dict(re.findall(r"^([A-Za-z0-9_.\-\[\]]+)==(\S+)", text, re.M))


def test_the_image_lock_pins_the_same_versions_as_the_development_lock() -> None:
    """The Dockerfile installs requirements-runtime.lock (no dev tools); it must not drift
    from requirements.lock, which the tests run with."""
    runtime, full = _pins(REPO / "requirements-runtime.lock"), _pins(REPO / "requirements.lock")
    assert runtime, "requirements-runtime.lock is empty"
    assert {k: v for k, v in runtime.items() if full.get(k) != v} == {}
    assert "pytest" not in runtime and "dagster" in runtime


def test_every_runtime_dependency_is_in_the_image_lock() -> None:
    import tomllib

    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    runtime = {name.lower() for name in _pins(REPO / "requirements-runtime.lock")}
    names = {re.split(r"[\[=<>]", dep, maxsplit=1)[0].lower() for dep in declared}
    assert names - runtime == set(), "run `make lock` after changing pyproject.toml"


def test_deploy_writes_a_private_settings_file_with_fresh_secrets(tmp_path: Path) -> None:
    env_file = tmp_path / "infra.env"
    values = []
    for _ in range(2):
        env_file.unlink(missing_ok=True)
        result = subprocess.run(
            [str(REPO / "infra" / "docker" / "deploy"), "env"],
            env={"PATH": "/usr/bin:/bin", "APS_COMPOSE_ENV_FILE": str(env_file)},
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert env_file.stat().st_mode & 0o077 == 0
        values.append(dict(line.split("=", 1) for line in env_file.read_text().splitlines()))
    example = [
        line.split("=")[0]
        for line in EXAMPLE_ENV.read_text().splitlines()
        if line and not line.startswith("#")
    ]
    for key in example:
        assert values[0][key], f"{key} left empty"
        if key.endswith(("_PASSWORD", "_SECRET_KEY", "_ACCESS_KEY")):
            assert len(values[0][key]) >= 16 and values[0][key] != values[1][key], key
    # a second call keeps the file it finds
    kept = env_file.read_text()
    subprocess.run(
        [str(REPO / "infra" / "docker" / "deploy"), "env"],
        env={"PATH": "/usr/bin:/bin", "APS_COMPOSE_ENV_FILE": str(env_file)},
        check=True,
        capture_output=True,
    )
    assert env_file.read_text() == kept


@pytest.mark.tools
def test_compose_hands_the_alert_settings_to_the_code_location_and_limits_memory(
    tmp_path: Path,
) -> None:
    """Alerts run as sensors in the code location: its environment gets infra/.env's
    APS_ALERT_*; every long-running container has a memory limit."""
    env_file = _filled_env(tmp_path)
    with env_file.open("a") as out:
        out.write("APS_ALERT_SLACK_TOKEN=xoxb-from-env\nAPS_ALERT_SLACK_CHANNEL=#aps\n")
    result = _compose_config(env_file)
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    environment = services["code-location"]["environment"]
    assert environment["APS_ALERT_SLACK_TOKEN"] == "xoxb-from-env"
    assert environment["APS_ALERT_SLACK_CHANNEL"] == "#aps"
    assert "APS_ALERT_SLACK_TOKEN" not in services["webserver"]["environment"]
    for name, service in services.items():
        assert service.get("mem_limit"), f"{name} has no memory limit"


@pytest.mark.tools
def test_the_dagster_services_and_their_runs_take_the_image_of_the_commit(
    tmp_path: Path,
) -> None:
    """deploy sets APS_IMAGE_TAG to the last build's commit tag (infra/docker/code-tag):
    the services run that image and the daemon launches every run on it."""
    env_file = _filled_env(tmp_path)
    with env_file.open("a") as out:
        out.write("APS_IMAGE_TAG=0123456789ab\n")
    result = _compose_config(env_file)
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    for name in ("code-location", "webserver", "daemon", "minio-init"):
        assert services[name]["image"] == "aps-etl:0123456789ab", name
    environment = services["code-location"]["environment"]
    assert environment["DAGSTER_CURRENT_IMAGE"] == "aps-etl:0123456789ab"
    tag = subprocess.run(
        [str(REPO / "infra" / "docker" / "code-tag")], capture_output=True, text=True, check=True
    ).stdout.strip()
    head = subprocess.run(
        ["git", "rev-parse", "--short=12", "HEAD"], cwd=REPO, capture_output=True, text=True
    ).stdout.strip()
    assert tag.removesuffix("-dirty") == head
