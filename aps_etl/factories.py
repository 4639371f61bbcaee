"""Asset factories: the thin Dagster wiring that every scenario shares.

- extract: one asset per ExtractSpec, write-once in the lake, reused when present; the
  extracts of a job share one step and run side by side;
- transform: a pure Polars function, validated by blocking asset checks before the lake
  sees it (a violation stops the run: nothing is written, nothing loaded);
- load: the lake partition into its PostgreSQL table through the TargetLoader; the loads
  of a run share one step and run side by side.

Every asset handles one partition or several in one run (a single-run backfill): inputs
arrive as {partition key: frame}, outputs leave the same way, and the lake IO manager
writes each partition to its own folder.
"""

import inspect
import os
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import dagster as dg
import polars as pl
from pydantic import Field

from aps_etl.lake import LakeResource, LakeTable, parse_partition_key
from aps_etl.sources.database import SourceDatabase, SourceError
from aps_etl.sources.drift import check_drift
from aps_etl.sources.extraction import (
    POLICIES,
    Policy,
    SnapshotRefused,
    snapshot_partition,
)
from aps_etl.sources.specs import ExtractSpec
from aps_etl.validation import check_specs, checked
from aps_etl.warehouse.leftovers import run_aware, run_status_in
from aps_etl.warehouse.loaders import LoadReport, TargetLoader
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


