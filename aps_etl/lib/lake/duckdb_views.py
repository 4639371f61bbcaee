"""DuckDB over the lake: views on lake Parquet, read in place (S3 included).

DuckDB cannot download its httpfs extension here (nor should production depend on a
download at run time), so S3 is reached through fsspec: the lake's s3fs filesystem is
registered with the connection and `read_parquet('s3://...')` goes through it.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from aps_etl.lib.lake import snapshots
from aps_etl.lib.lake.layout import LakeTable
from aps_etl.lib.lake.snapshots import Snapshot
from aps_etl.lib.lake.storage import LakeResource


def attach_lake(con: Any, lake: LakeResource) -> Any:
    if lake.is_s3:
        con.register_filesystem(lake.fs)
    # Timestamps are compared as instants; pin the zone so nothing depends on the host.
    con.execute("SET TimeZone = 'UTC'")
    return con


def create_view(con: Any, name: str, uri: str) -> None:
    """A view `name` over one lake Parquet file."""
    literal = uri.replace("'", "''")
    con.execute(f"CREATE OR REPLACE VIEW \"{name}\" AS SELECT * FROM read_parquet('{literal}')")


def create_empty_view(con: Any, name: str, schema: pl.Schema) -> None:
    """A view `name` with the declared columns and no rows (e.g. no plan in force)."""
    con.register(f"_empty_{name}", pl.DataFrame(schema=schema).to_arrow())
    con.execute(f'CREATE OR REPLACE VIEW "{name}" AS SELECT * FROM "_empty_{name}"')


def create_snapshot_view(
    con: Any, name: str, lake: LakeResource, table: LakeTable, snapshot: Snapshot
) -> None:
    """A view `name` over an extract snapshot version: read in place when it is one whole
    file; a version kept as deltas is resolved by Polars and handed over as Arrow."""
    if not snapshot.is_delta:
        create_view(con, name, snapshot.uri)
        return
    con.register(f"_snapshot_{name}", snapshots.scan(lake, table, snapshot).collect().to_arrow())
    con.execute(f'CREATE OR REPLACE VIEW "{name}" AS SELECT * FROM "_snapshot_{name}"')
