"""What a load did, per table and partition (LoadReport) and per call (PartitionLoads): the
load assets' metadata and messages are made of these."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import dagster as dg

from aps_etl.lib.warehouse import merge, target


@dataclass(frozen=True)
class LoadReport:
    table: str
    partition: str
    rows: int
    seconds: float
    loader: str
    statement: str | None = None
    snapshots: dict[str, Any] | None = None
    swap_seconds: float = 0.0
    swap_attempts: int = 0
    merged: merge.MergeCounts | None = None  # a merge table's inserted/updated/deleted

    def metadata(self) -> dict[str, Any]:
        metadata: dict[str, Any] = {
            "target_table": f"{target.TARGET_SCHEMA}.{self.table}",
            "rows_loaded": dg.MetadataValue.int(self.rows),
            "dagster/partition_row_count": dg.MetadataValue.int(self.rows),
            "loader": self.loader,
            "load_seconds": dg.MetadataValue.float(round(self.seconds, 3)),
            "swap_seconds": dg.MetadataValue.float(round(self.swap_seconds, 3)),
            "swap_attempts": dg.MetadataValue.int(self.swap_attempts),
        }
        if self.snapshots:
            metadata["snapshot_versions"] = dg.MetadataValue.json(
                {name: info.get("version") for name, info in sorted(self.snapshots.items())}
            )
        if self.merged is not None:
            metadata["load_mode"] = "merge"
            metadata.update(self.merged.metadata())
        if self.statement:
            metadata["load_sql"] = dg.MetadataValue.md(f"```sql\n{self.statement}\n```")
        return metadata


@dataclass
class PartitionLoads:
    """What load_partitions did: reports per table (a partition each), the partitions that
    failed (nothing of them swapped) and the leftovers of dead runs it cleaned."""

    reports: dict[str, list[LoadReport]] = field(default_factory=dict)
    failures: dict[str, list[tuple[str, BaseException]]] = field(default_factory=dict)
    dropped_stages: list[str] = field(default_factory=list)
    killed_queries: list[str] = field(default_factory=list)

    def errors(self) -> list[BaseException]:
        return [exc for failures in self.failures.values() for _, exc in failures]

    def raise_first(self) -> None:
        if self.failures:
            raise self.errors()[0]

    def describe_failures(self) -> str:
        return "\n".join(
            f"{key} ({name}): {exc}"
            for key, failures in sorted(self.failures.items())
            for name, exc in failures
        )
