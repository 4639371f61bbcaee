"""Loading one lake partition into its PostgreSQL target table.

Two fillers for the staging table, one contract (target.py): Trino's
`INSERT INTO aps.<stage> SELECT ... FROM lake.<table>` in dev/prod, ADBC COPY in the
embedded `local` environment where there is no Trino. Both end with the same PostgreSQL
transaction that swaps the partition in, and both drop their stage whatever happens.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import dagster as dg
import polars as pl
from pydantic import Field

from aps_etl.lib.business_days import parse_partition_key
from aps_etl.lib.failpoints import failpoint
from aps_etl.lib.lake.layout import LakeTable
from aps_etl.lib.lake.lineage import read_file as read_lineage
from aps_etl.lib.lake.storage import LakeResource
from aps_etl.lib.postgres import PostgresConnection
from aps_etl.lib.warehouse import merge, stages, target
from aps_etl.lib.warehouse.lake_catalog import TrinoLake
from aps_etl.lib.warehouse.leftovers import kill_orphan_queries, owner_alive, query_source
from aps_etl.lib.warehouse.load_reports import LoadReport, PartitionLoads
from aps_etl.lib.warehouse.stages import StagedTable
from aps_etl.lib.warehouse.swap import SwapPolicy, swap_partition_tables
from aps_etl.lib.warehouse.trino import TrinoResource

log = logging.getLogger(__name__)

# Below this many rows a Trino fill uses one writer: more only open more connections.
SMALL_FILL_ROWS = 100_000


def _partition_value(lake_table: LakeTable, key: str) -> Any:
    return parse_partition_key(key) if lake_table.partition_name == "date" else key


class TargetLoader(dg.ConfigurableResource):
    """Loads lake partitions into the target database. `trino` unset: ADBC COPY."""

    target: PostgresConnection
    lake: LakeResource
    trino: TrinoResource | None = None
    batch_size: int = Field(default=10_000, description="rows per INSERT batch (Trino) ")
    writers: int = Field(
        default=4,
        description="parallel JDBC writers of each Trino INSERT (task_min_writer_count); "
        "a 1M-row stage fills in ~3.3 s with Trino's default 1, ~2.8 s with 2, ~2.4 s with 4 "
        "(2 cores; PostgreSQL takes the rows from several connections at once)",
    )
    lock_timeout_ms: int = Field(
        default=2_000,
        description="how long the swap waits for one lock before backing off (readers "
        "queued behind the swap wait at most this long)",
    )
    swap_budget_s: float = Field(
        default=120.0,
        description="how long the swap keeps retrying while readers hold the tables; then "
        "the load fails naming them, the previous version of the day intact",
    )
    ship_merge_changes: bool = Field(
        default=False,
        description="merge tables: Trino computes the partition's changes against the table "
        "and ships only those (docs/loading.md). Off: measured at 1M rows, 1% changed, "
        "shipping the changes took 5.3 s (Trino reads the table back through JDBC), "
        "shipping every row then merging 4.6 s",
    )
    parallel_loads: int = Field(
        default=4,
        description="tables of a run loaded at once: a load mostly waits on Trino and "
        "PostgreSQL statements, so waits overlap instead of adding up",
    )

    @property
    def kind(self) -> str:
        return "trino" if self.trino else "adbc"

    def load(
        self,
        table: Any,
        lake_table: LakeTable,
        partition_key: str,
        *,
        job: str = "",
        run_id: str | None = None,
    ) -> LoadReport:
        """One table's partition (load_partitions does a run's tables, a day at once)."""
        result = self.load_partitions(
            [(table, lake_table)], [partition_key], job=job, run_id=run_id
        )
        result.raise_first()
        return result.reports[table.name][0]

    def load_partitions(
        self,
        tables: Sequence[tuple[Any, LakeTable]],
        partition_keys: Sequence[str],
        *,
        job: str = "",
        run_id: str | None = None,
        is_live: Callable[[dict[str, Any]], bool] | None = None,
        ship_changes: bool = True,
    ) -> PartitionLoads:
        """Fills and checks a stage per (table, partition), `parallel_loads` at a time,
        then swaps each partition's stages in together (swap.py): a partition is loaded
        whole or not at all. Stages of runs that died are dropped first (`is_live` tells
        whether a stage's owner lives; by default its process on this host). A merge table
        of a one-partition Trino load ships only the partition's changes (`ship_changes`;
        a retry after MergeBasisChanged ships the whole partition)."""
        result = PartitionLoads()
        live = is_live or owner_alive

        def abandoned_or_earlier_attempt(owner: dict[str, Any]) -> bool:
            # a stage of this very run already there is an earlier (failed) attempt's
            return live(owner) and not (run_id and owner.get("run_id") == run_id)

        if self.trino:  # first: a dead run's INSERT still running would hold its stage
            result.killed_queries = kill_orphan_queries(self.trino, abandoned_or_earlier_attempt)
        with self.target.connect() as connection:
            dropped = stages.drop_abandoned_stages(connection, abandoned_or_earlier_attempt)
            if dropped:
                log.warning("dropped %d stages of dead runs: %s", len(dropped), ", ".join(dropped))
            result.dropped_stages = dropped
            try:
                partitioned = {
                    t.name: target.ensure_target(
                        connection, t, merge.target_tables(t) if merge.is_merge(t) else None
                    )
                    for t, _ in tables
                }
            except target.PermanentLoadError as exc:  # a drifted target: no day is loaded
                for key in partition_keys:
                    result.failures.setdefault(key, []).append(("target", exc))
                return result
        work = [(t, lt, key) for key in partition_keys for t, lt in tables]
        # changes computed against the table as it is: one partition at a time only (a
        # range's later days would be computed against the table before its earlier ones)
        changes_only = (
            self.ship_merge_changes
            and ship_changes
            and self.trino is not None
            and len(partition_keys) == 1
        )
        staged: dict[tuple[str, str], tuple[StagedTable, LoadReport]] = {}
        with ThreadPoolExecutor(max_workers=max(1, self.parallel_loads)) as pool:
            futures = {
                (t.name, key): pool.submit(
                    self._stage, t, lt, key, partitioned[t.name], job, run_id, changes_only
                )
                for t, lt, key in work
            }
            for (name, key), future in futures.items():
                try:
                    staged[(name, key)] = future.result()
                except Exception as exc:
                    result.failures.setdefault(key, []).append((name, exc))
        try:
            failpoint("load.filled")  # a kill here: every stage filled, nothing swapped
            with self.target.connect() as connection:
                for key in partition_keys:
                    if key in result.failures:
                        continue  # a day is loaded whole or not at all
                    day = [staged[(t.name, key)] for t, _ in tables]
                    started = time.perf_counter()
                    try:
                        outcome = swap_partition_tables(
                            connection, [s for s, _ in day], self.swap_policy()
                        )
                    except Exception as exc:
                        result.failures.setdefault(key, []).append(("swap", exc))
                        continue
                    swapped = time.perf_counter() - started
                    for stage, report in day:
                        del staged[(stage.table.name, key)]
                        result.reports.setdefault(stage.table.name, []).append(
                            replace(
                                report,
                                rows=outcome.rows[stage.table.name],
                                seconds=report.seconds + swapped,
                                swap_seconds=swapped,
                                swap_attempts=outcome.attempts,
                                merged=outcome.merges.get(stage.table.name),
                            )
                        )
        finally:
            if staged:  # not swapped: nothing of them is visible, drop them
                try:
                    with self.target.connect() as connection:
                        for stage, _ in staged.values():
                            stages.drop_stage(connection, stage.stage)
                            if stage.shipped and stage.shipped.gone:
                                stages.drop_stage(connection, stage.shipped.gone)
                except Exception as exc:  # the next load drops them (their owner is known)
                    log.warning("could not drop %d unswapped stages: %s", len(staged), exc)
        return result

    def swap_policy(self) -> SwapPolicy:
        return SwapPolicy(lock_timeout_ms=self.lock_timeout_ms, budget_s=self.swap_budget_s)

    def _stage(
        self,
        table: Any,
        lake_table: LakeTable,
        partition_key: str,
        partitioned: bool,
        job: str,
        run_id: str | None,
        changes_only: bool = False,
    ) -> tuple[StagedTable, LoadReport]:
        started = time.perf_counter()
        value = _partition_value(lake_table, partition_key)
        # The lake file's rows and the snapshots it was computed from (its footer): the
        # stage must hold exactly these rows, and the load log names the snapshots.
        lake_rows, snapshots = read_lineage(
            self.lake, self.lake.uri(*lake_table.file_parts(partition_key))
        )
        entry = target.LoadLogEntry(
            job or lake_table.job_name, lake_rows, snapshots, run_id, self.kind
        )
        with self.target.connect() as connection:
            stage = stages.new_stage_name(table, partition_key)
            stages.create_stage(connection, table, stage, partitioned=partitioned, run_id=run_id)
            shipped = None
            try:
                if self.trino and changes_only and merge.is_merge(table):
                    shipped, statement = self._ship_changes(
                        connection, table, lake_table, partition_key, stage, run_id, lake_rows
                    )
                elif self.trino:
                    statement = self._fill_with_trino(
                        table, lake_table, partition_key, stage, run_id, lake_rows
                    )
                else:
                    statement = None
                    self._fill_with_adbc(connection, table, lake_table, partition_key, stage)
                staged = stages.prepare_stage(
                    connection,
                    table,
                    value,
                    stage,
                    partition_key=partition_key,
                    partitioned=partitioned,
                    log=entry,
                    shipped=shipped,
                )
            except BaseException:
                stages.drop_stage(connection, stage)
                if shipped is not None and shipped.gone:
                    stages.drop_stage(connection, shipped.gone)
                raise
        report = LoadReport(
            table.name,
            partition_key,
            staged.rows,
            time.perf_counter() - started,
            self.kind,
            statement,
            snapshots,
        )
        return staged, report

    def _fill_with_adbc(
        self, connection: Any, table: Any, lake_table: LakeTable, key: str, stage: str
    ) -> None:
        columns = [c.name for c in table.columns]
        frame = pl.scan_parquet(
            self.lake.uri(*lake_table.file_parts(key)),
            storage_options=self.lake.polars_storage_options(),
        ).select(columns)
        with connection.cursor() as cursor:
            for batch in frame.collect().to_arrow().to_batches(max_chunksize=1_000_000):
                cursor.adbc_ingest(stage, batch, mode="append", db_schema_name=target.STAGE_SCHEMA)
        connection.commit()

    def _ship_changes(
        self,
        connection: Any,
        table: Any,
        lake_table: LakeTable,
        key: str,
        stage: str,
        run_id: str | None,
        rows: int,
    ) -> tuple[merge.Shipped, str]:
        """Trino fills the stage with the partition's new and changed rows only, and a
        second stage with the keys gone from it; merge.merge_rows applies both, after
        checking that no other load merged the table meanwhile (`basis`)."""
        assert self.trino is not None
        with connection.cursor() as cursor:
            basis = merge.last_merge_id(cursor, table)
        connection.commit()
        gone = None
        if table.delete_missing:
            gone = stage[:50] + "_gone"
            stages.create_key_stage(connection, table, gone, tuple(table.merge_key), run_id)
        source = TrinoLake(self.trino, self.lake).ensure_partition(table, lake_table, key)
        catalog = self.trino.target_catalog
        statements = [merge.changes_fill_sql(table, catalog, source, stage)]
        if gone:
            statements.append(merge.gone_fill_sql(table, catalog, source, gone))
        shipped = merge.Shipped(gone, basis)
        for statement in statements:
            self.trino.execute(
                statement,
                session_properties=self._fill_properties(rows),
                source=query_source(run_id),
            )
        return shipped, ";\n".join(statements)

    def _fill_properties(self, rows: int) -> dict[str, str]:
        assert self.trino is not None
        return {
            # Our own stage table gives atomicity; Trino's extra temp table would not.
            f"{self.trino.target_catalog}.non_transactional_insert": "true",
            f"{self.trino.target_catalog}.write_batch_size": str(self.batch_size),
            # the stage is ours alone: several writers may fill it at once; a small
            # partition gets one (each writer is a PostgreSQL connection to open)
            "task_min_writer_count": str(self.writers if rows >= SMALL_FILL_ROWS else 1),
        }

    def _fill_with_trino(
        self,
        table: Any,
        lake_table: LakeTable,
        key: str,
        stage: str,
        run_id: str | None,
        rows: int,
    ) -> str:
        assert self.trino is not None
        source = TrinoLake(self.trino, self.lake).ensure_partition(table, lake_table, key)
        columns = ", ".join(f'"{c.name}"' for c in table.columns)
        statement = (
            f'INSERT INTO {self.trino.target_catalog}."{target.STAGE_SCHEMA}"."{stage}" '
            f"({columns}) SELECT {columns} FROM {source}"
        )
        self.trino.execute(
            statement, session_properties=self._fill_properties(rows), source=query_source(run_id)
        )
        return statement
