"""unit/test_lake.py's lake tests again, on MinIO (the dev stack's S3) instead of a local
folder: conditional PUTs, atomic publication and listing behave as S3 does."""

from __future__ import annotations

import inspect

import pytest

from aps_etl.lib.lake import LakeResource
from aps_etl_tests.unit import test_lake as on_folder

# Every test of that module that takes the `lake` fixture, in the order it defines them.
globals().update(
    {
        name: test
        for name, test in vars(on_folder).items()
        if name.startswith("test_") and "lake" in inspect.signature(test).parameters
    }
)


@pytest.fixture(params=["minio"])
def lake(minio_lake: LakeResource) -> LakeResource:
    return minio_lake
