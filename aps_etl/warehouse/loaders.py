"""Loading one lake partition into its PostgreSQL target table.

Two fillers for the staging table, one contract (target.py): Trino's
`INSERT INTO aps.<stage> SELECT ... FROM lake.<table>` in dev/prod, ADBC COPY in the
embedded `local` environment where there is no Trino. Both end with the same PostgreSQL
transaction that swaps the partition in, and both drop their stage whatever happens.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import dagster as dg
import polars as pl
from pydantic import Field

from aps_etl.calendar import parse_partition_key
from aps_etl.lake.layout import LakeTable
from aps_etl.lake.lineage import read_file as read_lineage
from aps_etl.lake.storage import LakeResource
from aps_etl.sources.database import PostgresConnection
from aps_etl.warehouse import target
from aps_etl.warehouse.lake_catalog import TrinoLake
from aps_etl.warehouse.trino import TrinoResource


@dataclass(frozen=True)
class LoadReport:
    table: str
    partition: str
    rows: int
    seconds: float
    loader: str
    statement: str | None = None
    snapshots: dict[str, Any] | None = None

    def metadata(self) -> dict[str, Any]:
        metadata: dict[str, Any] = {
            "target_table": f"{target.TARGET_SCHEMA}.{self.table}",
            "rows_loaded": dg.MetadataValue.int(self.rows),
            "dagster/row_count": dg.MetadataValue.int(self.rows),
            "loader": self.loader,
            "load_seconds": dg.MetadataValue.float(round(self.seconds, 3)),
        }
        if self.snapshots:
            metadata["snapshot_versions"] = dg.MetadataValue.json(
                {name: info.get("version") for name, info in sorted(self.snapshots.items())}
            )
        if self.statement:
            metadata["load_sql"] = dg.MetadataValue.md(f"```sql\n{self.statement}\n```")
        return metadata


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
        started = time.perf_counter()
        value = _partition_value(lake_table, partition_key)
        # The lake file's rows and the snapshots it was computed from (its footer): the
        # stage must hold exactly these rows, and the load log names the snapshots.
        lake_rows, snapshots = read_lineage(
            self.lake, self.lake.uri(*lake_table.file_parts(partition_key))
        )
        log = target.LoadLogEntry(
            job or lake_table.job_name, lake_rows, snapshots, run_id, self.kind
        )
        with self.target.connect() as connection:
            partitioned = target.ensure_target(connection, table)
            stage = target.new_stage_name(table, partition_key)
            target.create_stage(connection, table, stage, partitioned=partitioned)
            try:
                if self.trino:
                    statement = self._fill_with_trino(table, lake_table, partition_key, stage)
                else:
                    statement = None
                    self._fill_with_adbc(connection, table, lake_table, partition_key, stage)
                rows = target.swap_partition(
                    connection,
                    table,
                    value,
                    stage,
                    partition_key=partition_key,
                    partitioned=partitioned,
                    log=log,
                )
            finally:
                # after a successful attach the stage is the partition: nothing to drop
                target.drop_stage(connection, stage)
        return LoadReport(
            table.name,
            partition_key,
            rows,
            time.perf_counter() - started,
            self.kind,
            statement,
            snapshots,
        )

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

    def _fill_with_trino(self, table: Any, lake_table: LakeTable, key: str, stage: str) -> str:
        assert self.trino is not None
        source = TrinoLake(self.trino, self.lake).ensure_partition(table, lake_table, key)
        columns = ", ".join(f'"{c.name}"' for c in table.columns)
        statement = (
            f'INSERT INTO {self.trino.target_catalog}."{target.STAGE_SCHEMA}"."{stage}" '
            f"({columns}) SELECT {columns} FROM {source}"
        )
        self.trino.execute(
            statement,
            session_properties={
                # Our own stage table gives atomicity; Trino's extra temp table would not.
                f"{self.trino.target_catalog}.non_transactional_insert": "true",
                f"{self.trino.target_catalog}.write_batch_size": str(self.batch_size),
                # the stage is ours alone: several writers may fill it at once
                "task_min_writer_count": str(self.writers),
            },
        )
        return statement
