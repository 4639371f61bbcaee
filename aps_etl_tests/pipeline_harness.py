"""Shared helpers for the end-to-end tests: run the daily job, read target and reference."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import adbc_driver_postgresql.dbapi as adbc
import dagster as dg

from aps_etl.definitions import build_defs
from aps_etl.domains.aps_input.assets import OUTPUTS
from aps_etl_tests.reference_sql import REFERENCE

JOB = "aps_daily"


def run_daily(resources: dict[str, Any], partition: str, instance: dg.DagsterInstance):
    job = build_defs(resources).resolve_job_def(JOB)
    return job.execute_in_process(partition_key=partition, instance=instance, raise_on_error=False)


def fetch(uri: str, sql: str, *params: Any) -> list[dict[str, Any]]:
    with adbc.connect(uri) as connection, connection.cursor() as cursor:
        cursor.execute(sql, parameters=params or None)
        rows = cursor.fetch_arrow_table().to_pylist()
        connection.commit()
        return rows


def target_partition(uri: str, table: str, day: dt.date) -> list[dict[str, Any]]:
    grain = next(t.grain for t in OUTPUTS if t.name == table)
    order = ", ".join(f'"{c}"' for c in grain)
    return fetch(uri, f'select * from public."{table}" where base_date = $1 order by {order}', day)


def reference_partition(source_uri: str, table: str, day: dt.date) -> list[dict[str, Any]]:
    return fetch(source_uri, REFERENCE[table], day)


def assert_rows_equal(table: str, got: list[dict], want: list[dict]) -> None:
    assert [list(r) for r in got[:1]] == [list(r) for r in want[:1]], f"{table}: columns differ"
    assert len(got) == len(want), f"{table}: {len(got)} rows loaded, reference has {len(want)}"
    for loaded, expected in zip(got, want, strict=True):
        for column, value in expected.items():
            actual = loaded[column]
            if isinstance(value, float):
                assert math.isclose(actual, value, rel_tol=1e-12, abs_tol=1e-9), (
                    f"{table}.{column}: loaded {actual}, reference {value} in {expected}"
                )
            else:
                assert actual == value, f"{table}.{column}: loaded {actual!r}, reference {value!r}"


def step_failures(result) -> dict[str, str]:
    return {
        event.step_key: (
            event.step_failure_data.error.message if event.step_failure_data.error else ""
        )
        for event in result.all_events
        if event.is_step_failure
    }
