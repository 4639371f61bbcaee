"""A service's fault as the operator reads it (aps_etl/cli/faults.py): one line naming the
service and the cause, exit status 3; anything else is not described as a fault."""

from __future__ import annotations

import socket

import pytest
import s3fs
import sqlalchemy as sa

from aps_etl.cli.faults import describe
from aps_etl.lib.postgres import DatabaseError


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _raised(call) -> BaseException:
    try:
        call()
    except BaseException as exc:
        return exc
    raise AssertionError("nothing raised")


def test_dagster_storage_unreachable(monkeypatch: pytest.MonkeyPatch) -> None:
    port = _closed_port()
    monkeypatch.setenv("APS_DAGSTER_PG_HOST", "127.0.0.1")
    monkeypatch.setenv("APS_DAGSTER_PG_PORT", str(port))
    engine = sa.create_engine(
        f"postgresql+psycopg2://dagster:s3cret-pw@127.0.0.1:{port}/dagster",
        connect_args={"connect_timeout": 3},
    )
    line = describe(_raised(lambda: engine.connect()))
    assert line is not None and "\n" not in line
    assert line.startswith(f"Dagster's instance storage (PostgreSQL at 127.0.0.1:{port}): ")
    assert "Connection refused" in line or "connection" in line.lower()
    assert "s3cret-pw" not in line


def test_the_lake_unreachable(monkeypatch: pytest.MonkeyPatch) -> None:
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    monkeypatch.setenv("APS_S3_ENDPOINT", endpoint)
    fs = s3fs.S3FileSystem(
        key="k", secret="s", client_kwargs={"endpoint_url": endpoint},
        config_kwargs={"retries": {"max_attempts": 1}}, skip_instance_cache=True,
    )  # fmt: skip
    line = describe(_raised(lambda: fs.ls("data-lake")))
    assert line is not None and line.startswith(f"the lake ({endpoint}): "), line


def test_the_projects_own_transient_error_names_itself() -> None:
    error = DatabaseError("cannot connect to PostgreSQL database 'aps' at db:5432", transient=True)
    line = describe(error)
    assert line is not None and line.startswith("cannot connect to PostgreSQL database 'aps'")


@pytest.mark.parametrize(
    "error",
    [DatabaseError('relation "x" does not exist'), ValueError("bad"), KeyError("bug")],
    ids=["a database's refusal", "bad input", "a bug"],
)
def test_not_a_fault(error: BaseException) -> None:
    assert describe(error) is None
