"""ComposeRunLauncher speaks to the Docker socket proxy's terms (infra/docker/haproxy/):
every call names the run's container (`<project>-run-<run id>`, never its id, which the
proxy refuses), the create request carries only what the proxy's create rule allows, and
terminate only stops (the webserver's entrance allows nothing else).
Against a stand-in Docker API that records what it is asked; the real proxy is tested on
the compose deployment (aps_etl_tests/deploy/test_compose_boundaries.py)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import dagster as dg
import pytest
from dagster._core.launcher.base import WorkerStatus
from dagster._core.test_utils import create_run_for_test

from aps_etl.instance.compose_run_launcher import ComposeRunLauncher

CONTAINER_ID = "f" * 64


class DockerStandIn(BaseHTTPRequestHandler):
    calls: list[tuple[str, str, Any]] = []
    state = "running"

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        self.calls.append((self.command, self.path, body))
        status, out = 200, {}
        if self.path == "/version":
            out = {"ApiVersion": "1.41", "Version": "20.10.24"}
        elif "/containers/create" in self.path:
            status, out = 201, {"Id": CONTAINER_ID, "Warnings": []}
        elif self.path.endswith("/json") and self.state == "gone":
            status, out = 404, {"message": "No such container"}
        elif self.path.endswith("/json"):
            name = self.path.split("/")[3]
            out = {"Id": CONTAINER_ID, "Name": f"/{name}", "State": {"Status": self.state}}
        elif self.command == "POST":
            status = 204
        data = json.dumps(out).encode() if status != 204 else b""
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_DELETE = _answer

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def docker_api(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[DockerStandIn]]:
    DockerStandIn.calls, DockerStandIn.state = [], "running"
    server = ThreadingHTTPServer(("127.0.0.1", 0), DockerStandIn)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("DOCKER_HOST", f"tcp://127.0.0.1:{server.server_port}")
    monkeypatch.setenv("APS_COMPOSE_PROJECT", "plant")
    yield DockerStandIn
    server.shutdown()
    server.server_close()


def test_every_call_names_the_runs_container_and_the_create_asks_only_what_is_allowed(
    docker_api: type[DockerStandIn],
) -> None:
    with dg.instance_for_test() as instance:
        launcher = ComposeRunLauncher(
            container_kwargs={"mem_limit": "3g"}, env_vars=["APS_ENV=prod"]
        )
        launcher.register_instance(instance)
        run = create_run_for_test(instance, job_name="aps_daily")
        name = f"plant-run-{run.run_id}"
        launcher._launch_container_with_command(run, "aps-etl:0123456789ab", ["dagster", "api"])
        run = instance.get_run_by_id(run.run_id)
        assert run is not None
        assert run.tags["docker/container_id"] == CONTAINER_ID
        health = launcher.check_run_worker_health(run)
        assert health.status == WorkerStatus.RUNNING
        assert launcher.terminate(run.run_id) is True

    calls = [(method, path) for method, path, _ in docker_api.calls if path != "/version"]
    assert calls == [
        ("POST", f"/v1.41/containers/create?name={name}"),
        ("POST", f"/v1.41/containers/{name}/start"),
        ("GET", f"/v1.41/containers/{name}/json"),  # the health check
        # terminate (from the webserver too, which may not inspect): stop it, by name
        ("POST", f"/v1.41/containers/{name}/stop"),
    ]
    create = next(body for _, path, body in docker_api.calls if "/create" in path)
    # what the proxy's create rule allows (infra/docker/haproxy/docker_api.lua), nothing else
    assert set(create) <= {
        "Image", "Cmd", "Env", "Labels", "HostConfig", "Tty", "OpenStdin", "StdinOnce",
        "AttachStdin", "AttachStdout", "AttachStderr", "NetworkDisabled",
    }  # fmt: skip
    assert create["Image"] == "aps-etl:0123456789ab"
    assert create["HostConfig"] == {
        "NetworkMode": "plant",
        "Binds": ["plant-ca:/tls:ro"],
        "Memory": 3 * 1024**3,
    }
    assert create["Labels"]["dagster/run_id"] == run.run_id
    assert not any(create[flag] for flag in ("Tty", "AttachStdout", "AttachStderr"))
    assert "APS_ENV=prod" in create["Env"]


@pytest.mark.parametrize(("state", "seen"), [("exited", "FAILED"), ("gone", "NOT_FOUND")])
def test_run_monitoring_sees_an_exited_or_removed_container(
    docker_api: type[DockerStandIn], state: str, seen: str
) -> None:
    docker_api.state = state
    with dg.instance_for_test() as instance:
        launcher = ComposeRunLauncher()
        launcher.register_instance(instance)
        run = create_run_for_test(
            instance, job_name="aps_daily", tags={"docker/container_id": CONTAINER_ID}
        )
        health = launcher.check_run_worker_health(run)
    assert health.status == WorkerStatus[seen], health
    # found by name, not by the id in the run's tags
    assert docker_api.calls[-1][1] == f"/v1.41/containers/plant-run-{run.run_id}/json"


def test_resume_is_off() -> None:
    # one container per run, named after it (run monitoring resumes nothing here either)
    assert ComposeRunLauncher().supports_resume_run is False


def test_a_container_setting_the_proxy_refuses_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match="privileged"):
        ComposeRunLauncher(container_kwargs={"privileged": True})
