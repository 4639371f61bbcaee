"""Dagster IO manager that keeps Polars frames as Hive-partitioned Parquet in the lake.

dagster-polars' `BasePolarsUPathIOManager` with its hooks filled for our lake:
- `_get_paths_for_partitions`: Hive-style folders (layout.py) instead of
  `<asset>/<partition>.parquet`;
- `write_df_to_path` / `sink_df_to_path`: atomic publication (atomic.py: a DataFrame is
  written, a LazyFrame streamed, to a temporary file, then published in one step),
  write-once for immutable tables, the lineage in the footer, the row count read back from
  the footer (so a LazyFrame output records `row_count` without being collected);
- `scan_df_from_path`: a transform partition is its file; an extract partition is its
  newest versioned snapshot (snapshots.py: a delta version resolves to whole rows).
Kept from dagster-polars: typed loading (an input annotated `pl.DataFrame` is collected, a
`pl.LazyFrame` or unannotated one stays lazy, `dict[str, ...]` for several partitions),
the `columns` input metadata, and its output metadata (schema; a DataFrame's sample rows;
not its stats: get_metadata).

Beyond it: one output spanning several partitions (a single-run backfill) is written per
partition, from a {partition key: frame} mapping or split by the table's partition column,
where UPathIOManager refuses it, and each partition's metadata (rows, size, path, the
snapshot versions read) goes on its own materialization. Extract snapshots are published by
the extract step itself (version, fingerprint, conflict between racing writers) and
reported per partition with `snapshot_metadata(...)`: this manager only reads them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import dagster as dg
import polars as pl
from dagster_polars import BasePolarsUPathIOManager
from dagster_polars.io_managers.type_routers import TypeRouter
from dagster_polars.io_managers.utils import get_metadata_schema, get_table_metadata
from pydantic import PrivateAttr

from aps_etl.lib.business_days import parse_partition_key
from aps_etl.lib.lake import lineage as lineages
from aps_etl.lib.lake import snapshots
from aps_etl.lib.lake.atomic import WrittenFile, write_parquet
from aps_etl.lib.lake.file_metadata import file_metadata, versions_metadata
from aps_etl.lib.lake.layout import LakeTable
from aps_etl.lib.lake.storage import LakeResource
from aps_etl.lib.partitions import add_partition_metadata

if TYPE_CHECKING:
    from upath import UPath


def lake_table_of(context: dg.InputContext | dg.OutputContext) -> LakeTable:
    if isinstance(context, dg.InputContext):
        upstream = context.upstream_output
        metadata = upstream.definition_metadata if upstream else {}
    else:
        metadata = context.definition_metadata
    return LakeTable.from_metadata(metadata or {}, context.asset_key.to_user_string())


class LakeIOManager(BasePolarsUPathIOManager):
    """Persists Polars frames to `<root>/<stage>/job_name=<job>/<dim>=<key>/<table>/`."""

    lake: LakeResource
    # {path: (table, partition key)} of the paths this manager handed out: the hooks
    # below get a path and need the table and partition it stands for.
    _located: dict[str, tuple[LakeTable, str]] = PrivateAttr(default_factory=dict)
    # {lake uri: footer metadata} of the outputs being written, {lake uri: file} written.
    _footers: dict[str, dict[str, str] | None] = PrivateAttr(default_factory=dict)
    _written: dict[str, WrittenFile] = PrivateAttr(default_factory=dict)
    # {step key: {partition: lineage}} of what each step's inputs were read from: the
    # step's outputs carry it in their footers (lineage.py).
    _reads: dict[str, dict[str, lineages.Lineage]] = PrivateAttr(default_factory=dict)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self._base_path = self.lake.upath()

    @property
    def storage_options(self) -> dict[str, Any]:
        return self.lake.fsspec_options()

    # UPathIOManager's path hook: our layout comes from the table, not the asset key.
    def _get_paths_for_partitions(
        self, context: dg.InputContext | dg.OutputContext
    ) -> dict[str, UPath]:
        table = lake_table_of(context)
        keys = context.asset_partition_keys if context.has_asset_partitions else []
        if not keys:
            raise ValueError(
                f"lake table {table.table} is partitioned by {table.partition_name}; "
                f"asset {context.asset_key.to_user_string()} has no partition"
            )
        paths = {key: self.lake.upath(*table.file_parts(key)) for key in keys}
        for key, path in paths.items():
            self._located[str(path)] = (table, key)
        return paths

    def _get_path(self, context: dg.InputContext | dg.OutputContext) -> UPath:
        # every lake table is partitioned: an unpartitioned asset gets the error above
        return next(iter(self._get_paths_for_partitions(context).values()))

    def _locate(self, path: UPath) -> tuple[str, LakeTable, str]:
        table, key = self._located[str(path)]
        return self.lake.uri(*table.file_parts(key)), table, key

    def type_router_is_eager(self, type_router: TypeRouter) -> bool:
        # dagster-polars collects an unannotated (Any) input; the lake hands it over lazy,
        # so a transform reads only the columns and rows its plan needs.
        if type_router.is_base_type and type_router.typing_type in (Any, type(None), None):
            return False
        return super().type_router_is_eager(type_router)

    # ---- dagster-polars' storage hooks ------------------------------------------------

    def write_df_to_path(self, context: dg.OutputContext, df: pl.DataFrame, path: UPath) -> None:
        self._publish(df, path)

    def sink_df_to_path(self, context: dg.OutputContext, df: pl.LazyFrame, path: UPath) -> None:
        self._publish(df, path)  # streamed: never collected whole

    def _publish(self, frame: pl.DataFrame | pl.LazyFrame, path: UPath) -> None:
        uri, table, key = self._locate(path)
        self._written[uri] = write_parquet(
            self.lake,
            table.file_parts(key),
            frame,
            immutable=table.immutable,
            metadata=self._footers.get(uri),
        )

    def scan_df_from_path(self, path: UPath, context: dg.InputContext) -> pl.LazyFrame:
        uri, table, key = self._locate(path)
        if table.immutable:
            found = snapshots.newest(self.lake, table, key)
            if found is None:
                folder = self.lake.uri(*table.partition_parts(key))
                raise FileNotFoundError(
                    f"no snapshot of {table.table} in the lake for {key} ({folder}). "
                    f"Materialize {context.asset_key.to_user_string()} for this partition first."
                )
            lineage = lineages.of_snapshot(table, found)
            frame = snapshots.scan(self.lake, table, found)
        else:
            if not self.lake.fs.exists(uri):
                raise FileNotFoundError(
                    f"lake partition of {table.table} not found: {uri}. Materialize "
                    f"{context.asset_key.to_user_string()} for this partition first."
                )
            lineage = lineages.read_file(self.lake, uri)[1]  # what it was computed from
            frame = pl.scan_parquet(uri, storage_options=self.lake.polars_storage_options())
        # what the step read, for the lineage of what it writes
        reads = self._reads.setdefault(context.step_context.step.key, {})
        reads.setdefault(key, {}).update(lineage)
        return frame

    # ---- output -----------------------------------------------------------------------

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        if obj is None:
            return
        table = lake_table_of(context)
        paths = self._get_paths_for_partitions(context)
        keys = list(paths)
        if isinstance(obj, Mapping):
            if set(obj) != set(keys):
                raise ValueError(
                    f"{context.asset_key.to_user_string()} returned partitions "
                    f"{sorted(obj)} for a run of {sorted(keys)}"
                )
            parts = {key: obj[key] for key in keys}
        else:
            parts = {key: self._slice(obj, table, key, len(keys)) for key in keys}
        for part in parts.values():
            if not isinstance(part, pl.LazyFrame | pl.DataFrame):
                raise TypeError(
                    f"{context.asset_key.to_user_string()} returned {type(part).__name__}; "
                    "the lake stores Polars DataFrames or LazyFrames"
                )
        given = (context.output_metadata or {}).get(lineages.OUTPUT_METADATA_KEY)
        given = getattr(given, "value", given) or {}
        read = self._reads.get(context.step_key, {})
        lineage_of = {key: {**read.get(key, {}), **given.get(key, {})} for key in parts}
        written: dict[str, WrittenFile] = {}
        for key, part in parts.items():
            uri = self.lake.uri(*table.file_parts(key))
            if not table.immutable:
                # never roll a partition back to older snapshots than it was built from
                lineages.refuse_older(self.lake, uri, lineage_of[key])
            self._footers[uri] = lineages.footer(lineage_of[key]) if lineage_of[key] else None
            try:
                # dagster-polars: the output's annotation picks write (eager) or sink (lazy)
                self.dump_to_path(context, part, paths[key])
                written[key] = self._written.pop(uri)
            finally:
                self._footers.pop(uri, None)
        # Each partition's own: rows and size from its Parquet footer, path, the snapshot
        # versions it was computed from.
        own = {
            key: {**file_metadata(written[key]), **versions_metadata(lineage_of[key])}
            for key in parts
        }
        common = self._metadata(context, parts)
        if len(parts) == 1:
            context.add_output_metadata({**common, **own[keys[0]]})
        else:
            context.add_output_metadata(common)
            add_partition_metadata(context.step_context, context.asset_key, own)

    def _slice(self, frame: Any, table: LakeTable, key: str, n_keys: int) -> Any:
        if n_keys == 1:
            return frame
        if not table.partition_column:
            raise ValueError(
                f"lake table {table.table} got one output for {n_keys} partitions but declares "
                "no partition_column to split it by"
            )
        value: Any = parse_partition_key(key) if table.partition_name == "date" else key
        return frame.filter(pl.col(table.partition_column) == value)

    def get_metadata(
        self, context: dg.OutputContext, obj: pl.DataFrame | pl.LazyFrame | None
    ) -> dict[str, dg.MetadataValue]:
        """dagster-polars' output metadata (schema; a DataFrame's sample rows, size and
        partition row count) without its `describe()` stats: measured at 0.14 s of the
        1M-row day's 4.4 s run (3%), for numbers the planners' checks already bound."""
        if obj is None:
            return {}
        schema = get_metadata_schema(obj)
        metadata: dict[str, dg.MetadataValue] = {
            "dagster/column_schema": dg.MetadataValue.table_schema(schema)
        }
        if isinstance(obj, pl.DataFrame):
            table = get_table_metadata(context, obj, schema=schema, n_rows=5)
            if table is not None:
                metadata["table"] = table
            metadata["dagster/partition_row_count"] = dg.MetadataValue.int(obj.height)
            metadata["estimated_size_mb"] = dg.MetadataValue.float(obj.estimated_size("mb"))
        return metadata

    def _metadata(
        self, context: dg.OutputContext, parts: Mapping[str, pl.DataFrame | pl.LazyFrame]
    ) -> dict[str, Any]:
        """What all partitions of the output share: its schema (and for one partition,
        dagster-polars' sample rows and size)."""
        metadata: dict[str, Any] = {}
        first = next(iter(parts.values()))
        if len(parts) == 1:
            metadata.update(self.get_metadata(context, first))
        else:
            metadata["dagster/column_schema"] = _schema(first)
        # A declared output shows its column schema from the definition (descriptions,
        # constraints); the Parquet's own is for outputs that declare none.
        if "dagster/column_schema" in (context.definition_metadata or {}):
            metadata.pop("dagster/column_schema", None)
        return metadata


def _schema(frame: pl.DataFrame | pl.LazyFrame) -> dg.TableSchema:
    return dg.TableSchema(
        columns=[
            dg.TableColumn(name=name, type=str(dtype))
            for name, dtype in frame.collect_schema().items()
        ]
    )
