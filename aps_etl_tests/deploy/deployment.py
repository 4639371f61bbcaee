"""The compose deployment as its tests drive it: the names and commands the fixtures in
conftest.py and the test files share (the fixtures start one deployment for the package)."""

from __future__ import annotations

import fcntl
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from dagster_graphql import DagsterGraphQLClient
from gql.transport.requests import RequestsHTTPTransport

from aps_etl.env.stack import REPO_ROOT

REPO = REPO_ROOT
COMPOSE = REPO / "infra" / "docker-compose.yml"
DEPLOY = REPO / "infra" / "docker" / "deploy"
IMAGES = (
    "aps-etl:latest",
    "aps-etl/postgres:15",
    "aps-etl/minio:latest",
    "aps-etl/trino:476",
    "aps-etl/haproxy:2.6",
)
UI_USER = "admin"
# its own project (so its own network and CA volume): a deployment on the same engine, or
# another checkout's test, is left alone
PROJECT = f"aps-etl-test-{os.getpid()}"


def free_ports(count: int) -> list[int]:
    """Distinct free ports: every socket stays bound until all are picked, because the
    kernel hands a just-closed port out again (CI saw the web port equal another's)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def docker(*args: str, check: bool = True, timeout: float = 600) -> str:
    result = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and result.returncode != 0:
        raise AssertionError(f"docker {' '.join(args[:3])}: {result.stderr[-2000:]}")
    return result.stdout


def compose(env_file: Path, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    command = shutil.which("docker-compose")
    assert command, "docker-compose is missing: infra/docker/engine up installs it"
    return subprocess.run(
        [command, "-p", PROJECT, "--env-file", str(env_file), "-f", str(COMPOSE), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def container_of(service: str) -> str:
    """The id of a service's container (by compose's labels: one quick docker call, where
    docker-compose takes seconds to start)."""
    labels = (
        f"label=com.docker.compose.project={PROJECT}",
        f"label=com.docker.compose.service={service}",
    )
    ids = docker("ps", "-aq", "--filter", labels[0], "--filter", labels[1]).split()
    assert ids, f"no container for {service}"
    return ids[0]


def wait_for_a_build_in_progress(timeout_s: float = 1800) -> None:
    """make test builds the images beside the suite (scripts/test-suite): wait until that
    build, holding infra/docker/build's lock, is done."""
    lock = REPO / ".docker" / "build.lock"
    if not lock.exists():
        return
    deadline = time.monotonic() + timeout_s
    with lock.open() as fd:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                assert time.monotonic() < deadline, (
                    f"infra/docker/build still running after {timeout_s} s"
                )
                time.sleep(2)


def pg_uri(env: dict[str, str], user: str, password_var: str, database: str) -> str:
    """A PostgreSQL URI of the deployment's database, on its published port."""
    return (
        f"postgresql://{user}:{env[password_var]}@127.0.0.1:{env['APS_COMPOSE_PG_PORT']}/{database}"
    )


def ui_url(deployment: dict[str, Any], path: str = "") -> str:
    """The UI's front: the deployment's only published Dagster port, HTTPS."""
    return f"https://127.0.0.1:{deployment['env']['APS_COMPOSE_UI_PORT']}{path}"


def ui_client(deployment: dict[str, Any]) -> DagsterGraphQLClient:
    """The webserver's GraphQL API through the UI's front, as an operator's script reaches
    it: HTTPS verified against the deployment's CA, the admin user's password."""
    transport = RequestsHTTPTransport(
        url=ui_url(deployment, "/graphql"),
        use_json=True,
        timeout=300,
        auth=(UI_USER, deployment["env"]["APS_UI_ADMIN_PASSWORD"]),
        verify=str(deployment["tls"] / "ca.crt"),
    )
    return DagsterGraphQLClient("127.0.0.1", transport=transport)
