"""Trino's client settings are checked when the resources are made: production needs a
password over https, a CA file that exists, a scheme that matches."""

from __future__ import annotations

from pathlib import Path

import pytest

from aps_etl.env.settings import ConfigurationError, _trino


def test_trino_settings_are_checked_at_start(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("APS_TRINO_HOST", "127.0.0.1")
    monkeypatch.setenv("APS_TRINO_PORT", "8443")
    monkeypatch.setenv("APS_TRINO_USER", "aps_etl")
    for name in ("APS_TRINO_PASSWORD", "APS_TRINO_HTTP_SCHEME", "APS_TRINO_SSLROOTCERT"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigurationError, match="APS_TRINO_PASSWORD"):
        _trino("prod")  # production: a password, over https
    monkeypatch.setenv("APS_TRINO_PASSWORD", "x")
    assert _trino("prod").http_scheme == "https"  # the default with a password
    monkeypatch.setenv("APS_TRINO_SSLROOTCERT", str(tmp_path / "missing.crt"))
    with pytest.raises(ConfigurationError, match="APS_TRINO_SSLROOTCERT: no CA file at"):
        _trino("prod")
    monkeypatch.delenv("APS_TRINO_SSLROOTCERT")
    monkeypatch.setenv("APS_TRINO_HTTP_SCHEME", "http")
    with pytest.raises(ConfigurationError, match="over https only"):
        _trino("prod")
    monkeypatch.setenv("APS_TRINO_HTTP_SCHEME", "ftp")
    with pytest.raises(ConfigurationError, match="APS_TRINO_HTTP_SCHEME='ftp'"):
        _trino("dev")
