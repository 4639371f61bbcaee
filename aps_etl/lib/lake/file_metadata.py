"""What a lake partition's materialization reports about its file: rows, size, address and
the snapshot versions it was computed from. Apart from io_manager.py, so that the extract
step's definitions need not import dagster-polars (io_manager_factory.py says why)."""

from __future__ import annotations

from typing import Any

import dagster as dg

from aps_etl.lib.lake import lineage as lineages
from aps_etl.lib.lake.atomic import WrittenFile
from aps_etl.lib.lake.snapshots import Snapshot


def file_metadata(written: WrittenFile) -> dict[str, Any]:
    """One partition's file: rows (from its Parquet footer), size and address."""
    return {
        "row_count": dg.MetadataValue.int(written.rows),
        "dagster/partition_row_count": dg.MetadataValue.int(written.rows),
        "size_bytes": dg.MetadataValue.int(written.size_bytes),
        "parquet_path": dg.MetadataValue.path(written.uri),
        "dagster/uri": dg.MetadataValue.path(written.uri),
    }


def versions_metadata(lineage: lineages.Lineage) -> dict[str, Any]:
    """The snapshot version of each extract a partition was computed from."""
    if not lineage:
        return {}
    return {
        "snapshot_versions": dg.MetadataValue.json(
            {name: info["version"] for name, info in sorted(lineage.items())}
        )
    }


def snapshot_metadata(snapshot: Snapshot) -> dict[str, Any]:
    """What an extract step reports for a partition's snapshot, taken or reused."""
    return {
        **file_metadata(WrittenFile(snapshot.uri, snapshot.rows, snapshot.size_bytes)),
        "snapshot_version": dg.MetadataValue.int(snapshot.version),
    }
