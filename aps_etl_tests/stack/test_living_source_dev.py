"""definitions/test_living_source.py's tests again on the dev stack (PostgreSQL, MinIO,
Trino): corrected, late, deleted and moved MES rows heal by themselves there too."""

from __future__ import annotations

import pytest

from aps_etl_tests.definitions import test_living_source as on_local
from aps_etl_tests.definitions.test_living_source import living, seeded_plant

# The same tests, collected here in the order that module defines them: each changes the
# source in turn, and the later ones count the snapshot versions the earlier ones made
# (pytest collects a module's names in their order in it; an import list is alphabetical).
globals().update({name: test for name, test in vars(on_local).items() if name.startswith("test_")})
__all__ = ["living"]


@pytest.fixture(scope="module", params=["dev"])
def plant(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    yield from seeded_plant(request, tmp_path_factory)
