"""PostgreSQL over TLS, verified: the dev stack serves a certificate of its own CA
(infra/stack: tls/ca.crt), and the source and target connect with sslmode=verify-full as
production does (the host name checked against the certificate: 127.0.0.1 and localhost).
An untrusted certificate fails at once, named, and is not retried."""

import subprocess
from pathlib import Path

import dagster as dg
import pytest

from aps_etl.env.settings import ConfigurationError, resources_for
from aps_etl.env.stack import stack_home
from aps_etl.lib.postgres import DatabaseError, PostgresConnection

pytestmark = pytest.mark.stack


def _reader(settings: dict[str, str], **tls: str) -> PostgresConnection:
    return PostgresConnection(
        database=settings["APS_MES_DB"],
        host=tls.pop("host", settings["APS_PG_HOST"]),
        port=int(settings["APS_PG_PORT"]),
        user=settings["APS_MES_READER_USER"],
        password=settings["APS_MES_READER_PASSWORD"],
        **tls,
    )


def _ssl_in_use(db: PostgresConnection) -> list[dict]:
    table = db.fetch_arrow(
        "select ssl, version from pg_stat_ssl where pid = pg_backend_pid()"
    ).to_pylist()
    return table


def test_verify_full_against_the_stack_ca(stack_settings: dict[str, str]) -> None:
    ca = stack_home() / "tls" / "ca.crt"
    db = _reader(stack_settings, sslmode="verify-full", sslrootcert=str(ca))
    (row,) = _ssl_in_use(db)
    assert row["ssl"] is True and row["version"].startswith("TLS")
    assert "sslmode=verify-full" in db.describe()


def test_an_untrusted_certificate_fails_at_once_and_is_not_retried(
    stack_settings: dict[str, str], tmp_path: Path
) -> None:
    other = tmp_path / "other-ca.crt"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(tmp_path / "other.key"), "-out", str(other), "-subj", "/CN=other"],
        check=True, capture_output=True,
    )  # fmt: skip
    db = _reader(stack_settings, sslmode="verify-full", sslrootcert=str(other))
    with pytest.raises(DatabaseError) as error:
        db.open()
    assert "certificate verify failed" in str(error.value)
    assert not error.value.transient  # the RetryPolicy does not retry it
    assert stack_settings["APS_MES_READER_PASSWORD"] not in str(error.value)


def test_the_environment_sets_tls_and_endpoints_per_database(
    stack_settings: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    ca = str(stack_home() / "tls" / "ca.crt")
    monkeypatch.setenv("APS_PG_SSLMODE", "verify-full")
    monkeypatch.setenv("APS_PG_SSLROOTCERT", ca)
    monkeypatch.setenv("APS_TARGET_PG_HOST", "localhost")  # the target: its own endpoint
    resources = resources_for("dev")
    source = resources["source"].process_config_and_initialize()
    target = resources["loader"].target.process_config_and_initialize()
    assert (source.host, source.sslmode, source.sslrootcert) == (
        stack_settings["APS_PG_HOST"],
        "verify-full",
        ca,
    )
    assert target.host == "localhost" and target.sslmode == "verify-full"
    assert _ssl_in_use(target)[0]["ssl"] is True
    # bad settings are refused by name before anything connects
    monkeypatch.setenv("APS_SOURCE_PG_SSLROOTCERT", str(tmp_path / "missing.crt"))
    with pytest.raises(ConfigurationError, match="APS_SOURCE_PG_SSLROOTCERT"):
        resources_for("dev")
    monkeypatch.delenv("APS_SOURCE_PG_SSLROOTCERT")
    monkeypatch.setenv("APS_SOURCE_PG_SSLMODE", "sometimes")
    with pytest.raises(ConfigurationError, match="APS_SOURCE_PG_SSLMODE='sometimes'"):
        resources_for("dev")
    assert isinstance(resources["source"], dg.ConfigurableResource)
