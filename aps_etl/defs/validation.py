"""Output validation as Dagster asset checks.

Each output table gets three blocking checks, visible per partition in the UI:
`nulls` (not-null rules), `types` (column set, order and dtypes) and `ranges` (value
ranges, cross-column rules and the uniqueness of the grain). A violation is reported with
counts and sample rows (check metadata and the log) and the step fails before the lake or
the target sees the partition; the run's validation gate then keeps every load from running.
"""

# No `from __future__ import annotations`: Dagster reads the gate's context annotation at
# definition time.

import json
from collections.abc import Generator, Mapping
from typing import Any

import dagster as dg
import polars as pl

from aps_etl.lib.output_tables import ValidationReport, Violation, validate
from aps_etl.lib.partitions import backfill_policy

CHECKS = {
    "nulls": "Null rules: no null where the output schema declares the column not nullable.",
    "types": "Type rules: exactly the declared columns, in order, with the declared dtypes.",
    "ranges": "Range rules: declared value ranges, cross-column rules and a unique grain.",
}


def check_specs(
    table: Any, key: dg.AssetKey, partitions_def: dg.PartitionsDefinition | None = None
) -> list[dg.AssetCheckSpec]:
    """The three blocking checks of an output table. Each evaluation belongs to the run
    that materialized the partition(s); `partitions_def` is accepted for when Dagster's
    partitioned checks leave preview, and not passed on until then."""
    del partitions_def
    return [
        dg.AssetCheckSpec(name, asset=key, blocking=True, description=text)
        for name, text in CHECKS.items()
    ]


def _kind(violation: Violation) -> str:
    if violation.rule == "not_nullable":
        return "nulls"
    if violation.rule.startswith("dtype") or violation.column == "*":
        return "types"
    return "ranges"


def check_results(
    report: ValidationReport, key: dg.AssetKey, partitions: list[str]
) -> list[dg.AssetCheckResult]:
    results = []
    for name in CHECKS:
        found = [v for v in report.violations if _kind(v) == name]
        metadata: dict[str, Any] = {
            "rows_checked": report.rows,
            "violations": sum(v.count for v in found),
            "partitions": ", ".join(partitions),
        }
        if found:
            metadata["violation_counts"] = dg.MetadataValue.json(
                {f"{v.column} {v.rule}": v.count for v in found}
            )
            samples = [s for v in found for s in v.samples][:10]
            metadata["sample_rows"] = dg.MetadataValue.json(
                json.loads(json.dumps(samples, default=str))
            )
        results.append(
            dg.AssetCheckResult(asset_key=key, check_name=name, passed=not found, metadata=metadata)
        )
    return results


def validate_partitions(table: Any, frames: Mapping[str, pl.DataFrame]) -> ValidationReport:
    """Each partition validated on its own (rules such as "one plan_run_id per table" hold
    per day, not across days), the counts of the same rule added up."""
    merged: dict[tuple[str, str], Violation] = {}
    rows = 0
    for frame in frames.values():
        report = validate(table, frame)
        rows += report.rows
        for v in report.violations:
            seen = merged.get((v.column, v.rule))
            merged[(v.column, v.rule)] = (
                Violation(v.column, v.rule, seen.count + v.count, (seen.samples + v.samples)[:5])
                if seen
                else v
            )
    return ValidationReport(table.name, rows, list(merged.values()))


def checked(
    context: dg.AssetExecutionContext,
    table: Any,
    frames: Mapping[str, pl.DataFrame] | pl.DataFrame,
    key: dg.AssetKey,
) -> Generator[dg.AssetCheckResult, None, list[dg.AssetCheckResult]]:
    """Use as `results = yield from checked(...)`, then yield the Output, then the results.

    Valid: yields nothing and returns the passing results (they must follow the Output so
    they refer to this materialization). A violation: yields the failing results, logs
    counts and sample rows, and raises, so nothing is written."""
    if isinstance(frames, pl.DataFrame):
        frames = {context.partition_key: frames}
    report = validate_partitions(table, frames)
    results = check_results(report, key, list(frames))
    if report.ok:
        return results
    yield from results
    samples = json.dumps(report.samples[:10], default=str, indent=1)
    context.log.error(f"validation failed: {report.summary()}\nsample rows:\n{samples}")
    raise dg.Failure(
        description=f"validation failed, nothing written or loaded: {report.summary()}",
        metadata={
            "violation_counts": dg.MetadataValue.json(
                {f"{column} {rule}": n for (column, rule), n in report.counts.items()}
            ),
            "sample_rows": dg.MetadataValue.json(json.loads(samples)),
        },
        allow_retries=False,
    )


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
