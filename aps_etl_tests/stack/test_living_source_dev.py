"""definitions/test_living_source.py's tests again on the dev stack (MinIO, Trino), with a
MariaDB MES (APS_SOURCE_ENGINE=mariadb): corrected, late, deleted and moved rows,
updated_at going backwards and forwards, an emptied day refilled later and an edited plan
run heal by themselves there too. Each change is made on the stack's PostgreSQL `mes`, the
MariaDB source's twin, and copied to MariaDB (aps_etl_tests/mariadb_twin.py); the
contract's reference SQL runs on the twin.

The PostgreSQL engine's living source runs on the embedded default (the definitions
module), and its dev-stack path in stack/test_job_dev_stack.py and
stack/test_mariadb_pipeline_dev.py: running all of it a third time here cost four minutes
of the suite's serial stack chain and covered nothing more."""

from __future__ import annotations

import pytest

from aps_etl_tests.definitions import test_living_source as on_local
from aps_etl_tests.definitions.test_living_source import living, seeded_plant

# The same tests, collected here in the order that module defines them: each changes the
# source in turn, and the later ones count the snapshot versions the earlier ones made
# (pytest collects a module's names in their order in it; an import list is alphabetical).
globals().update({name: test for name, test in vars(on_local).items() if name.startswith("test_")})
__all__ = ["living"]


@pytest.fixture(scope="module", params=["dev-mariadb"])
def plant(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    yield from seeded_plant(request, tmp_path_factory)
