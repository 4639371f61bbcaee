"""The dev stack's MariaDB MES with a PostgreSQL twin: the same plant seeded into both, and
every later change made on PostgreSQL and copied to MariaDB whole (one atomic RENAME swap,
devdata/load_mariadb.py). The pipeline reads MariaDB; the contract's reference SQL runs on
the PostgreSQL twin, so what MariaDB delivers is checked against an independent reading of
the same rows."""

from __future__ import annotations

from collections.abc import Mapping

import adbc_driver_postgresql.dbapi as adbc
import pyarrow as pa

from aps_etl.cli.seed_source import source_owner_mariadb
from aps_etl.devdata import MariaDBTarget
from aps_etl.devdata.load import TABLES
from aps_etl.devdata.load_mariadb import load_tables_mariadb
from aps_etl_tests.living_source import MirroredSource


def stack_mariadb(values: Mapping[str, str]) -> MariaDBTarget:
    """The stack's MariaDB `mes` as its owner, over TLS verified against the stack's CA (as
    `aps-etl seed-source --engine mariadb` fills it)."""
    return source_owner_mariadb("dev", values)


def _contract_table(cursor: object, table: str) -> pa.Table:
    # numeric as its exact text (ADBC would hand an opaque extension type): MariaDB reads
    # '12.50' into DECIMAL(10,2) exactly
    cursor.execute(  # type: ignore[attr-defined]
        "select column_name, data_type from information_schema.columns "
        "where table_name = $1 and table_schema = current_schema() order by ordinal_position",
        parameters=(table,),
    )
    columns = [
        f'"{name}"::text as "{name}"' if kind == "numeric" else f'"{name}"'
        for name, kind in cursor.fetchall()  # type: ignore[attr-defined]
    ]
    cursor.execute(f"select {', '.join(columns)} from {table}")  # type: ignore[attr-defined]
    return cursor.fetch_arrow_table()  # type: ignore[attr-defined]


def mirror(pg_uri: str, target: MariaDBTarget) -> None:
    """MariaDB's source made equal to the PostgreSQL twin's, all nine tables at once."""
    with adbc.connect(pg_uri) as connection, connection.cursor() as cursor:
        tables = {name: _contract_table(cursor, name) for name in TABLES}
    load_tables_mariadb(target, tables, replace=True, comment="mirror of the PostgreSQL twin")


def twin(pg_uri: str, target: MariaDBTarget) -> MirroredSource:
    """The PostgreSQL twin's URI, whose every change (living_source) reaches MariaDB too."""
    mirror(pg_uri, target)
    return MirroredSource(pg_uri, lambda: mirror(pg_uri, target))
