"""The load assets of a run: each lake partition into its PostgreSQL table through the
TargetLoader, after the run's validation gate; the loads of a run share one step, fill
their stages side by side and swap each day in whole (loaders.py, swap.py)."""

# No `from __future__ import annotations`: Dagster reads the step functions' annotations
# (config and resource types) at definition time.

from typing import Any

import dagster as dg

from aps_etl.defs.retries import TRANSIENT_RETRY
from aps_etl.defs.transforms import transform_key, transform_table
from aps_etl.defs.validation import gate_key
from aps_etl.lib.partitions import add_partition_metadata, backfill_policy
from aps_etl.lib.warehouse.leftovers import run_aware, run_status_in
from aps_etl.lib.warehouse.loaders import LoadReport, TargetLoader
from aps_etl.lib.warehouse.target import TARGET_SCHEMA, PermanentLoadError


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
            description=f"{output.description or output.name} In the target PostgreSQL "
            f"({TARGET_SCHEMA}.{output.name}), each partition swapped in whole.",
            metadata={
                "dagster/table_name": f"{TARGET_SCHEMA}.{output.name}",
                "dagster/column_schema": output.table_schema(),
                # every column loaded as the lake partition holds it
                "dagster/column_lineage": dg.TableColumnLineage(
                    deps_by_column={
                        column: [
                            dg.TableColumnDep(
                                asset_key=transform_key(job, output.name), column_name=column
                            )
                        ]
                        for column in output.column_names
                    }
                ),
            },
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
            # a merge ships only its changes; its retry, the whole partition (loaders.py)
            ship_changes=context.retry_number == 0,
        )
        if result.dropped_stages or result.killed_queries:
            context.log.warning(
                f"cleaned up after dead runs: {len(result.dropped_stages)} stage tables, "
                f"{len(result.killed_queries)} Trino queries"
            )
        if result.failures:
            # The days swapped in whole before the failure are in the target: record them,
            # so the UI, the freshness checks and the report see what is loaded.
            for key in keys:
                output, _ = tables[key]
                for report in result.reports.get(output.name, []):
                    context.log_event(
                        dg.AssetMaterialization(
                            asset_key=key, partition=report.partition, metadata=_own(report)
                        )
                    )
            swapped = sorted({r.partition for rs in result.reports.values() for r in rs})
            message = (
                "partitions not loaded (the previous version of each is intact):\n"
                + result.describe_failures()
                + (f"\nloaded whole: {', '.join(swapped)}" if swapped else "")
            )
            if any(
                isinstance(exc, PermanentLoadError) or getattr(exc, "permanent", False)
                for exc in result.errors()
            ):
                # A drifted target, an inconsistent stage, Trino refusing our password,
                # certificate or statement: none heals by retrying.
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
            add_partition_metadata(context, key, {r.partition: _own(r) for r in reports})
            yield dg.MaterializeResult(asset_key=key, metadata=_load_metadata(reports))

    return _load


def _own(report: LoadReport) -> dict[str, Any]:
    """One partition's load: its rows, loader, seconds and snapshot versions."""
    return {**report.metadata(), "duration_s": round(report.seconds, 3)}


def _load_metadata(reports: list[LoadReport]) -> dict[str, Any]:
    """What the run's partitions of a table share; each partition's own is added to its
    materialization (LoadReport.metadata)."""
    return {
        "target_table": reports[0].metadata()["target_table"],
        "loader": reports[0].loader,
        "partitions_loaded": len(reports),
        "duration_s": round(sum(r.seconds for r in reports), 3),
    }
