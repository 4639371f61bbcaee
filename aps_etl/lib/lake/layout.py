"""The lake's Hive-style layout, one place for every path.

    <root>/<stage>/job_name=<job>/<partition_name>=<key>/<table>/data.parquet

e.g. ``extract/job_name=aps_input/date=2026-11-25/process_result/data.parquet`` or
``extract/job_name=aps_plan/run_id=R20261125-01/plan_production/data.parquet``. Each
table's partition is a folder of its own so that Trino can register it as a Hive
partition location, and the partition folder uses the same string as the Dagster
partition key (ISO dates), which Trino reads as a DATE.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aps_etl.lib.business_days import PartitionKeyError, parse_partition_key

DATA_FILE = "data.parquet"
STAGES = ("extract", "transform")
_SAFE_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")
_META_PREFIX = "lake/"


def check_partition_key(partition_name: str, key: str) -> str:
    if partition_name == "date":
        parse_partition_key(key)
    elif not isinstance(key, str) or not _SAFE_KEY.fullmatch(key):
        raise PartitionKeyError(
            f"malformed partition key {key!r} for {partition_name}: "
            "expected letters, digits, '_', '.', '-'"
        )
    return key


@dataclass(frozen=True)
class LakeTable:
    """A table of the lake: where its partitions live and how they may be written."""

    stage: str
    job_name: str
    table: str
    partition_name: str = "date"
    # Extracts are write-once: a partition once written is never overwritten.
    immutable: bool = False
    # Column of the data that holds the partition key; splits multi-partition outputs.
    partition_column: str | None = None

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise ValueError(f"unknown lake stage {self.stage!r}; expected one of {STAGES}")
        for value in (self.job_name, self.table, self.partition_name):
            if not _SAFE_KEY.fullmatch(value):
                raise ValueError(f"unsafe lake path segment {value!r}")

    def job_parts(self) -> tuple[str, ...]:
        return (self.stage, f"job_name={self.job_name}")

    def partition_parts(self, key: str) -> tuple[str, ...]:
        check_partition_key(self.partition_name, key)
        return (*self.job_parts(), f"{self.partition_name}={key}", self.table)

    def file_parts(self, key: str) -> tuple[str, ...]:
        return (*self.partition_parts(key), DATA_FILE)

    def as_metadata(self) -> dict[str, Any]:
        """Asset definition metadata from which the IO manager finds the table again."""
        return {
            f"{_META_PREFIX}{field}": value
            for field, value in self.__dict__.items()
            if value is not None
        }

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any], asset: str) -> LakeTable:
        fields = {
            key.removeprefix(_META_PREFIX): getattr(value, "value", value)
            for key, value in metadata.items()
            if key.startswith(_META_PREFIX)
        }
        if not fields:
            raise ValueError(
                f"asset {asset} has no lake table metadata; define it with LakeTable.as_metadata()"
            )
        return cls(**fields)
