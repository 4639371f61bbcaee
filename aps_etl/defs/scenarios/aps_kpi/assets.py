"""Scenario 3 (PRD §10.3) wiring: plan vs actual KPIs of a business day, joined in DuckDB
straight from the lake: the plan in force's snapshot Parquet and the day's actual Parquet."""

import time
from typing import Any

import dagster as dg
import polars as pl
from dagster_duckdb import DuckDBResource

from aps_etl.defs.extract import extract_key, extract_table
from aps_etl.defs.scenario import DAILY_RUN, Scenario
from aps_etl.defs.scenarios.aps_kpi import logic
from aps_etl.defs.scenarios.aps_kpi.schema import (
    APS_KPI_BOTTLENECK,
    APS_KPI_EQUIPMENT_UTIL,
    APS_KPI_PLAN_VS_ACTUAL,
)
from aps_etl.defs.transforms import output_metadata, transform_key
from aps_etl.defs.validation import check_specs, checked
from aps_etl.lib.business_days import parse_partition_key
from aps_etl.lib.lake import LakeResource, LakeTable, snapshots
from aps_etl.lib.lake import lineage as lineages
from aps_etl.lib.lake.duckdb_views import attach_lake, create_empty_view, create_snapshot_view
from aps_etl.lib.partitions import DAILY, add_partition_metadata, backfill_policy, one_or_many
from aps_etl.lib.sources.database import SourceDatabase
from aps_etl.lib.sources.extraction import ensure_extract
from aps_etl.lib.sources.mes import (
    DAILY_NAMESPACE,
    EQUIPMENT,
    EQUIPMENT_EVENT,
    LOT_HISTORY,
    PLAN_EQUIPMENT,
    PLAN_NAMESPACE,
    PLAN_PRODUCTION,
    PLAN_RUN_OF_DAY,
    PROCESS_RESULT,
    PRODUCT,
    ROUTE_STEP,
)

NAMESPACE = "aps_kpi"
OUTPUTS = (APS_KPI_PLAN_VS_ACTUAL, APS_KPI_EQUIPMENT_UTIL, APS_KPI_BOTTLENECK)
ACTUALS = (PROCESS_RESULT, EQUIPMENT_EVENT, EQUIPMENT, LOT_HISTORY, PRODUCT, ROUTE_STEP)
PLANS = (PLAN_PRODUCTION, PLAN_EQUIPMENT)


@dg.multi_asset(
    outs={
        table.name: dg.AssetOut(
            key=transform_key(NAMESPACE, table.name),
            description=f"{table.description} Against the plan in force for the day "
            "(recorded in every row), joined in DuckDB over the lake.",
            metadata=output_metadata(table, NAMESPACE),
            kinds={"duckdb", "parquet"},
        )
        for table in OUTPUTS
    },
    check_specs=[
        spec
        for table in OUTPUTS
        for spec in check_specs(table, transform_key(NAMESPACE, table.name), DAILY)
    ],
    deps=[extract_key(DAILY_NAMESPACE, spec.name) for spec in (*ACTUALS, PLAN_RUN_OF_DAY)],
    partitions_def=DAILY,
    backfill_policy=backfill_policy(DAILY),
    group_name=NAMESPACE,
    description="Plan vs actual quantity, utilisation gap per equipment and bottleneck ranking "
    "for the day, against the plan in force (recorded in every row).",
)
def aps_kpi(
    context: dg.AssetExecutionContext,
    lake: LakeResource,
    source: SourceDatabase,
    duckdb: DuckDBResource,
):
    started = time.perf_counter()
    by_table: dict[str, dict[str, pl.DataFrame]] = {t.name: {} for t in OUTPUTS}
    plans: dict[str, str] = {}
    lineage: dict[str, lineages.Lineage] = {}
    with duckdb.get_connection() as con:
        attach_lake(con, lake)
        seconds: dict[str, float] = {}
        for key in context.partition_keys:
            day_started = time.perf_counter()
            frames, run_id, lineage[key] = _kpis_of_day(con, lake, source, key)
            seconds[key] = round(time.perf_counter() - day_started, 3)
            plans[key] = run_id or ""
            context.log.info(f"plan in force for {key}: {run_id or 'none'}")
            for name, frame in frames.items():
                by_table[name][key] = frame
    checks = []
    for table in OUTPUTS:
        key = transform_key(NAMESPACE, table.name)
        checks += yield from checked(context, table, by_table[table.name], key)
    bottlenecks = {
        key: ", ".join(frame.filter(pl.col("is_bottleneck"))["eqp_group_id"].to_list())
        for key, frame in by_table[APS_KPI_BOTTLENECK.name].items()
    }
    for table in OUTPUTS:
        add_partition_metadata(
            context,
            transform_key(NAMESPACE, table.name),
            {
                key: {
                    "plan_run_id": plans[key],
                    "bottleneck": bottlenecks[key],
                    "duration_s": seconds[key],
                    lineages.OUTPUT_METADATA_KEY: dg.MetadataValue.json({key: lineage[key]}),
                }
                for key in context.partition_keys
            },
        )
        yield dg.Output(
            one_or_many(by_table[table.name]),
            output_name=table.name,
            metadata={
                "plan_run_id": ", ".join(plans.values()),
                "bottleneck": "; ".join(bottlenecks.values()),
                "duration_s": round(time.perf_counter() - started, 3),
                lineages.OUTPUT_METADATA_KEY: dg.MetadataValue.json(lineage),
            },
        )
    yield from checks


