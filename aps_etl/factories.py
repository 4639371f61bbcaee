"""Asset factories: the thin Dagster wiring that every scenario shares.

- extract: one asset per ExtractSpec, write-once in the lake, reused when present;
- transform: a pure Polars function, validated by blocking asset checks before the lake
  sees it (a violation stops the run: nothing is written, nothing loaded);
- load: the lake partition into its PostgreSQL table through the TargetLoader.

Every asset handles one partition or several in one run (a single-run backfill): inputs
arrive as {partition key: frame}, outputs leave the same way, and the lake IO manager
writes each partition to its own folder.
"""

import inspect
import os
import time
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import dagster as dg
import polars as pl

from aps_etl.lake import REUSED, LakeResource, LakeTable, parse_partition_key
from aps_etl.sources.database import SourceDatabase, SourceError
from aps_etl.sources.drift import check_drift
from aps_etl.sources.extraction import extract_partition
from aps_etl.sources.specs import ExtractSpec
from aps_etl.validation import check_specs, checked
from aps_etl.warehouse.loaders import TargetLoader
from aps_etl.warehouse.target import PermanentLoadError

# BackfillPolicy is "beta" in Dagster 1.13 but is the documented way to single-run backfills.
warnings.filterwarnings("ignore", message="Parameter `backfill_policy`")

# Transient failures (a database restart, an S3 hiccup, Trino busy) are retried with
# backoff; validation failures raise dg.Failure(allow_retries=False) and are not.
# APS_RETRY_DELAY_S sets the first delay (seconds; default 5, then 10, 20).
TRANSIENT_RETRY = dg.RetryPolicy(
    max_retries=3,
    delay=float(os.environ.get("APS_RETRY_DELAY_S", "5")),
    backoff=dg.Backoff.EXPONENTIAL,
)


def extract_key(job_name: str, name: str) -> dg.AssetKey:
    return dg.AssetKey(["extract", job_name, name])


def transform_key(job_name: str, name: str) -> dg.AssetKey:
    return dg.AssetKey(["transform", job_name, name])


def extract_table(spec: ExtractSpec, job_name: str, partition_name: str = "date") -> LakeTable:
    return LakeTable("extract", job_name, spec.name, partition_name, immutable=True)


def backfill_policy(partitions_def: dg.PartitionsDefinition) -> dg.BackfillPolicy | None:
    """Daily assets take a date range in one run (UI backfills and the CLI's
    --partition-range); plan runs are snapshotted one run per run_id."""
    return (
        dg.BackfillPolicy.single_run()
        if isinstance(partitions_def, dg.TimeWindowPartitionsDefinition)
        else None
    )


def per_partition(value: Any, keys: list[str]) -> dict[str, Any]:
    """An input as {key: frame}: the IO manager gives a dict for several partitions."""
    if isinstance(value, Mapping):
        return {key: value[key] for key in keys}
    return {key: value for key in keys}


def one_or_many(by_key: dict[str, Any]) -> Any:
    return next(iter(by_key.values())) if len(by_key) == 1 else by_key


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
        backfill_policy=backfill_policy(partitions_def),
        metadata=lake_table.as_metadata(),
        description=spec.description,
        group_name=f"{job_name}_extract",
        kinds={"postgres", "parquet"},
        retry_policy=TRANSIENT_RETRY,
    )
    def _extract(context: dg.AssetExecutionContext, source: SourceDatabase, lake: LakeResource):
        started = time.perf_counter()
        frames: dict[str, Any] = {}
        drift = None
        for key in context.partition_keys:
            if lake.fs.exists(lake.uri(*lake_table.file_parts(key))):
                # Write-once: reprocessing regenerates from this Parquet, never re-queries
                # (nor fails on today's source schema).
                frames[key] = REUSED
                continue
            try:
                if drift is None:
                    drift = check_drift(source, spec, spec.drift_policy, context.log, schema=None)
                    context.add_output_metadata(drift.metadata())
                frame, metadata = extract_partition(source, spec, partition_name, key)
            except SourceError as exc:
                if exc.transient:
                    raise  # RetryPolicy retries it with backoff
                raise dg.Failure(description=str(exc), allow_retries=False) from None
            context.log.info(f"extracted {frame.height} rows of {spec.name} for {key}")
            context.add_output_metadata(metadata)
            frames[key] = frame.lazy()
        context.add_output_metadata({"duration_s": round(time.perf_counter() - started, 3)})
        return one_or_many(frames)

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
    key = transform_key(job_name, output.name)
    wanted = inspect.signature(logic).parameters

    @dg.asset(
        key=key,
        ins={param: dg.AssetIn(key=upstream) for param, upstream in inputs.items()},
        partitions_def=partitions_def,
        backfill_policy=backfill_policy(partitions_def),
        check_specs=check_specs(output, key, partitions_def),
        metadata={**lake_table.as_metadata(), "grain": ", ".join(output.grain)},
        description=description or (logic.__doc__ or "").strip().split("\n")[0],
        group_name=job_name,
        kinds={"polars", "parquet"},
    )
    def _transform(context: dg.AssetExecutionContext, **frames: Any):
        started = time.perf_counter()
        keys = list(context.partition_keys)
        inputs_by_key = {name: per_partition(value, keys) for name, value in frames.items()}
        results: dict[str, pl.DataFrame] = {}
        for partition in keys:
            kwargs: dict[str, Any] = {
                name: by_key[partition] for name, by_key in inputs_by_key.items()
            }
            if "day" in wanted:
                kwargs["day"] = parse_partition_key(partition)
            if "partition_key" in wanted:
                kwargs["partition_key"] = partition
            results[partition] = logic(**kwargs).collect()
        checks = yield from checked(context, output, results, key)
        yield dg.Output(
            one_or_many(results), metadata={"duration_s": round(time.perf_counter() - started, 3)}
        )
        yield from checks

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
        backfill_policy=backfill_policy(partitions_def),
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
        backfill_policy=backfill_policy(partitions_def),
        description=f"{output.name} loaded into the target PostgreSQL, one partition at a time.",
        group_name=f"{job_name}_load",
        kinds={"trino", "postgres"},
        retry_policy=TRANSIENT_RETRY,
    )
    def _load(context: dg.AssetExecutionContext, loader: TargetLoader) -> dg.MaterializeResult:
        started = time.perf_counter()
        reports = []
        for partition in context.partition_keys:
            try:
                report = loader.load(output, lake_table, partition)
            except PermanentLoadError as exc:
                # A drifted target or inconsistent stage will not heal by retrying.
                raise dg.Failure(description=str(exc), allow_retries=False) from None
            context.log.info(
                f"loaded {report.rows} rows into {output.name} for {partition} "
                f"via {report.loader} in {report.seconds:.2f} s"
            )
            reports.append(report)
        metadata = reports[0].metadata()
        rows = sum(r.rows for r in reports)
        metadata.update(
            {
                "rows_loaded": dg.MetadataValue.int(rows),
                "dagster/row_count": dg.MetadataValue.int(rows),
                "partitions_loaded": len(reports),
                "duration_s": round(time.perf_counter() - started, 3),
            }
        )
        return dg.MaterializeResult(metadata=metadata)

    return _load