class _Messages:
    """Log lines of a worker thread, replayed into the step's log by the step's thread."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def info(self, msg: str) -> None:
        self.lines.append(("info", msg))

    def warning(self, msg: str) -> None:
        self.lines.append(("warning", msg))


class ExtractConfig(dg.Config):
    snapshots: str = Field(
        default="refresh",
        description="refresh: compare each partition's newest snapshot with the source's "
        "fingerprint and take a new version when the source changed (first run: the first "
        "snapshot). reuse: reprocess from the lake's newest snapshots, no source query. "
        "full: take a new version of every selected table, read whole, changed or not "
        "(a plan run's snapshot is never re-taken).",
    )
    accept_incomplete: list[str] = Field(
        default=[],
        description="source tables whose extract this run takes even when the completeness "
        "guard calls it incomplete (0 rows, or far fewer than earlier days): e.g. a day the "
        "plant stood still. Their snapshot is taken with a warning.",
    )


def _extract_one(
    source: SourceDatabase,
    lake: LakeResource,
    spec: ExtractSpec,
    table: LakeTable,
    partition_keys: list[str],
    policy: Policy,
    run_id: str,
    accept_incomplete: bool,
    log: _Messages,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """One spec's partitions, each snapshot written to the lake here, in the worker thread:
    the frame is freed as soon as it is written, whatever the other extracts are doing."""
    started = time.perf_counter()
    parts: dict[str, Any] = {}
    metadata: dict[str, Any] = {"extract_mode": spec.mode, "source": source.describe()}
    actions: dict[str, str] = {}
    lineage: dict[str, Any] = {}
    drift = None
    for key in partition_keys:
        if drift is None and policy != "reuse":
            drift = check_drift(source, spec, spec.drift_policy, log, schema=None)
            metadata.update(drift.metadata())
        result = snapshot_partition(
            source,
            lake,
            spec,
            table,
            key,
            policy=policy,
            run_id=run_id,
            accept_incomplete=accept_incomplete,
        )
        for level, line in result.messages:
            getattr(log, level)(line)
        parts[key] = result.snapshot
        actions[key] = result.action
        lineage[key] = result.snapshot.lineage()
    metadata["snapshot"] = dg.MetadataValue.json(
        {key: {"action": actions[key], **lineage[key]} for key in partition_keys}
    )
    metadata["reused"] = all(a != "new" for a in actions.values())
    metadata["duration_s"] = round(time.perf_counter() - started, 3)
    return parts, metadata


def build_extract_assets(
    specs: Sequence[ExtractSpec],
    job_name: str,
    partitions_def: dg.PartitionsDefinition,
    partition_name: str = "date",
) -> dg.AssetsDefinition:
    """One asset per ExtractSpec (`extract/<job>/<name>`), write-once in the lake, reused
    when present. One step computes them all, side by side (SourceDatabase.parallel_extracts):
    each mostly waits on the source's query and the lake's upload. Subsettable."""
    tables = {spec.name: extract_table(spec, job_name, partition_name) for spec in specs}
    by_name = {spec.name: spec for spec in specs}

    @dg.multi_asset(
        name=f"extract__{job_name}",
        outs={
            spec.name: dg.AssetOut(
                key=extract_key(job_name, spec.name),
                metadata=tables[spec.name].as_metadata(),
                description=spec.description,
                group_name=f"{job_name}_extract",
                kinds={"postgres", "parquet"},
                is_required=False,
            )
            for spec in specs
        },
        check_specs=[
            dg.AssetCheckSpec(
                check, asset=extract_key(job_name, spec.name), blocking=True, description=text
            )
            for spec in specs
            for check, text in SOURCE_CHECKS.items()
        ],
        partitions_def=partitions_def,
        backfill_policy=backfill_policy(partitions_def),
        can_subset=True,
        retry_policy=TRANSIENT_RETRY,
    )
    def _extract(
        context: dg.AssetExecutionContext,
        config: ExtractConfig,
        source: SourceDatabase,
        lake: LakeResource,
    ):
        if config.snapshots not in POLICIES:
            raise dg.Failure(
                description=f"snapshots={config.snapshots!r}: choose one of {POLICIES}",
                allow_retries=False,
            )
        policy: Policy = config.snapshots  # type: ignore[assignment]
        unknown = sorted(set(config.accept_incomplete) - set(by_name))
        if unknown:
            raise dg.Failure(
                description=f"accept_incomplete names unknown tables {unknown}; "
                f"the tables of this step are {sorted(by_name)}",
                allow_retries=False,
            )
        names = [
            name for name in by_name if extract_key(job_name, name) in context.selected_asset_keys
        ]
        keys = list(context.partition_keys)
        failures: dict[str, BaseException] = {}
        with ThreadPoolExecutor(max_workers=max(1, source.parallel_extracts)) as pool:
            logs = {name: _Messages() for name in names}
            futures = {
                name: pool.submit(
                    _extract_one,
                    source,
                    lake,
                    by_name[name],
                    tables[name],
                    keys,
                    policy,
                    context.run.run_id,
                    name in config.accept_incomplete,
                    logs[name],
                )
                for name in names
            }
            for name in names:  # in declaration order: a stable event log
                key = extract_key(job_name, name)
                try:
                    parts, metadata = futures[name].result()
                except Exception as exc:  # reported below, after the other extracts
                    failures[name] = exc
                    yield from _source_checks(context, key, keys, exc)
                    continue
                finally:
                    for level, line in logs[name].lines:
                        getattr(context.log, level)(line)
                yield dg.Output(one_or_many(parts), output_name=name, metadata=metadata)
                yield from _source_checks(context, key, keys, None)
        if failures:
            message = "\n".join(f"extract {name}: {exc}" for name, exc in failures.items())
            refused = {n: e for n, e in failures.items() if isinstance(e, SnapshotRefused)}
            for name, exc in refused.items():
                context.log.error(f"extract {name}: {exc}")
            if all(isinstance(e, SourceError) and e.transient for e in failures.values()):
                raise SourceError(message, transient=True)  # RetryPolicy retries the step
            if all(isinstance(e, SourceError | SnapshotRefused) for e in failures.values()):
                raise dg.Failure(
                    description=message,
                    metadata={
                        f"{name} refused": dg.MetadataValue.json(_jsonable(exc.metadata))
                        for name, exc in refused.items()
                    },
                    allow_retries=False,
                )
            raise next(
                e for e in failures.values() if not isinstance(e, SourceError | SnapshotRefused)
            )

    return _extract


# Checks of every new extract snapshot, before any transform reads it (the snapshot is
# refused, and the step fails, when one fails).
SOURCE_CHECKS = {
    "source_rules": "Source rules of new snapshots: no null where the spec does not allow "
    "one, no NaN or infinity, the source's value rules (counts and sample rows).",
    "completeness": "New snapshots are not empty or far smaller than the table's earlier "
    "days (a lagging feed), unless the source's guard policy is warn.",
}


def _source_checks(
    context: dg.AssetExecutionContext,
    key: dg.AssetKey,
    partitions: list[str],
    failure: BaseException | None,
):
    """The extract's check results: both passed, or the one its refusal failed."""
    from aps_etl.sources.extraction import IncompleteExtract, SourceRulesViolated

    failed = {SourceRulesViolated: "source_rules", IncompleteExtract: "completeness"}
    failed_check = next((c for t, c in failed.items() if isinstance(failure, t)), None)
    if failure is not None and failed_check is None:
        return  # not a check's business (the source down, a drifted schema)
    for check in SOURCE_CHECKS:
        if dg.AssetCheckKey(key, check) not in context.selected_asset_check_keys:
            continue
        if failure is not None and check != failed_check:
            continue  # not evaluated: the snapshot was refused before or without it
        metadata: dict[str, Any] = {"partitions": ", ".join(partitions)}
        if failure is not None:
            for name, value in failure.metadata.items():  # type: ignore[attr-defined]
                if isinstance(value, dict | list):
                    metadata[name] = dg.MetadataValue.json(_jsonable(value))
                elif value is not None:
                    metadata[name] = value
            metadata["reason"] = str(failure)[:1000]
        yield dg.AssetCheckResult(
            asset_key=key, check_name=check, passed=failure is None, metadata=metadata
        )


