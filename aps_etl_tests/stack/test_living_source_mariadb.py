"""definitions/test_living_source.py's tests again with a MariaDB MES (the dev stack's,
APS_SOURCE_ENGINE=mariadb): corrected, late, deleted and moved rows, updated_at going
backwards and forwards, an emptied day refilled later and an edited plan run heal by
themselves exactly as on PostgreSQL. Each change is made on the PostgreSQL twin and
copied to MariaDB (aps_etl_tests/mariadb_twin.py); the reference SQL runs on the twin."""

from __future__ import annotations

import pytest

from aps_etl_tests.definitions import test_living_source as on_local
from aps_etl_tests.definitions.test_living_source import living, seeded_plant

# In that module's order: each test changes the source in turn (see test_living_source_dev).
globals().update({name: test for name, test in vars(on_local).items() if name.startswith("test_")})
__all__ = ["living"]


@pytest.fixture(scope="module", params=["dev-mariadb"])
def plant(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    yield from seeded_plant(request, tmp_path_factory)
