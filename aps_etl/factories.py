"""Asset factories: the thin Dagster wiring that every scenario shares.

- extract: one asset per ExtractSpec, write-once in the lake, reused when present;
- transform: a pure Polars function, validated against its declared OutputTable before
  the lake sees it (a violation stops the run: nothing is written, nothing loaded);
- load: the lake partition into its PostgreSQL table through the TargetLoader.
"""

import inspect
from collections.abc import Callable, Mapping
from typing import Any

import dagster as dg
import polars as pl

from aps_etl.lake import REUSED, LakeResource, LakeTable, parse_partition_key
from aps_etl.sources.database import SourceDatabase, SourceError
from aps_etl.sources.extraction import extract_partition
from aps_etl.sources.specs import ExtractSpec
from aps_etl.validation import raise_on_violations
from aps_etl.warehouse.loaders import TargetLoader
from aps_etl.warehouse.target import PermanentLoadError

# Transient failures (a database restart, an S3 hiccup, Trino busy) are retried with
# backoff; validation failures raise dg.Failure(allow_retries=False) and are not.
TRANSIENT_RETRY = dg.RetryPolicy(max_retries=3, delay=5, backoff=dg.Backoff.EXPONENTIAL)


def extract_key(job_name: str, name: str) -> dg.AssetKey:
    return dg.AssetKey(["extract", job_name, name])


def transform_key(job_name: str, name: str) -> dg.AssetKey:
    return dg.AssetKey(["transform", job_name, name])


def extract_table(spec: ExtractSpec, job_name: str, partition_name: str = "date") -> LakeTable:
    return LakeTable("extract", job_name, spec.name, partition_name, immutable=True)


def build_extract_asset(
    spec: ExtractSpec,
    job_name: str,
    partitions_def: dg.PartitionsDefinition,
    partition_name: str = "date",
) -> dg.AssetsDefinition:
    lake_table = extract_table(spec, job_name, partition_name)

    @dg.asset(
        key=extract_key(job_name, spec.name),
        partitions_def=partitions_def,
        metadata=lake_table.as_metadata(),
        description=spec.description,
        group_name=f"{job_name}_extract",
        kinds={"postgres", "parquet"},
        retry_policy=TRANSIENT_RETRY,
    )
    def _extract(context: dg.AssetExecutionContext, source: SourceDatabase, lake: LakeResource):
        key = context.partition_key
        if lake.fs.exists(lake.uri(*lake_table.file_parts(key))):
            # Write-once: reprocessing regenerates from this Parquet, never re-queries.
            return REUSED
        try:
            frame, metadata = extract_partition(source, spec, partition_name, key)
        except SourceError as exc:
            if exc.transient:
                raise  # RetryPolicy retries it with backoff
            raise dg.Failure(description=str(exc), allow_retries=False) from None
        context.log.info(f"extracted {frame.height} rows of {spec.name} for {key}")
        context.add_output_metadata(metadata)
        return frame.lazy()

    return _extract


def transform_table(output: Any, job_name: str) -> LakeTable:
    """Daily outputs carry base_date (lake folders date=...), plan outputs run_id."""
    partition_name = "date" if output.partition_column == "base_date" else output.partition_column
    return LakeTable(
        "transform", job_name, output.name, partition_name, partition_column=output.partition_column
    )


def build_transform_asset(
    output: Any,
    job_name: str,
    logic: Callable[..., pl.LazyFrame],
    inputs: Mapping[str, dg.AssetKey],
    partitions_def: dg.PartitionsDefinition,
    description: str | None = None,
) -> dg.AssetsDefinition:
    """`logic(**frames, day=date)` computes the table; `inputs` maps its parameters to
    upstream asset keys."""
    lake_table = transform_table(output, job_name)
    wanted = inspect.signature(logic).parameters

    @dg.asset(
        key=transform_key(job_name, output.name),
        ins={param: dg.AssetIn(key=key) for param, key in inputs.items()},
        partitions_def=partitions_def,
        metadata={**lake_table.as_metadata(), "grain": ", ".join(output.grain)},
        description=description or (logic.__doc__ or "").strip().split("\n")[0],
        group_name=job_name,
        kinds={"polars", "parquet"},
    )
    def _transform(context: dg.AssetExecutionContext, **frames: pl.LazyFrame) -> pl.DataFrame:
        kwargs: dict[str, Any] = dict(frames)
        if "day" in wanted:
            kwargs["day"] = parse_partition_key(context.partition_key)
        if "partition_key" in wanted:
            kwargs["partition_key"] = context.partition_key
        frame = logic(**kwargs).collect()
        raise_on_violations(context, output, frame)
        return frame

    return _transform


def gate_key(run_name: str) -> dg.AssetKey:
    return dg.AssetKey(["validated", run_name])


def build_gate_asset(
    run_name: str, transforms: list[dg.AssetKey], partitions_def: dg.PartitionsDefinition
) -> dg.AssetsDefinition:
    """Passes only when every transform of the run validated: each load waits for it, so
    one invalid table stops every load of the run before anything is written."""

    @dg.asset(
        key=gate_key(run_name),
        deps=transforms,
        partitions_def=partitions_def,
        group_name="validation_gates",
        description=f"All outputs of {run_name} passed their Null / Type / Range rules.",
    )
    def _gate(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        return dg.MaterializeResult(metadata={"validated_tables": len(transforms)})

    return _gate


def build_load_asset(
    output: Any,
    job_name: str,
    partitions_def: dg.PartitionsDefinition,
    gate: str,
) -> dg.AssetsDefinition:
    """`gate`: the run whose validation gate (see build_gate_asset) the load waits for."""
    lake_table = transform_table(output, job_name)

    @dg.asset(
        key=dg.AssetKey(["load", job_name, output.name]),
        deps=[transform_key(job_name, output.name), gate_key(gate)],
        partitions_def=partitions_def,
        description=f"{output.name} loaded into the target PostgreSQL, one partition at a time.",
        group_name=f"{job_name}_load",
        kinds={"trino", "postgres"},
        retry_policy=TRANSIENT_RETRY,
    )
    def _load(context: dg.AssetExecutionContext, loader: TargetLoader) -> dg.MaterializeResult:
        try:
            report = loader.load(output, lake_table, context.partition_key)
        except PermanentLoadError as exc:
            # A drifted target or inconsistent stage will not heal by retrying.
            raise dg.Failure(description=str(exc), allow_retries=False) from None
        context.log.info(
            f"loaded {report.rows} rows into {output.name} for {context.partition_key} "
            f"via {report.loader} in {report.seconds:.2f} s"
        )
        return dg.MaterializeResult(metadata=report.metadata())

    return _load
