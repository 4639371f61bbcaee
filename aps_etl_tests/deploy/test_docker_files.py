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
        "docker-api",
        "ui",
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
        "docker-api": "aps-etl/haproxy:2.6",
        "ui": "aps-etl/haproxy:2.6",
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


def _mounts(service: dict) -> list[str]:
    # compose v1 prints the short syntax "source:target[:mode]"
    return [
        v if isinstance(v, str) else f"{v['source']}:{v['target']}"
        for v in service.get("volumes", [])
    ]


def _networks(service: dict) -> set[str]:
    networks = service.get("networks") or {"default": None}
    return set(networks)


@pytest.mark.tools
def test_only_the_socket_proxy_holds_the_docker_socket_and_only_the_front_publishes_the_ui(
    tmp_path: Path,
) -> None:
    """The layout of issue 27: the engine's socket in the proxy alone (the daemon and the
    webserver reach it each over a network of its own), the webserver unpublished behind the
    TLS front, the code server's gRPC on a network of its own."""
    result = _compose_config(_filled_env(tmp_path))
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(result.stdout)
    services = config["services"]
    holders = {
        name for name, service in services.items()
        if any("docker.sock" in mount for mount in _mounts(service))
    }  # fmt: skip
    assert holders == {"docker-api"}
    assert not services["daemon"].get("group_add")
    assert services["daemon"]["environment"]["DOCKER_HOST"] == "tcp://docker-api:2375"
    proxy = services["docker-api"]
    assert proxy["read_only"] is True and proxy["cap_drop"] == ["ALL"]
    assert not proxy.get("ports")
    # who shares which network
    members = {
        network: {name for name, service in services.items() if network in _networks(service)}
        for network in config["networks"]
    }
    assert members["docker-api"] == {"daemon", "docker-api"}
    assert members["docker-stop"] == {"webserver", "docker-api"}
    assert members["grpc"] == {"code-location", "webserver", "daemon"}
    assert members["ui"] == {"ui", "webserver"}
    assert config["networks"]["docker-api"]["internal"] is True
    assert config["networks"]["docker-stop"]["internal"] is True
    assert config["networks"]["grpc"]["internal"] is True
    # the gRPC server and the webserver listen on those networks' addresses alone
    assert services["code-location"]["command"][3:5] == ["-h", "code-server"]
    assert services["webserver"]["command"][1:3] == ["-h", "webserver-ui"]
    # the UI's port is the front's, TLS; nothing else of Dagster's is published
    published = {name for name, service in services.items() if service.get("ports")}
    assert published == {"postgres", "minio", "trino", "ui"}
    assert services["ui"]["command"] == ["-f", "/etc/haproxy/ui.cfg", "-f", "/ui-tls/users.cfg"]
    workspace = yaml.safe_load((REPO / "infra" / "docker" / "workspace.yaml").read_text())
    assert workspace["load_from"][0]["grpc_server"]["host"] == "code-server"


def test_the_ui_front_asks_for_a_password_and_the_proxy_allows_only_runs() -> None:
    """The two HAProxy configurations, read as text: the front authenticates every request
    over TLS; the proxy's allow rules name nothing but the runs' containers (by name, under
    the API version prefix), the hello calls and the checked create, and the webserver's
    entrance only stopping them."""
    ui = (REPO / "infra" / "docker" / "haproxy" / "ui.cfg").read_text()
    assert re.search(r"^\s*bind :8443 ssl crt /ui-tls/ui.pem", ui, re.M)
    assert "http-request auth" in ui and "http_auth(ui_users)" in ui
    assert "http-request del-header Authorization" in ui
    proxy = (REPO / "infra" / "docker" / "haproxy" / "docker-api.cfg").read_text()
    sections = {
        section.split(None, 1)[0]: section for section in re.split(r"^frontend ", proxy, flags=re.M)
    }
    daemons, webservers = sections["docker_api"], sections["docker_stop"]
    allows = re.findall(r"^\s*http-request allow if (.*)$", daemons, re.M)
    assert allows == [
        "read hello !has_body !old_version",
        "read run_inspect !has_body !old_version",
        "post run_action !has_body !old_version",
        "delete run_container !has_body !old_version",
        "post create !old_version { lua.docker_create_allowed -m bool }",
    ]
    # the webserver's entrance: stop a run's container (the UI's Terminate), nothing else
    allows = re.findall(r"^\s*http-request allow if (.*)$", webservers, re.M)
    assert allows == ["read hello !has_body !old_version", "post run_stop !has_body !old_version"]
    for frontend in (daemons, webservers):
        assert re.search(r"^\s*http-request return status 403 ", frontend, re.M)
    run = '"^/containers/${APS_COMPOSE_PROJECT}-run-[0-9a-f-]{36}'
    for acl in ("run_inspect", "run_action", "run_container", "run_stop"):
        assert re.search(rf"^\s*acl {acl} var\(txn.path\) -m reg {re.escape(run)}", proxy, re.M)


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
        "infra/docker/images/haproxy.Dockerfile",
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
