"""The compose deployment's trust boundaries, on the running deployment (the package's one
deployment: conftest.py):

- the UI answers only over TLS (the deployment CA's certificate) and only with a password;
  no other Dagster port is published;
- the Docker engine is reached only through the socket proxy: the daemon holds no socket,
  and the proxy refuses it everything but its run launcher's calls (another container's
  inspect, which holds its environment, the container list, exec, a privileged container,
  another image, a host path);
- the webserver may only stop a run's container there (the UI's Terminate works);
- a run's container has no socket and cannot reach the proxy, the code server's gRPC or the
  webserver; run monitoring, through the proxy, still sees the run's container die.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import psycopg2
import pytest
import requests

from aps_etl_tests.deploy.deployment import (
    PROJECT,
    UI_USER,
    container_of,
    docker,
    pg_uri,
    ui_client,
    ui_url,
)
from aps_etl_tests.pipeline_harness import JOB

pytestmark = pytest.mark.docker

REFUSED = "refused by the Docker socket proxy"
# The days of the runs these tests hold, kill and terminate; the daily run's is 2026-11-20
# (test_compose_deployment.py).
HELD_DAYS = {"watched": "2026-11-19", "terminated": "2026-11-18"}


def _exec_python(container: str, script: str, *args: str) -> Any:
    """Run `script` with the container's own Python; what it prints, as JSON."""
    result = subprocess.run(
        ["docker", "exec", container, "python", "-c", script, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


def _ips(container: str) -> dict[str, str]:
    """The container's address on each of its networks."""
    networks = json.loads(docker("inspect", container))[0]["NetworkSettings"]["Networks"]
    return {name: net["IPAddress"] for name, net in networks.items()}


# -- the UI ---------------------------------------------------------------------------


def test_the_ui_answers_only_over_tls_and_only_with_the_password(
    deployment: dict[str, Any],
) -> None:
    ca = str(deployment["tls"] / "ca.crt")
    url = ui_url(deployment, "/server_info")
    anonymous = requests.get(url, verify=ca, timeout=30)
    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"].startswith("Basic")
    graphql = requests.post(
        ui_url(deployment, "/graphql"), json={"query": "{ version }"}, verify=ca, timeout=30
    )
    assert graphql.status_code == 401
    wrong = requests.get(url, verify=ca, timeout=30, auth=(UI_USER, "not-the-password"))
    assert wrong.status_code == 401
    right = requests.get(
        url, verify=ca, timeout=30, auth=(UI_USER, deployment["env"]["APS_UI_ADMIN_PASSWORD"])
    )
    assert right.status_code == 200, right.text
    assert "dagster_webserver_version" in right.json()
    # its certificate is the deployment CA's (for 127.0.0.1), not one the system trusts
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(url, timeout=30)
    # and it speaks nothing but TLS
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(url.replace("https://", "http://"), timeout=30)


def test_only_the_ui_front_publishes_a_dagster_port(deployment: dict[str, Any]) -> None:
    for service in ("webserver", "code-location", "daemon", "docker-api"):
        published = docker("port", container_of(service)).strip()
        assert published == "", f"{service} publishes {published}"
    ui = docker("port", container_of("ui")).strip()
    assert ui == f"8443/tcp -> 127.0.0.1:{deployment['env']['APS_COMPOSE_UI_PORT']}", ui


# -- the Docker engine ----------------------------------------------------------------


def test_only_the_socket_proxy_holds_the_docker_socket(deployment: dict[str, Any]) -> None:
    for service in ("postgres", "minio", "trino", "code-location", "webserver", "daemon", "ui"):
        inspected = json.loads(docker("inspect", container_of(service)))[0]
        sources = {m.get("Source") for m in inspected["Mounts"]}
        destinations = {m.get("Destination") for m in inspected["Mounts"]}
        assert "/var/run/docker.sock" not in sources | destinations, service
        assert not inspected["HostConfig"].get("GroupAdd"), f"{service} joins a group"
    daemon = container_of("daemon")
    seen = _exec_python(
        daemon,
        "import json, os; print(json.dumps([os.path.exists('/var/run/docker.sock'), "
        "os.environ.get('DOCKER_HOST')]))",
    )
    assert seen == [False, "tcp://docker-api:2375"]
    proxy = json.loads(docker("inspect", container_of("docker-api")))[0]
    assert "/var/run/docker.sock" in {m.get("Destination") for m in proxy["Mounts"]}
    assert proxy["HostConfig"]["ReadonlyRootfs"] and proxy["HostConfig"]["CapDrop"]
    assert not [e for e in proxy["Config"]["Env"] if "PASSWORD" in e or "SECRET" in e]


# What code running in the daemon could try through DOCKER_HOST (the daemon's docker-py):
# every call but its run launcher's, each answered with its status.
DAEMON_PROBE = r"""
import json, sys, uuid
import docker

project, postgres, code_location = sys.argv[1:4]
client = docker.from_env()
api = client.api
run_id = str(uuid.uuid4())
run = dict(
    command=["dagster", "api", "execute_run", "{}"],
    name=f"{project}-run-{run_id}",
    labels={"dagster/run_id": run_id},
    detach=True,
)


def create(image="aps-etl:latest", **host):
    host.setdefault("network_mode", project)
    return api.create_container(image, host_config=api.create_host_config(**host), **run)


calls = {
    "inspect postgres": lambda: api.inspect_container(postgres),
    "inspect the code location": lambda: api.inspect_container(code_location),
    "list containers": lambda: api.containers(all=True),
    "list the runs' containers": lambda: api.containers(filters={"label": "dagster/run_id"}),
    "exec in postgres": lambda: api.exec_create(postgres, ["env"]),
    "stop postgres": lambda: api.stop(postgres),
    "images": lambda: api.images(),
    "volumes": lambda: api.volumes(),
    "info": lambda: api.info(),
    "a privileged run container": lambda: create(privileged=True),
    "a run container from another image": lambda: create(image="aps-etl/postgres:15"),
    "a run container with a host path": lambda: create(binds=["/:/host:ro"]),
    "a run container with the socket": lambda: create(
        binds=["/var/run/docker.sock:/var/run/docker.sock"]
    ),
    "a run container in the host's network": lambda: create(network_mode="host"),
    "a container not named as a run": lambda: api.create_container(
        "aps-etl:latest", ["dagster", "api", "execute_run", "{}"], name="probe", detach=True,
        host_config=api.create_host_config(network_mode=project),
    ),
}
answers = {"version": api.version()["ApiVersion"], "run_id": run_id}
for name, call in calls.items():
    try:
        call()
        answers[name] = [200, "allowed"]
    except docker.errors.APIError as e:
        answers[name] = [e.status_code, e.explanation]
print(json.dumps(answers))
"""


def test_the_socket_proxy_refuses_all_but_the_run_launchers_calls(
    deployment: dict[str, Any],
) -> None:
    postgres, code_location = (container_of(s) for s in ("postgres", "code-location"))
    answers = _exec_python(container_of("daemon"), DAEMON_PROBE, PROJECT, postgres, code_location)
    assert answers.pop("version")  # docker-py's hello passes
    run_id = answers.pop("run_id")
    allowed = {call: answer for call, answer in answers.items() if answer[0] != 403}
    assert allowed == {}, allowed
    assert all(REFUSED in explanation for _, explanation in answers.values()), answers
    # the reasons name what was refused
    assert "Privileged" in answers["a privileged run container"][1]
    assert "aps-etl image" in answers["a run container from another image"][1]
    assert "Binds" in answers["a run container with a host path"][1]
    # and nothing was created
    assert docker("ps", "-aq", "--filter", f"name={PROJECT}-run-{run_id}").strip() == ""
    assert docker("ps", "-aq", "--filter", "name=^/probe$").strip() == ""


# -- a run's container ----------------------------------------------------------------


def _run_status(deployment: dict[str, Any], run_id: str) -> str:
    return ui_client(deployment).get_run_status(run_id).value


def _graphql(deployment: dict[str, Any], query: str, variables: dict[str, Any]) -> Any:
    """A GraphQL request through the UI's front: its data."""
    answer = requests.post(
        ui_url(deployment, "/graphql"),
        json={"query": query, "variables": variables},
        auth=(UI_USER, deployment["env"]["APS_UI_ADMIN_PASSWORD"]),
        verify=str(deployment["tls"] / "ca.crt"),
        timeout=60,
    )
    assert answer.status_code == 200, answer.text[:2000]
    return answer.json()["data"]


# What the webserver's docker-py may do through its entrance of the proxy, but stop a run.
WEBSERVER_PROBE = r"""
import json, sys
import docker

run_container, postgres = sys.argv[1:3]
api = docker.from_env().api
calls = {
    "inspect a run's container": lambda: api.inspect_container(run_container),
    "stop postgres": lambda: api.stop(postgres),
    "list containers": lambda: api.containers(all=True),
    "create a run's container": lambda: api.create_container(
        "aps-etl:latest", ["dagster", "api", "execute_run", "{}"], detach=True,
        name=run_container + "-copy",
    ),
}
answers = {}
for name, call in calls.items():
    try:
        call()
        answers[name] = 200
    except docker.errors.APIError as e:
        answers[name] = e.status_code
print(json.dumps(answers))
"""


@pytest.fixture(scope="module")
def held_runs(deployment: dict[str, Any], mes_source: str) -> Iterator[dict[str, dict[str, str]]]:
    """Two runs of `aps_daily`, each STARTED in its own container and held there: the MES's
    tables are locked (ACCESS EXCLUSIVE) until the module ends, so their first read waits.
    One to look from and kill ("watched"), one to terminate from the UI. The plan tables
    stay free: the plan sensor's snapshot runs of the seeded plans go on meanwhile, done
    before the daily run of test_compose_deployment.py rather than beside it."""
    env = deployment["env"]
    superuser = psycopg2.connect(
        pg_uri(env, "postgres", "APS_PG_SUPERUSER_PASSWORD", "mes") + "?sslmode=require"
    )
    try:
        with superuser.cursor() as cursor:  # the transaction stays open: the locks are held
            cursor.execute(
                "select tablename from pg_tables where schemaname = 'mes' "
                "and tablename not like 'plan%'"
            )
            tables = ", ".join(f'mes."{name}"' for (name,) in cursor.fetchall())
            assert tables, "the source has no table"
            cursor.execute(f"lock table {tables} in access exclusive mode")
        client = ui_client(deployment)
        runs = {
            # no retry of a run killed on purpose (run_retries would start another)
            role: client.submit_job_execution(
                JOB, tags={"dagster/partition": day, "dagster/max_retries": "0"}
            )
            for role, day in HELD_DAYS.items()
        }
        deadline = time.monotonic() + 300
        status = {role: "" for role in runs}
        while time.monotonic() < deadline:
            status = {role: _run_status(deployment, run_id) for role, run_id in runs.items()}
            if not {"QUEUED", "NOT_STARTED", "STARTING"} & set(status.values()):
                break
            time.sleep(1)
        assert set(status.values()) == {"STARTED"}, f"runs {runs}: {status}"
        yield {
            role: {"run_id": run_id, "container": f"{PROJECT}-run-{run_id}"}
            for role, run_id in runs.items()
        }
    finally:
        superuser.rollback()
        superuser.close()


# From inside a run's container: what it can reach. Each answer is "connected" or why not
# (side by side: an address on a network the container is not on times out).
RUN_PROBE = r"""
import json, os, socket, sys
from concurrent.futures import ThreadPoolExecutor

def reach(target):
    try:
        socket.create_connection(tuple(target), timeout=3).close()
        return "connected"
    except OSError as e:
        return type(e).__name__

targets = json.loads(sys.argv[1])
with ThreadPoolExecutor(len(targets)) as pool:
    answers = dict(zip(targets, pool.map(reach, targets.values())))
answers["socket"] = os.path.exists("/var/run/docker.sock")
answers["DOCKER_HOST"] = os.environ.get("DOCKER_HOST")
print(json.dumps(answers))
"""


def test_a_runs_container_reaches_neither_the_engine_nor_the_code_server_nor_the_webserver(
    deployment: dict[str, Any], held_runs: dict[str, dict[str, str]]
) -> None:
    container = held_runs["watched"]["container"]
    inspected = json.loads(docker("inspect", container))[0]
    assert inspected["State"]["Running"], inspected["State"]
    # its only mount is the CA's certificate
    assert [(m["Destination"], m["RW"]) for m in inspected["Mounts"]] == [("/tls", False)]
    assert not inspected["HostConfig"]["Privileged"]
    assert list(inspected["NetworkSettings"]["Networks"]) == [PROJECT]
    proxy = _ips(container_of("docker-api"))
    code_location = _ips(container_of("code-location"))
    webserver = _ips(container_of("webserver"))
    targets = {
        "the proxy by name": ["docker-api", 2375],
        "the proxy's address": [next(iter(proxy.values())), 2375],
        "the code server by name": ["code-server", 4000],
        "the code location on the run's network": ["code-location", 4000],
        "the code server's address": [code_location[f"{PROJECT}_grpc"], 4000],
        "the webserver on the run's network": ["webserver", 3000],
        "the webserver's address": [webserver[f"{PROJECT}_ui"], 3000],
        # what it must reach: its database (a positive control for the probe itself)
        "postgres": ["postgres", 5432],
    }
    answers = _exec_python(container, RUN_PROBE, json.dumps(targets))
    assert answers.pop("socket") is False
    assert answers.pop("DOCKER_HOST") is None
    assert answers.pop("postgres") == "connected"
    reached = {name: answer for name, answer in answers.items() if answer == "connected"}
    assert reached == {}, answers


def test_the_uis_terminate_stops_a_runs_container_through_the_proxy(
    deployment: dict[str, Any], held_runs: dict[str, dict[str, str]]
) -> None:
    """The webserver may stop a run's container (its own entrance of the proxy) and do
    nothing else there: not inspect it, not touch another container."""
    run_id, container = held_runs["terminated"]["run_id"], held_runs["terminated"]["container"]
    mutation = """
        mutation ($runId: String!) { terminateRun(runId: $runId) {
            __typename ... on PythonError { message } ... on TerminateRunFailure { message } } }
    """
    answer = _graphql(deployment, mutation, {"runId": run_id})["terminateRun"]
    assert answer["__typename"] == "TerminateRunSuccess", answer
    deadline = time.monotonic() + 60
    state = docker("inspect", "-f", "{{.State.Status}}", container).strip()
    while state == "running" and time.monotonic() < deadline:
        time.sleep(1)
        state = docker("inspect", "-f", "{{.State.Status}}", container).strip()
    assert state == "exited"
    assert _run_status(deployment, run_id) in ("CANCELING", "CANCELED")
    # and that is all the webserver may do with the engine
    webserver = container_of("webserver")
    watched = held_runs["watched"]["container"]
    postgres = container_of("postgres")
    answers = _exec_python(webserver, WEBSERVER_PROBE, watched, postgres)
    assert answers == {
        "inspect a run's container": 403,
        "stop postgres": 403,
        "list containers": 403,
        "create a run's container": 403,
    }, answers


def test_run_monitoring_sees_a_runs_container_die_through_the_proxy(
    deployment: dict[str, Any], held_runs: dict[str, dict[str, str]]
) -> None:
    """Last of the held runs' tests: it kills the watched run's container. The daemon's run
    monitoring looks the container up through the proxy, by its name, finds it exited and
    fails the run."""
    run_id, container = held_runs["watched"]["run_id"], held_runs["watched"]["container"]
    docker("kill", container)
    deadline = time.monotonic() + 180  # a poll every 20 s (dagster.yaml run_monitoring)
    status = _run_status(deployment, run_id)
    while status == "STARTED" and time.monotonic() < deadline:
        time.sleep(2)
        status = _run_status(deployment, run_id)
    assert status == "FAILURE", f"run {run_id}: {status}"
    query = """
        query ($runId: ID!) { logsForRun(runId: $runId) { ... on EventConnection {
            events { __typename ... on MessageEvent { message } } } } }
    """
    events = _graphql(deployment, query, {"runId": run_id})["logsForRun"]["events"]
    failure = [e["message"] for e in events if e["__typename"] == "RunFailureEvent"]
    assert failure and "Container status is exited" in failure[-1], failure
