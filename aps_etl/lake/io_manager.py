"""Dagster IO manager that keeps Polars frames as Hive-partitioned Parquet in the lake.

Built on dagster's UPathIOManager as dagster-polars builds on it, and past its limits:
- Hive-style folders (see layout.py) instead of `<asset>/<partition>.parquet`;
- LazyFrames are streamed to Parquet, and the row count is read back from the file
  footer, so every output records `row_count` even when it was never collected;
- versioned write-once snapshots for extracts (snapshots.py: the extract step publishes
  them and returns the Snapshot; readers get the newest version), atomic publication for
  everything (atomic.py);
- one output spanning several partitions (a single-run backfill) is written per partition,
  from a {partition key: frame} mapping or split by the table's partition column, instead
  of refused.
Inputs load as LazyFrames (a {partition key: LazyFrame} mapping for several partitions):
nothing is read until the consumer collects.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import dagster as dg
import polars as pl
from dagster import UPathIOManager
from pydantic import PrivateAttr

from aps_etl.calendar import parse_partition_key
from aps_etl.lake import lineage as lineages
from aps_etl.lake import snapshots
from aps_etl.lake.atomic import WrittenFile, write_parquet
from aps_etl.lake.layout import LakeTable
from aps_etl.lake.snapshots import Snapshot
from aps_etl.lake.storage import LakeResource

if TYPE_CHECKING:
    from upath import UPath


def lake_table_of(context: dg.InputContext | dg.OutputContext) -> LakeTable:
    if isinstance(context, dg.InputContext):
        upstream = context.upstream_output
        metadata = upstream.definition_metadata if upstream else {}
    else:
        metadata = context.definition_metadata
    return LakeTable.from_metadata(metadata or {}, context.asset_key.to_user_string())


class LakeIOManager(dg.ConfigurableIOManager, UPathIOManager):
    """Persists Polars frames to `<root>/<stage>/job_name=<job>/<dim>=<key>/<table>/`."""

    lake: LakeResource
    _base_path = PrivateAttr()
    # {step key: {partition: lineage}} of what each step's inputs were read from: the
    # step's outputs carry it in their footers (lineage.py).
    _reads: dict[str, dict[str, lineages.Lineage]] = PrivateAttr(default_factory=dict)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self._base_path = self.lake.upath()

    # UPathIOManager's path hook: our layout comes from the table, not the asset key.
    def _get_paths_for_partitions(
        self, context: dg.InputContext | dg.OutputContext
    ) -> dict[str, UPath]:
        table = lake_table_of(context)
        return {
            key: self.lake.upath(*table.file_parts(key)) for key in context.asset_partition_keys
        }

    def dump_to_path(self, context: dg.OutputContext, obj: Any, path: UPath) -> None:
        raise NotImplementedError("handle_output writes through write_parquet")

    def load_from_path(self, context: dg.InputContext, path: UPath) -> pl.LazyFrame:
        return self._scan([str(path)], context)

    # ---- output -----------------------------------------------------------------------

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        if obj is None:
            return
        table = lake_table_of(context)
        keys = context.asset_partition_keys if context.has_asset_partitions else []
        if not keys:
            raise ValueError(
                f"lake table {table.table} is partitioned by {table.partition_name}; "
                f"asset {context.asset_key.to_user_string()} has no partition"
            )
        if isinstance(obj, Mapping):
            if set(obj) != set(keys):
                raise ValueError(
                    f"{context.asset_key.to_user_string()} returned partitions "
                    f"{sorted(obj)} for a run of {sorted(keys)}"
                )
            parts = {key: obj[key] for key in keys}
        else:
            parts = {key: self._slice(obj, table, key, len(keys)) for key in keys}
        written: list[WrittenFile] = []
        schemas: list[Any] = []
        kept: list[Snapshot] = []
        given = (context.output_metadata or {}).get(lineages.OUTPUT_METADATA_KEY)
        given = getattr(given, "value", given) or {}
        read = self._reads.get(context.step_key, {})
        lineage_of = {key: {**read.get(key, {}), **given.get(key, {})} for key in parts}
        for key, part in parts.items():
            if isinstance(part, Snapshot):  # published by the extract step itself
                written.append(WrittenFile(part.uri, part.rows, part.size_bytes))
                kept.append(part)
                continue
            if not isinstance(part, pl.LazyFrame | pl.DataFrame):
                raise TypeError(
                    f"{context.asset_key.to_user_string()} returned {type(part).__name__}; "
                    "the lake stores Polars DataFrames or LazyFrames"
                )
            written.append(
                write_parquet(
                    self.lake,
                    table.file_parts(key),
                    part,
                    immutable=table.immutable,
                    metadata=lineages.footer(lineage_of[key]) if lineage_of[key] else None,
                )
            )
            schemas.append(part)
        # A declared output shows its column schema from the definition (descriptions,
        # constraints); the Parquet's own is for the extracts, which declare none there.
        declared = "dagster/column_schema" in (context.definition_metadata or {})
        metadata = self._metadata(None if declared or not schemas else schemas[0], written)
        if kept:
            metadata["snapshot_versions"] = dg.MetadataValue.json(
                {s.partition: s.version for s in kept}
            )
        elif any(lineage_of.values()):
            # which snapshot versions each partition was computed from
            metadata["snapshot_versions"] = dg.MetadataValue.json(
                {
                    key: {name: info["version"] for name, info in sorted(lin.items())}
                    for key, lin in lineage_of.items()
                }
            )
        context.add_output_metadata(metadata)

    def _slice(self, frame: Any, table: LakeTable, key: str, n_keys: int) -> Any:
        if n_keys == 1 or isinstance(frame, Snapshot):
            return frame
        if not table.partition_column:
            raise ValueError(
                f"lake table {table.table} got one output for {n_keys} partitions but declares "
                "no partition_column to split it by"
            )
        value: Any = parse_partition_key(key) if table.partition_name == "date" else key
        return frame.filter(pl.col(table.partition_column) == value)

    def _metadata(self, obj: Any, written: list[WrittenFile]) -> dict[str, Any]:
        rows = sum(w.rows for w in written)
        metadata: dict[str, Any] = {
            "row_count": dg.MetadataValue.int(rows),
            "dagster/row_count": dg.MetadataValue.int(rows),
            "parquet_path": dg.MetadataValue.path(written[0].uri),
            "size_bytes": dg.MetadataValue.int(sum(w.size_bytes for w in written)),
        }
        if len(written) > 1:
            metadata["parquet_paths"] = dg.MetadataValue.json([w.uri for w in written])
        schema = obj if isinstance(obj, pl.Schema) else None
        if isinstance(obj, pl.LazyFrame | pl.DataFrame):
            schema = obj.collect_schema()
        if schema is not None:
            metadata["dagster/column_schema"] = dg.TableSchema(
                columns=[
                    dg.TableColumn(name=name, type=str(dtype)) for name, dtype in schema.items()
                ]
            )
        return metadata

    # ---- input ------------------------------------------------------------------------

    def load_input(self, context: dg.InputContext) -> pl.LazyFrame | dict[str, pl.LazyFrame]:
        table = lake_table_of(context)
        keys = context.asset_partition_keys if context.has_asset_partitions else []
        if not keys:
            raise ValueError(f"input {context.asset_key.to_user_string()} has no partition")
        frames, lineage = (
            self._snapshots(context, table, keys)
            if table.immutable
            else self._transforms(context, table, keys)
        )
        # what the step read, for the lineage of what it writes
        reads = self._reads.setdefault(context.step_context.step.key, {})
        for key, found in lineage.items():
            reads.setdefault(key, {}).update(found)
        return frames[keys[0]] if len(keys) == 1 else frames

    def _snapshots(
        self, context: dg.InputContext, table: LakeTable, keys: list[str]
    ) -> tuple[dict[str, pl.LazyFrame], dict[str, lineages.Lineage]]:
        """Each partition's newest snapshot version."""
        found = {key: snapshots.newest(self.lake, table, key) for key in keys}
        missing = [key for key, snapshot in found.items() if snapshot is None]
        if missing:
            folders = ", ".join(self.lake.uri(*table.partition_parts(k)) for k in missing)
            raise FileNotFoundError(
                f"no snapshot of {table.table} in the lake for {', '.join(missing)} "
                f"({folders}). Materialize {context.asset_key.to_user_string()} for these "
                "partitions first."
            )
        return (
            {key: snapshots.scan(self.lake, table, snap) for key, snap in found.items() if snap},
            {key: lineages.of_snapshot(table, snap) for key, snap in found.items() if snap},
        )

    def _transforms(
        self, context: dg.InputContext, table: LakeTable, keys: list[str]
    ) -> tuple[dict[str, pl.LazyFrame], dict[str, lineages.Lineage]]:
        uris = {key: self.lake.uri(*table.file_parts(key)) for key in keys}
        missing = [uri for uri in uris.values() if not self.lake.fs.exists(uri)]
        if missing:
            raise FileNotFoundError(
                f"lake partition(s) of {table.table} not found: {', '.join(missing)}. "
                f"Materialize {context.asset_key.to_user_string()} for these partitions first."
            )
        return (
            {key: self._scan([uri], context) for key, uri in uris.items()},
            # a transform's own lineage: what it was computed from
            {key: lineages.read_file(self.lake, uri)[1] for key, uri in uris.items()},
        )

    def _scan(self, uris: list[str], context: dg.InputContext) -> pl.LazyFrame:
        del context
        return pl.scan_parquet(uris, storage_options=self.lake.polars_storage_options())


def partition_date(context: dg.AssetExecutionContext) -> dt.date:
    """The business day of a daily-partitioned run, with a clear error on a bad key."""
    return parse_partition_key(context.partition_key)
