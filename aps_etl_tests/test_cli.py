"""Bad input to the `aps-etl` command ends in a clear message."""

import pytest

from aps_etl.cli import main


def test_malformed_date_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["seed-source", "--start-date", "2026-13-45"])
    assert exit_info.value.code == 2
    assert "not an ISO date (YYYY-MM-DD): '2026-13-45'" in capsys.readouterr().err


def test_unknown_environment_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APS_ENV", "staging")
    with pytest.raises(SystemExit, match="unknown environment 'staging'"):
        main(["seed-source", "--days", "1"])


def test_seed_refuses_production() -> None:
    with pytest.raises(SystemExit, match="refuses env 'prod'"):
        main(["seed-source", "--env", "prod"])
