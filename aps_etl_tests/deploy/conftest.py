"""The compose deployment, started once for every test of this package that needs it
(test_compose_*.py: one pytest-xdist group, aps_etl_tests/conftest.py), and stopped with its
volumes after the last."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from aps_etl.devdata import seed_source
from aps_etl_tests.deploy.deployment import (
    DEPLOY,
    IMAGES,
    PROJECT,
    free_ports,
    pg_uri,
    wait_for_a_build_in_progress,
)

# Recreates the database's container with new passwords: run after every other test on the
# deployment, whichever file it is in.
RECREATES_POSTGRES = "test_postgres_applies_changed_passwords_at_restart_and_serves_without_them"

# The synthetic MES every test of the package reads: two days (the second is the daily
# run's, test_compose_deployment.py).
SOURCE_START, SOURCE_DAYS = dt.date(2026, 11, 19), 2


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """RECREATES_POSTGRES just after the last other test that uses the deployment (not at the
    very end: the package's deployment would be torn down and started again)."""
    moved = [item for item in items if item.name == RECREATES_POSTGRES]
    rest = [item for item in items if item.name != RECREATES_POSTGRES]
    users = [n for n, item in enumerate(rest) if "deployment" in getattr(item, "fixturenames", ())]
    at = users[-1] + 1 if users else len(rest)
    items[:] = rest[:at] + moved + rest[at:]


@pytest.fixture(scope="package")
def images() -> None:
    """The images `make images` builds; an error naming the command when one is missing."""
    wait_for_a_build_in_progress()
    for image in IMAGES:
        result = subprocess.run(["docker", "image", "inspect", image], capture_output=True)
        assert result.returncode == 0, f"image {image} is missing: run `make images`"


@pytest.fixture(scope="package")
def deployment(images: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """`infra/docker/deploy up` as an operator runs it, with a settings file of its own:
    every secret fresh from `deploy env` (as a first `up` writes them), its own ports."""
    folder = tmp_path_factory.mktemp("compose")
    env_file = folder / "compose.env"
    deploy_env = {
        **os.environ,
        "APS_COMPOSE_ENV_FILE": str(env_file),
        "APS_COMPOSE_PROJECT": PROJECT,
        "APS_COMPOSE_TLS_DIR": str(folder / "tls"),
    }

    def deploy(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(DEPLOY), *args], env=deploy_env, capture_output=True, text=True, timeout=900
        )

    written = deploy("env")
    assert written.returncode == 0, written.stderr
    ports = free_ports(4)
    with env_file.open("a") as out:
        for name, port in zip(("PG", "MINIO", "TRINO", "UI"), ports, strict=True):
            out.write(f"APS_COMPOSE_{name}_PORT={port}\n")
    deploy("down", "--volumes")  # a previous run's leftovers
    up = deploy("up")  # the README's command, as an operator runs it
    try:
        assert up.returncode == 0, f"infra/docker/deploy up failed:\n{up.stderr[-4000:]}"
        # what `up` wrote or added is in the file too
        env = dict(
            line.split("=", 1)
            for line in env_file.read_text().splitlines()
            if "=" in line and not line.startswith("#")
        )
        yield {"env": env, "env_file": env_file, "tls": folder / "tls"}
    finally:
        down = deploy("down", "--volumes")
        assert down.returncode == 0, down.stderr[-2000:]


@pytest.fixture(scope="package")
def mes_source(deployment: dict[str, Any]) -> str:
    """The deployment's `mes` (its owner's URI), seeded once for the package: its plan runs
    become snapshots in the lake as soon as the plan sensor sees them, so a second, different
    seed would leave the lake's plans disagreeing with the source's."""
    uri = pg_uri(deployment["env"], "mes_owner", "APS_MES_OWNER_PASSWORD", "mes")
    seed_source(uri, start_date=SOURCE_START, days=SOURCE_DAYS, lots=300, seed=11, progress=False)
    return uri
