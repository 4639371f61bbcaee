"""The image's entry point against the dev stack's PostgreSQL: a wrong password for Dagster's
storage is named at start, not retried."""

from __future__ import annotations

import pytest

from aps_etl.env.container_start import (
    StartRefused,
    reach_dagster_storage,
)
from aps_etl_tests.unit.test_container_start import STORAGE  # noqa: F401


@pytest.mark.stack
def test_wrong_password_is_named_at_once(stack_settings: dict[str, str]) -> None:
    env = {
        "APS_DAGSTER_PG_HOST": stack_settings["APS_DAGSTER_PG_HOST"],
        "APS_DAGSTER_PG_PORT": stack_settings["APS_DAGSTER_PG_PORT"],
        "APS_DAGSTER_PG_USER": stack_settings["APS_DAGSTER_PG_USER"],
        "APS_DAGSTER_PG_PASSWORD": "not-the-password",
    }
    with pytest.raises(StartRefused, match="refused us: .*password authentication failed"):
        reach_dagster_storage(env, wait_s=0)
