"""The transient retry policy: its delay is a setting read when a retry is scheduled."""

import subprocess
import sys

import pytest

from aps_etl.defs.retries import TRANSIENT_RETRY, retry_delay_s


def test_the_delay_is_read_when_a_retry_is_scheduled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APS_RETRY_DELAY_S", "2")
    assert [TRANSIENT_RETRY.calculate_delay(n) for n in (1, 2, 3)] == [2, 6, 14]
    monkeypatch.setenv("APS_RETRY_DELAY_S", "0.5")  # after the definitions were imported
    assert TRANSIENT_RETRY.calculate_delay(1) == 0.5
    monkeypatch.delenv("APS_RETRY_DELAY_S")
    assert retry_delay_s() == 5.0
    assert TRANSIENT_RETRY.max_retries == 3


@pytest.mark.parametrize("value", ["soon", "-1", "nan"])
def test_a_bad_delay_is_refused_by_name_when_the_definitions_load(value: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", "import aps_etl.definitions"],
        env={"APS_RETRY_DELAY_S": value, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert f"APS_RETRY_DELAY_S='{value}': give the first retry's delay in seconds" in (
        result.stderr
    )
