"""The lake as Trino sees it (aps_etl/lib/warehouse/lake_catalog.py), on the dev stack's Trino
and MinIO: a job's first loads run side by side, so its lake schema and tables may be
created by several loads at once."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import polars as pl
import pytest

from aps_etl.defs.scenarios.aps_plan.schema import (
    APS_PLAN_DIFF,
    APS_PLAN_EQUIPMENT,
    APS_PLAN_PRODUCTION,
)
from aps_etl.defs.transforms import transform_table
from aps_etl.env.stack import trino_settings
from aps_etl.lib.lake.atomic import write_parquet
from aps_etl.lib.warehouse.lake_catalog import TrinoLake, drop_lake_schemas
from aps_etl.lib.warehouse.trino import TrinoResource

pytestmark = pytest.mark.stack


@pytest.fixture
def trino(stack_settings: dict[str, str]):
    prefix = f"t{uuid.uuid4().hex[:10]}_"
    resource = TrinoResource(**trino_settings(stack_settings), lake_schema_prefix=prefix)
    yield resource
    drop_lake_schemas(resource, prefix)


def _empty_frame(output) -> pl.DataFrame:
    types = {"text": pl.String, "date": pl.Date, "bigint": pl.Int64, "integer": pl.Int32}
    return pl.DataFrame(
        schema={c.name: types.get(c.pg_type, pl.Float64) for c in output.columns}
    ).cast({c.name: pl.Datetime("us", "UTC") for c in output.columns if c.pg_type == "timestamptz"})


def test_concurrent_first_loads_of_a_job_share_its_new_lake_schema(trino, minio_lake) -> None:
    """Three tables of one job registered at once in a lake schema that does not exist
    yet: each finds it missing, all create it, none fails, every partition is readable."""
    outputs = (APS_PLAN_PRODUCTION, APS_PLAN_EQUIPMENT, APS_PLAN_DIFF)
    key = "RUN-CONCURRENT-1"
    for output in outputs:
        write_parquet(
            minio_lake, transform_table(output, "aps_plan").file_parts(key), _empty_frame(output),
            immutable=False,
        )  # fmt: skip
    catalog = TrinoLake(trino, minio_lake)
    together = threading.Barrier(len(outputs))

    def register(output) -> str:
        together.wait()  # all at once, as the loads of a job's first run
        return catalog.ensure_partition(output, transform_table(output, "aps_plan"), key)

    with ThreadPoolExecutor(max_workers=len(outputs)) as pool:
        sources = list(pool.map(register, outputs))
    for source in sources:
        assert trino.execute(f"SELECT count(*) FROM {source}") == [[0]]
