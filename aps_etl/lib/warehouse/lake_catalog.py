"""The lake as Trino sees it: one Hive table per lake table, one registered partition per
written lake partition (file metastore, the partition folder as its location)."""

from __future__ import annotations

from typing import Any

from aps_etl.lib.lake.layout import LakeTable
from aps_etl.lib.lake.storage import LakeResource
from aps_etl.lib.type_map import BY_POSTGRES
from aps_etl.lib.warehouse.trino import TrinoError, TrinoResource


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


class TrinoLake:
    def __init__(self, trino: TrinoResource, lake: LakeResource) -> None:
        if not lake.is_s3:
            raise ValueError("Trino reads the lake from S3; this lake is a local folder")
        self.trino, self.lake = trino, lake

    def schema_name(self, lake_table: LakeTable) -> str:
        return f"{self.trino.lake_schema_prefix}{lake_table.stage}_{lake_table.job_name}"

    def table_name(self, lake_table: LakeTable) -> str:
        schema = self.schema_name(lake_table)
        return f"{_q(self.trino.lake_catalog)}.{_q(schema)}.{_q(lake_table.table)}"

    @staticmethod
    def partition_column(table: Any, lake_table: LakeTable) -> str:
        """The Hive partition column: the folder's name (`date`), unless the data already has
        a column of that name (`run_id`): partitions are registered with explicit
        locations, so the column need not match the folder."""
        dim = lake_table.partition_name
        return f"{dim}_partition" if dim in {c.name for c in table.columns} else dim

    def ensure_table(self, table: Any, lake_table: LakeTable) -> None:
        """The table (and its schema when missing): one statement when the schema exists."""
        columns = ", ".join(f"{_q(c.name)} {BY_POSTGRES[c.pg_type].trino}" for c in table.columns)
        dim = self.partition_column(table, lake_table)
        dim_type = "DATE" if lake_table.partition_name == "date" else "VARCHAR"
        job_uri = self.lake.uri(*lake_table.job_parts()) + "/"
        create_table = (
            f"CREATE TABLE IF NOT EXISTS {self.table_name(lake_table)} "
            f"({columns}, {_q(dim)} {dim_type}) WITH (format = 'PARQUET', "
            f"external_location = {_literal(job_uri)}, partitioned_by = ARRAY[{_literal(dim)}])"
        )
        try:
            self._if_absent(create_table)
        except TrinoError as exc:
            if exc.error_name != "NOT_FOUND":  # the schema is missing: create it, retry
                raise
            catalog = _q(self.trino.lake_catalog)
            self._if_absent(
                f"CREATE SCHEMA IF NOT EXISTS {catalog}.{_q(self.schema_name(lake_table))} "
                f"WITH (location = {_literal(job_uri)})"
            )
            self._if_absent(create_table)

    def _if_absent(self, create: str) -> None:
        """A CREATE ... IF NOT EXISTS that tolerates losing a race: the loads of a job run
        side by side, and two that find its new schema missing both create it (the file
        metastore answers the slower one ALREADY_EXISTS despite IF NOT EXISTS)."""
        try:
            self.trino.execute(create)
        except TrinoError as exc:
            if exc.error_name != "ALREADY_EXISTS":
                raise

    def ensure_partition(self, table: Any, lake_table: LakeTable, key: str) -> str:
        """Registers the partition if needed; returns the FROM clause that selects it.

        One statement on every load but a table's first: registering and being told it
        exists is one round trip (asking `$partitions` first was two, and the listing is the
        file metastore's slowest call); the table and its schema are created only when
        Trino answers that the table is missing. Each statement costs 20-700 ms here, more
        than a small load's INSERT."""
        try:
            self._register(table, lake_table, key)
        except TrinoError as exc:
            if exc.error_name != "NOT_FOUND":
                raise
            self.ensure_table(table, lake_table)
            self._register(table, lake_table, key)
        dim = self.partition_column(table, lake_table)
        value = f"DATE {_literal(key)}" if lake_table.partition_name == "date" else _literal(key)
        return f"{self.table_name(lake_table)} WHERE {_q(dim)} = {value}"

    def _register(self, table: Any, lake_table: LakeTable, key: str) -> None:
        dim = self.partition_column(table, lake_table)
        location = self.lake.uri(*lake_table.partition_parts(key))
        try:
            self.trino.execute(
                f"CALL {_q(self.trino.lake_catalog)}.system.register_partition("
                f"schema_name => {_literal(self.schema_name(lake_table))}, "
                f"table_name => {_literal(lake_table.table)}, "
                f"partition_columns => ARRAY[{_literal(dim)}], "
                f"partition_values => ARRAY[{_literal(key)}], location => {_literal(location)})"
            )
        except TrinoError as exc:
            if exc.error_name != "ALREADY_EXISTS":
                raise


def drop_lake_schemas(trino: TrinoResource, prefix: str) -> None:
    """Drops every lake schema whose name starts with `prefix`, with its tables (the
    metastore entries only: the Parquet stays where it is). For throwaway prefixes:
    test runs, benchmark rounds."""
    catalog = _q(trino.lake_catalog)
    for (schema,) in trino.execute(f"SHOW SCHEMAS FROM {catalog}"):
        if not schema.startswith(prefix):
            continue
        for (table,) in trino.execute(f"SHOW TABLES FROM {catalog}.{_q(schema)}"):
            trino.execute(f"DROP TABLE IF EXISTS {catalog}.{_q(schema)}.{_q(table)}")
        trino.execute(f"DROP SCHEMA IF EXISTS {catalog}.{_q(schema)}")
