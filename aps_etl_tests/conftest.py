"""Fixtures shared by the suites that talk to the dev stack (infra/stack)."""

from __future__ import annotations

import os
import threading
import uuid
import warnings
from typing import Any

import pytest

from aps_etl.env.stack import load_stack_env
from aps_etl.lib.lake import LakeResource
from aps_etl_tests.stand_ins import SlackStandIn

# Retries provoked by the tests back off from 0.5 s instead of 5 s (read when a retry is
# scheduled: aps_etl.defs.retries).
os.environ.setdefault("APS_RETRY_DELAY_S", "0.5")

# platformdirs warns about a missing XDG_RUNTIME_DIR on headless machines: noise.
warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")


@pytest.fixture(scope="session")
def stack_settings() -> dict[str, str]:
    """The running dev stack's settings; an error (never a skip) when it is not up."""
    return load_stack_env()


@pytest.fixture
def minio_lake(stack_settings: dict[str, str]):
    """A LakeResource on MinIO under a unique prefix of the bucket, removed afterwards."""
    prefix = f"tests/{uuid.uuid4().hex[:12]}"
    lake = LakeResource(
        root=f"s3://{stack_settings['APS_S3_BUCKET']}/{prefix}",
        s3_endpoint=stack_settings["APS_S3_ENDPOINT"],
        s3_region=stack_settings["APS_S3_REGION"],
        s3_access_key=stack_settings["APS_S3_ACCESS_KEY"],
        s3_secret_key=stack_settings["APS_S3_SECRET_KEY"],
    )
    yield lake
    if lake.fs.exists(lake.root):
        lake.fs.rm(lake.root, recursive=True)


@pytest.fixture
def slack():
    """A local server answering as Slack's chat.postMessage; records what arrived."""
    stand_in = SlackStandIn()
    thread = threading.Thread(target=stand_in.server.serve_forever, daemon=True)
    thread.start()
    yield stand_in
    stand_in.server.shutdown()
    stand_in.server.server_close()
    thread.join()


# The folder a test lives in is its tier, and its marker: `make unit` runs unit/ and
# definitions/ (no service), `make test` everything.
TIERS = ("unit", "definitions", "stack", "faults", "deploy")
NO_SERVICE = ("unit", "definitions")


ORDER = {"faults": 0, "deploy": 2}  # after the stack group; every other folder: 1
# The stack's tests share its `mes`, `aps` and `dagster` databases: one worker runs them,
# one after another. They live in stack/, but for these (a faults/ module on the stack).
STACK_FILES = (
    "aps_etl_tests/faults/test_faults.py",
    "aps_etl_tests/faults/test_network_faults.py",
)
# The compose deployment's files share one deployment (aps_etl_tests/deploy/conftest.py):
# one worker runs them all, so it is started once.
COMPOSE_FILES = "aps_etl_tests/deploy/test_compose_"


def _tier(item: pytest.Item) -> str | None:
    return next((part for part in item.path.parts[-3:-1] if part in TIERS), None)


def group_of(nodeid: str) -> str:
    """The worker group of a test, from its id alone (pytest-xdist's controller sees ids,
    not items): "stack" for the stack's tests, "compose" for the compose deployment's, else
    its file (module fixtures made once)."""
    path = nodeid.split("::")[0]
    if path.startswith(COMPOSE_FILES):
        return "compose"
    return "stack" if path.startswith("aps_etl_tests/stack/") or path in STACK_FILES else path


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """`--dist loadgroup` by group_of: pytest-xdist's own loadgroup reads `xdist_group`
    markers through an attribute pytest 9 no longer has (every test became its own group)."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ByGroup(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return group_of(nodeid)

    return ByGroup(config, log)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Each test gets its folder's marker. A test that uses the dev stack (directly or
    through a fixture) is marked `stack` too; outside stack/ (and STACK_FILES) that is an
    error, not a silent re-marking: it would break the fast tier's promise of no service, or
    run beside the stack's other tests under pytest-xdist (group_of)."""
    misplaced = []
    for item in items:
        tier = _tier(item)
        if tier is None:
            raise pytest.UsageError(f"{item.nodeid}: a test belongs in one of {TIERS}")
        item.add_marker(getattr(pytest.mark, tier))
        if "stack_settings" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.stack)
        if item.get_closest_marker("stack") and group_of(item.nodeid) != "stack":
            misplaced.append(item.nodeid)
    # The stack's group is the longest chain (~15 min): first, so a worker takes it at once;
    # then the minutes-long faults/, the rest, and deploy/ last (the compose test waits for
    # the image build make test runs beside the suite).
    items.sort(key=lambda item: (group_of(item.nodeid) != "stack", ORDER.get(_tier(item) or "", 1)))
    if misplaced:
        raise pytest.UsageError(
            "these tests use the dev stack outside stack/ (and STACK_FILES): move them there, "
            "so they never run beside the stack's other tests: " + ", ".join(misplaced)
        )


# Where a parallel run's time went: each worker's busy seconds (the sum of its tests' setup,
# call and teardown) and the groups it ran, printed at the end (the slowest group bounds
# the run: conftest's ORDER and group_of decide what runs beside what).
_BUSY: dict[str, dict[str, float]] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    node = getattr(report, "node", None)  # set on the controller of a pytest-xdist run
    worker = node.gateway.id if node is not None else "main"
    groups = _BUSY.setdefault(worker, {})
    group = group_of(report.nodeid)
    groups[group] = groups.get(group, 0.0) + report.duration


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if len(_BUSY) < 2:
        return
    terminalreporter.write_sep("=", "busy seconds per worker (its three slowest groups)")
    for worker, groups in sorted(_BUSY.items()):
        top = sorted(groups.items(), key=lambda kv: -kv[1])[:3]
        shown = ", ".join(f"{name.split('/')[-1]} {s:.0f}" for name, s in top)
        terminalreporter.write_line(f"{worker}: {sum(groups.values()):.0f} s ({shown})")
