"""Scenario 2 (PRD §10.2) wiring: each COMPLETED APS run as an immutable snapshot
(`extract/job_name=aps_plan/run_id=<id>/`), loaded into PostgreSQL, and compared with the
run before it."""

import dagster as dg
import polars as pl

from aps_etl.defs.extract import build_extract_assets, extract_key, extract_table
from aps_etl.defs.scenario import PLAN_RUN, Scenario
from aps_etl.defs.scenarios.aps_plan import logic
from aps_etl.defs.scenarios.aps_plan.schema import (
    APS_PLAN_DIFF,
    APS_PLAN_EQUIPMENT,
    APS_PLAN_PRODUCTION,
)
from aps_etl.defs.transforms import output_metadata, transform_key
from aps_etl.defs.validation import check_specs, checked
from aps_etl.lib.lake import LakeResource, snapshots
from aps_etl.lib.lake import lineage as lineages
from aps_etl.lib.partitions import PLAN_RUNS
from aps_etl.lib.sources.database import SourceDatabase
from aps_etl.lib.sources.extraction import ensure_extract
from aps_etl.lib.sources.mes import PLAN_NAMESPACE, PLAN_PRODUCTION, PLAN_SOURCES

NAMESPACE = PLAN_NAMESPACE
OUTPUTS = (APS_PLAN_PRODUCTION, APS_PLAN_EQUIPMENT, APS_PLAN_DIFF)

extract_assets = build_extract_assets(PLAN_SOURCES, NAMESPACE, PLAN_RUNS, partition_name="run_id")


def _snapshot_asset(output, source_name: str, logic_fn) -> dg.AssetsDefinition:
    key = transform_key(NAMESPACE, output.name)

    @dg.asset(
        key=key,
        check_specs=check_specs(output, key, PLAN_RUNS),
        ins={
            "rows": dg.AssetIn(key=extract_key(NAMESPACE, source_name)),
            "plan_run": dg.AssetIn(key=extract_key(NAMESPACE, "plan_run")),
        },
        partitions_def=PLAN_RUNS,
        metadata=output_metadata(output, NAMESPACE),
        description=f"All {source_name} rows of the plan run plus its base_date "
        "(type and range checks only).",
        group_name=NAMESPACE,
        kinds={"polars", "parquet"},
    )
    def _snapshot(context: dg.AssetExecutionContext, rows: pl.LazyFrame, plan_run: pl.LazyFrame):
        run_id = context.partition_key
        base_date = logic.completed_run_base_date(plan_run, run_id)
        frame = logic_fn(rows, plan_run, run_id).collect()
        checks = yield from checked(context, output, frame, key)
        # traceability: which run, which base date, in the UI and in the lake's metadata
        yield dg.Output(frame, metadata={"run_id": run_id, "base_date": base_date.isoformat()})
        yield from checks

    return _snapshot


DIFF_KEY = transform_key(NAMESPACE, APS_PLAN_DIFF.name)


@dg.asset(
    key=DIFF_KEY,
    check_specs=check_specs(APS_PLAN_DIFF, DIFF_KEY, PLAN_RUNS),
    ins={
        "plan_production": dg.AssetIn(key=extract_key(NAMESPACE, "plan_production")),
        "plan_run": dg.AssetIn(key=extract_key(NAMESPACE, "plan_run")),
    },
    partitions_def=PLAN_RUNS,
    metadata=output_metadata(APS_PLAN_DIFF, NAMESPACE),
    description="What changed against the previous COMPLETED run: ADDED, REMOVED and "
    "CHANGED plan_production keys on the plan dates both runs cover.",
    group_name=NAMESPACE,
    kinds={"polars", "parquet"},
)
def aps_plan_diff(
    context: dg.AssetExecutionContext,
    source: SourceDatabase,
    lake: LakeResource,
    plan_production: pl.LazyFrame,
    plan_run: pl.LazyFrame,
):
    run_id = context.partition_key
    previous_id = logic.previous_run(plan_run, run_id)
    previous = plan_production.clear()
    lineage: dict = {}
    if previous_id is not None:
        # The previous run's own immutable snapshot; taken now if the sensor has not yet.
        table = extract_table(PLAN_PRODUCTION, NAMESPACE, "run_id")
        snapshot = ensure_extract(source, lake, PLAN_PRODUCTION, table, previous_id)
        previous = snapshots.scan(lake, table, snapshot)
        # the previous run's snapshot is an input too: name it in the lineage
        lineage = {run_id: {f"{NAMESPACE}/plan_production@{previous_id}": snapshot.lineage()}}
    frame = logic.aps_plan_diff(plan_production, previous, run_id, previous_id).collect()
    checks = yield from checked(context, APS_PLAN_DIFF, frame, DIFF_KEY)
    dates = logic.compared_plan_dates(plan_production, previous, run_id, previous_id)
    summary = logic.diff_summary(frame, dates)
    context.log.info(f"plan {run_id} vs {previous_id}: {summary}")
    yield dg.Output(
        frame,
        metadata={
            "run_id": run_id,
            "prev_run_id": previous_id or "",
            "summary": dg.MetadataValue.json(summary),
            lineages.OUTPUT_METADATA_KEY: dg.MetadataValue.json(lineage),
        },
    )
    yield from checks


transform_assets = [
    _snapshot_asset(APS_PLAN_PRODUCTION, "plan_production", logic.aps_plan_production),
    _snapshot_asset(APS_PLAN_EQUIPMENT, "plan_equipment", logic.aps_plan_equipment),
    aps_plan_diff,
]


assets = [extract_assets, *transform_assets]

SCENARIO = Scenario(
    prd="10.2",
    title="APS plan runs as immutable snapshots, diffed run to run",
    namespace=NAMESPACE,
    run=PLAN_RUN,
    outputs=OUTPUTS,
    assets=tuple(assets),
)
