"""Shared helpers for the end-to-end tests: run the daily job, read target and reference."""

from __future__ import annotations

import datetime as dt
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import adbc_driver_postgresql.dbapi as adbc
import dagster as dg

from aps_etl.definitions import build_defs
from aps_etl.defs.registry import DAILY_RUN, SCENARIOS, outputs_of_run
from aps_etl.lib.warehouse.merge import is_merge
from aps_etl_tests.reference_sql import MASTER, REFERENCE
from aps_etl_tests.reference_sql_kpi import REFERENCE_KPI, parameters

# every registered scenario's output tables (aps_etl/defs/registry.py)
OUTPUTS = tuple(t for scenario in SCENARIOS for t in scenario.outputs)
DAILY_TABLES = tuple(t.name for _, t in outputs_of_run(DAILY_RUN))
# of those, the tables with a partition per day (not the merged master dimensions)
PER_DAY_TABLES = tuple(t.name for _, t in outputs_of_run(DAILY_RUN) if not is_merge(t))
# the lake namespace (folder) of each output table
TABLE_JOB = {t.name: scenario.namespace for scenario in SCENARIOS for t in scenario.outputs}

JOB = DAILY_RUN


def run_daily(
    resources: dict[str, Any],
    partition: str,
    instance: dg.DagsterInstance,
    run_config: dict[str, Any] | None = None,
    tags: dict[str, str] | None = None,
):
    job = build_defs(resources).resolve_job_def(JOB)
    return job.execute_in_process(
        partition_key=partition,
        instance=instance,
        raise_on_error=False,
        run_config=run_config,
        tags=tags,
    )


EVENT_TABLES = ("lot_history", "process_result", "equipment_event")


def accept_incomplete(*tables: str) -> dict[str, Any]:
    """Run config: take these extracts even if the completeness guard finds them empty."""
    return {"ops": {"extract__aps_input": {"config": {"accept_incomplete": list(tables)}}}}


def fetch(uri: str, sql: str, *params: Any) -> list[dict[str, Any]]:
    with adbc.connect(uri) as connection, connection.cursor() as cursor:
        cursor.execute(sql, parameters=params or None)
        rows = cursor.fetch_arrow_table().to_pylist()
        connection.commit()
        return rows


def _order_key(output: Any) -> tuple[str, ...]:
    return tuple(output.merge_key) if is_merge(output) else tuple(output.grain)


def target_partition(uri: str, table: str, key: Any) -> list[dict[str, Any]]:
    """The rows of one partition (a business day, or a plan run_id) of a target table; of a
    merged table (the master dimensions), every row as of now, without valid_from and
    updated_at (what the source alone cannot tell)."""
    output = next(t for t in OUTPUTS if t.name == table)
    if is_merge(output):
        columns = ", ".join(f'"{c}"' for c in output.column_names if c != output.partition_column)
        order = ", ".join(
            f'"{c}" collate "C"' if _is_text(output, c) else f'"{c}"' for c in _order_key(output)
        )
        return fetch(uri, f'select {columns} from public."{table}" order by {order}')
    # byte order, as the pipeline sorts, whatever the database's collation
    order = ", ".join(
        f'"{c}" collate "C"' if _is_text(output, c) else f'"{c}"' for c in output.grain
    )
    return fetch(
        uri,
        f'select * from public."{table}" where "{output.partition_column}" = $1 order by {order}',
        key,
    )


def _is_text(output: Any, column: str) -> bool:
    return next(c for c in output.columns if c.name == column).pg_type == "text"


def reference_partition(source_uri: str, table: str, day: dt.date) -> list[dict[str, Any]]:
    """The contract computed by independent SQL on the source, in the same row order."""
    if table in MASTER:
        rows = fetch(source_uri, MASTER[table])
    elif table in REFERENCE:
        rows = fetch(source_uri, REFERENCE[table], day)
    else:
        rows = fetch(source_uri, REFERENCE_KPI[table], *parameters(table, day))
    return sorted_by_grain(table, rows)


def sorted_by_grain(table: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    output = next(t for t in OUTPUTS if t.name == table)
    return sorted(rows, key=lambda r: tuple(_sort_key(r[c]) for c in _order_key(output)))


def _sort_key(value: Any) -> Any:
    return value.encode() if isinstance(value, str) else value


def assert_rows_equal(table: str, got: list[dict], want: list[dict]) -> None:
    assert [list(r) for r in got[:1]] == [list(r) for r in want[:1]], f"{table}: columns differ"
    assert len(got) == len(want), f"{table}: {len(got)} rows loaded, reference has {len(want)}"
    for loaded, expected in zip(got, want, strict=True):
        for column, value in expected.items():
            actual = loaded[column]
            if isinstance(value, float) and isinstance(actual, float):
                assert math.isclose(actual, value, rel_tol=1e-12, abs_tol=1e-9), (
                    f"{table}.{column}: loaded {actual}, reference {value} in {expected}"
                )
            else:
                assert actual == value, f"{table}.{column}: loaded {actual!r}, reference {value!r}"


def step_failures(result) -> dict[str, str]:
    """Step key -> its error message with its causes; for a step that exhausted its
    retries, the error of its last attempt follows."""
    failures: dict[str, str] = {}
    for event in result.all_events:
        if event.event_type_value != "STEP_UP_FOR_RETRY" and not event.is_step_failure:
            continue
        error, messages = event.event_specific_data.error, []
        while error is not None:
            messages.append(error.message.strip())
            error = error.cause
        text = " <- ".join(messages)
        if event.is_step_failure and event.step_key in failures:
            text = f"{text} <- {failures[event.step_key]}"
        failures[event.step_key] = text
    return failures


def run_script_on_embedded_default(script: str, home: Path) -> dict[str, Any]:
    """Runs `script` (python -c, `home` as its argv[1]) in a process of its own on the
    embedded default under `home`, and returns the JSON of its last output line: for tests
    that change a declaration before the definitions are imported."""
    done = subprocess.run(
        [sys.executable, "-c", script, str(home)],
        env={"PATH": "/usr/bin:/bin", "HOME": str(home), "APS_ENV": "local",
             "APS_LOCAL_HOME": str(home)},
        cwd=Path(__file__).resolve().parent.parent,
        capture_output=True,
        text=True,
        timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])