def _jsonable(value: Any) -> Any:
    import json

    return json.loads(json.dumps(value, default=str))


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


def load_key(job_name: str, name: str) -> dg.AssetKey:
    return dg.AssetKey(["load", job_name, name])


def build_load_assets(
    run_name: str,
    outputs: list[tuple[str, Any]],
    partitions_def: dg.PartitionsDefinition,
) -> dg.AssetsDefinition:
    """The loads of one run (`outputs`: (job name, output table) pairs), each its own asset
    `load/<job>/<table>` waiting for its transform and the run's validation gate, all
    computed by one step that runs them side by side (TargetLoader.parallel_loads): a
    load mostly waits on Trino and PostgreSQL statements, so loading one table after
    another would add up those waits. Subsettable: a selection loads only its tables."""
    tables = {
        load_key(job, output.name): (output, transform_table(output, job))
        for job, output in outputs
    }
    specs = [
        dg.AssetSpec(
            key,
            deps=[transform_key(job, output.name), gate_key(run_name)],
            description=f"{output.name} loaded into the target PostgreSQL, a partition at a time.",
            group_name=f"{job}_load",
            kinds={"trino", "postgres"},
        )
        for (job, output), key in zip(outputs, tables, strict=True)
    ]

    @dg.multi_asset(
        name=f"load__{run_name}",
        specs=specs,
        partitions_def=partitions_def,
        backfill_policy=backfill_policy(partitions_def),
        can_subset=True,
        retry_policy=TRANSIENT_RETRY,
    )
    def _load(context: dg.AssetExecutionContext, loader: TargetLoader):
        keys = [key for key in tables if key in context.selected_asset_keys]
        # Stages filled side by side; each partition's tables swapped in together.
        result = loader.load_partitions(
            [tables[key] for key in keys],
            list(context.partition_keys),
            job=context.job_name,
            run_id=context.run.run_id,
            is_live=run_aware(run_status_in(context.instance)),
        )
        if result.dropped_stages or result.killed_queries:
            context.log.warning(
                f"cleaned up after dead runs: {len(result.dropped_stages)} stage tables, "
                f"{len(result.killed_queries)} Trino queries"
            )
        if result.failures:
            swapped = sorted({r.partition for rs in result.reports.values() for r in rs})
            message = (
                "partitions not loaded (the previous version of each is intact):\n"
                + result.describe_failures()
                + (f"\nloaded whole: {', '.join(swapped)}" if swapped else "")
            )
            if any(isinstance(exc, PermanentLoadError) for exc in result.errors()):
                # A drifted target or an inconsistent stage will not heal by retrying.
                raise dg.Failure(description=message, allow_retries=False)
            raise dg.Failure(description=message)  # transient: RetryPolicy retries the step
        for key in keys:  # in declaration order: a stable event log
            output, _ = tables[key]
            reports = result.reports[output.name]
            for report in reports:
                context.log.info(
                    f"loaded {report.rows} rows into {report.table} for {report.partition} "
                    f"via {report.loader} in {report.seconds:.2f} s"
                )
            yield dg.MaterializeResult(asset_key=key, metadata=_load_metadata(reports))

    return _load


def _load_metadata(reports: list[LoadReport]) -> dict[str, Any]:
    metadata = reports[0].metadata()
    if len(reports) > 1:
        metadata["snapshot_versions"] = dg.MetadataValue.json(
            {
                r.partition: {
                    name: info.get("version") for name, info in (r.snapshots or {}).items()
                }
                for r in reports
            }
        )
    rows = sum(r.rows for r in reports)
    metadata.update(
        {
            "rows_loaded": dg.MetadataValue.int(rows),
            "dagster/row_count": dg.MetadataValue.int(rows),
            "partitions_loaded": len(reports),
            "duration_s": round(sum(r.seconds for r in reports), 3),
        }
    )
    return metadata
