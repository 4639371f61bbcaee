"""The extract assets: one per ExtractSpec, write-once snapshots in the lake, reused when
present; the extracts of a job share one step and run side by side (one source connection
each), and their checks (source rules, completeness) refuse a snapshot before any
transform reads it."""

# No `from __future__ import annotations`: Dagster reads the step functions' annotations
# (config and resource types) at definition time.

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import dagster as dg
from pydantic import Field

from aps_etl.defs.retries import TRANSIENT_RETRY
from aps_etl.lib.lake import LakeResource, LakeTable
from aps_etl.lib.lake.file_metadata import snapshot_metadata
from aps_etl.lib.partitions import add_partition_metadata, backfill_policy
from aps_etl.lib.sources.database import SourceDatabase, SourceError
from aps_etl.lib.sources.drift import check_drift
from aps_etl.lib.sources.extraction import (
    POLICIES,
    Policy,
    SnapshotRefused,
    snapshot_partition,
)
from aps_etl.lib.sources.specs import ExtractSpec


def extract_key(job_name: str, name: str) -> dg.AssetKey:
    return dg.AssetKey(["extract", job_name, name])


def extract_table(spec: ExtractSpec, job_name: str, partition_name: str = "date") -> LakeTable:
    return LakeTable("extract", job_name, spec.name, partition_name, immutable=True)


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
) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """One spec's partitions, each snapshot written to the lake here, in the worker thread:
    the frame is freed as soon as it is written, whatever the other extracts are doing.
    Returns each partition's metadata and what they share."""
    started = time.perf_counter()
    own: dict[str, dict[str, Any]] = {}
    metadata: dict[str, Any] = {"extract_mode": spec.mode, "source": source.describe()}
    drift = None
    for key in partition_keys:
        partition_started = time.perf_counter()
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
        own[key] = {
            **snapshot_metadata(result.snapshot),
            "snapshot": dg.MetadataValue.json(
                {"action": result.action, **result.snapshot.lineage()}
            ),
            "reused": result.action != "new",
            "duration_s": round(time.perf_counter() - partition_started, 3),
        }
    metadata["reused"] = all(m["reused"] for m in own.values())
    metadata["duration_s"] = round(time.perf_counter() - started, 3)
    return own, metadata


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
                # the snapshot's columns, types and constraints, before any run
                metadata={
                    **tables[spec.name].as_metadata(),
                    "dagster/column_schema": spec.table_schema(),
                },
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
                    own, metadata = futures[name].result()
                except Exception as exc:  # reported below, after the other extracts
                    failures[name] = exc
                    yield from _source_checks(context, key, keys, exc)
                    continue
                finally:
                    for level, line in logs[name].lines:
                        getattr(context.log, level)(line)
                # published by the step itself (versioned, write-once): the IO manager
                # only reads them back
                add_partition_metadata(context, key, own)
                yield dg.MaterializeResult(asset_key=key, metadata=metadata)
                yield from _source_checks(context, key, keys, None)
        if failures:
            message = "\n".join(f"extract {name}: {exc}" for name, exc in failures.items())
            refused = {n: e for n, e in failures.items() if isinstance(e, SnapshotRefused)}
            for name, refusal in refused.items():
                context.log.error(f"extract {name}: {refusal}")
            if all(isinstance(e, SourceError) and e.transient for e in failures.values()):
                raise SourceError(message, transient=True)  # RetryPolicy retries the step
            if all(isinstance(e, SourceError | SnapshotRefused) for e in failures.values()):
                raise dg.Failure(
                    description=message,
                    metadata={
                        f"{name} refused": dg.MetadataValue.json(_jsonable(refusal.metadata))
                        for name, refusal in refused.items()
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
    from aps_etl.lib.sources.extraction import IncompleteExtract, SourceRulesViolated

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
