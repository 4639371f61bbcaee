"""One extract of one partition, shared by the extract assets and by the assets that must
make sure a write-once snapshot exists (the plan in force, a previous plan run)."""

from __future__ import annotations

import contextlib

import polars as pl

from aps_etl.calendar import business_day_window, parse_partition_key
from aps_etl.lake.atomic import ImmutablePartitionError, write_parquet
from aps_etl.lake.layout import LakeTable
from aps_etl.lake.storage import LakeResource
from aps_etl.sources.database import SourceDatabase
from aps_etl.sources.specs import ExtractSpec


def extract_partition(
    source: SourceDatabase, spec: ExtractSpec, partition_name: str, key: str
) -> tuple[pl.DataFrame, dict[str, str]]:
    """The spec's rows for a partition (a business day, or a key such as a run_id), and
    metadata saying where they came from (no credentials)."""
    metadata = {"source": source.describe(), "extract_mode": spec.mode}
    if partition_name == "date":
        start, end = business_day_window(parse_partition_key(key))
        metadata["window_utc"] = f"[{start.isoformat()}, {end.isoformat()})"
        return source.extract(spec, start, end), metadata
    metadata[spec.partition_column or partition_name] = key
    return source.extract(spec, key=key), metadata


def ensure_extract(
    source: SourceDatabase, lake: LakeResource, spec: ExtractSpec, table: LakeTable, key: str
) -> str:
    """The URI of the write-once extract partition, extracting it first if absent."""
    uri = lake.uri(*table.file_parts(key))
    if lake.fs.exists(uri):
        return uri
    from aps_etl.sources.drift import check_drift  # drift imports database: keep it lazy

    check_drift(source, spec, spec.drift_policy, schema=None)
    frame, _ = extract_partition(source, spec, table.partition_name, key)
    # Another run may have written it meanwhile: write-once, so theirs is as good as ours.
    with contextlib.suppress(ImmutablePartitionError):
        write_parquet(lake, table.file_parts(key), frame, immutable=True)
    return uri
