"""Fixtures shared by the suites that talk to the dev stack (infra/stack)."""

from __future__ import annotations

import os
import threading
import uuid
import warnings

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


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that uses the dev stack (directly or through a fixture) is marked `stack`,
    whether or not it says so: `make unit` (-m "not stack ...") can trust the marker."""
    for item in items:
        if "stack_settings" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.stack)
