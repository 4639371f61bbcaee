"""definitions/test_living_source.py's tests again on the dev stack (PostgreSQL, MinIO,
Trino): corrected, late, deleted and moved MES rows heal by themselves there too."""

from __future__ import annotations

import pytest

from aps_etl_tests.definitions.test_living_source import (  # noqa: F401  collected here, on dev
    living,
    seeded_plant,
    test_a_changed_plan_run_fails_its_check_run_for_the_alert,
    test_a_forced_full_snapshot_run_takes_every_table_again,
    test_an_emptied_day_is_refused_then_loaded_when_its_rows_arrive,
    test_every_target_table_equals_the_reference_again,
    test_older_snapshots_stay_and_each_change_made_a_new_version,
    test_reconcile_brings_changed_days_back,
    test_the_load_log_names_the_snapshot_versions,
    test_the_sensor_requests_every_changed_day_once,
)


@pytest.fixture(scope="module", params=["dev"])
def plant(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    yield from seeded_plant(request, tmp_path_factory)
