"""unit/test_lake.py's lake tests again, on MinIO (the dev stack's S3) instead of a local
folder: conditional PUTs, atomic publication and listing behave as S3 does."""

from __future__ import annotations

import pytest

from aps_etl.lib.lake import LakeResource
from aps_etl_tests.unit.test_lake import (  # noqa: F401  collected here, on MinIO
    test_a_failed_write_leaves_no_partition_and_keeps_the_previous_one,
    test_a_killed_process_leaves_no_partition,
    test_a_long_chain_or_a_big_change_is_written_whole,
    test_a_snapshot_version_is_written_once_even_by_racing_writers,
    test_delta_versions_resolve_to_whole_versions,
    test_extract_partitions_are_write_once,
    test_hive_layout_and_metadata,
    test_missing_upstream_partition_is_named,
    test_snapshot_versions_sit_side_by_side_and_the_newest_is_read,
    test_transform_partitions_are_overwritten,
)


@pytest.fixture(params=["minio"])
def lake(minio_lake: LakeResource) -> LakeResource:
    return minio_lake