def _newest(lake: LakeResource, table: LakeTable, key: str) -> snapshots.Snapshot:
    found = snapshots.newest(lake, table, key)
    if found is None:
        raise FileNotFoundError(
            f"no snapshot of extract {table.table} for {key} in the lake: materialize "
            f"{'/'.join(('extract', table.job_name, table.table))} for {key} first"
        )
    return found


def _kpis_of_day(
    con: Any, lake: LakeResource, source: SourceDatabase, key: str
) -> tuple[dict[str, pl.DataFrame], str | None, lineages.Lineage]:
    """The three KPI tables of one day, joined in DuckDB over the lake's Parquet, and the
    snapshots they were computed from."""
    day = parse_partition_key(key)
    lineage: lineages.Lineage = {}
    newest = {}
    for spec in (*ACTUALS, PLAN_RUN_OF_DAY):
        table = extract_table(spec, DAILY_NAMESPACE)
        newest[spec.name] = (table, _newest(lake, table, key))
        lineage.update(lineages.of_snapshot(*newest[spec.name]))
    plan_run = snapshots.scan(lake, *newest["plan_run"]).collect()
    run_id = logic.plan_in_force(plan_run, day)
    for spec in ACTUALS:
        create_snapshot_view(con, spec.name, lake, *newest[spec.name])
    for spec in PLANS:
        if run_id is None:
            create_empty_view(con, spec.name, spec.polars_schema())
            continue
        # The plan in force's immutable snapshot; taken now if its sensor run has not yet.
        table = extract_table(spec, PLAN_NAMESPACE, "run_id")
        snapshot = ensure_extract(source, lake, spec, table, run_id)
        create_snapshot_view(con, spec.name, lake, table, snapshot)
        lineage.update(lineages.of_snapshot(table, snapshot))
    frames = {
        APS_KPI_PLAN_VS_ACTUAL.name: logic.aps_kpi_plan_vs_actual(con, day, run_id),
        APS_KPI_EQUIPMENT_UTIL.name: logic.aps_kpi_equipment_util(con, day, run_id),
        APS_KPI_BOTTLENECK.name: logic.aps_kpi_bottleneck(con, day),
    }
    return frames, run_id, lineage


assets = [aps_kpi]

SCENARIO = Scenario(
    prd="10.3",
    title="Plan vs actual KPIs (attainment, utilisation, bottlenecks)",
    namespace=NAMESPACE,
    run=DAILY_RUN,
    outputs=OUTPUTS,
    assets=tuple(assets),
)
