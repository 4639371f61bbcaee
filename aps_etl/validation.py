"""Output validation inside a Dagster run: report (counts and sample rows, in metadata
and in the log) and stop before the lake or the target sees a bad partition."""

from __future__ import annotations

import json
from typing import Any

import dagster as dg
import polars as pl

from aps_etl.output_tables import validate


def raise_on_violations(
    context: dg.AssetExecutionContext,
    table: Any,
    frame: pl.DataFrame,
    output_name: str | None = None,
) -> None:
    report = validate(table, frame)
    if report.ok:
        context.add_output_metadata(
            {"validation": f"{report.rows} rows valid"}, output_name=output_name
        )
        return
    counts = {f"{column} {rule}": n for (column, rule), n in report.counts.items()}
    samples = json.dumps(report.samples[:10], default=str, indent=1)
    context.log.error(f"validation failed: {report.summary()}\nsample rows:\n{samples}")
    raise dg.Failure(
        description=f"validation failed, nothing written or loaded: {report.summary()}",
        metadata={
            "violation_counts": dg.MetadataValue.json(counts),
            "sample_rows": dg.MetadataValue.json(json.loads(samples)),
        },
        allow_retries=False,
    )
