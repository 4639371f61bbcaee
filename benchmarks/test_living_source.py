"""A living source, measured on the day data set of the dev stack (issue: living MES source):

- the sensor's check: the source's fingerprints of every daily source table over 7
  business days ending with the data set's day (what `source_change_sensor` asks the
  source each tick); target <= 2 s at 1M source rows a day;
- a re-snapshot of the day after 1% of its changing rows were corrected (updated_at moved
  forward), incremental (`snapshot_partition`, refresh) against a full re-extract of the
  same day (first snapshots into an empty lake); target >= 3x faster.

Both run in this process (no Dagster run: these are the pieces the sensor and the extract
step call). The corrections are undone afterwards, so the data set stays as seeded.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from typing import Any

import pytest

from aps_etl.defs.extract import extract_table
from aps_etl.defs.scenarios.aps_input.assets import DAILY_SPECS
from aps_etl.lib.business_days import business_day_window, business_days
from aps_etl.lib.lake import LakeResource
from aps_etl.lib.sources.changes import fingerprints_of
from aps_etl.lib.sources.database import SourceDatabase
from aps_etl.lib.sources.extraction import snapshot_partition
from benchmarks import harness
from benchmarks.conftest import Bench
from benchmarks.data import _execute, _fetch
from benchmarks.machine import load_average

ROLE = "day"
# the tables whose rows a plant corrects; 1% of the day's rows of each
CHANGING = {
    "process_result": ("result_id", "track_out_ts >= $start and track_out_ts < $end"),
    "equipment_event": ("event_id", "start_ts < $end and (end_ts is null or end_ts > $start)"),
    "lot_history": ("event_id", "event_ts >= $start and event_ts < $end"),
}


@pytest.fixture(scope="module")
def living(bench: Bench):
    dataset = bench.dataset(ROLE, "stack")
    settings = bench.stack.settings
    database = bench.stack.database(ROLE, bench.scale.rows[ROLE])
    source = SourceDatabase(
        database=database,
        host=settings["APS_PG_HOST"],
        port=int(settings["APS_PG_PORT"]),
        user=settings["APS_MES_READER_USER"],
        password=settings["APS_MES_READER_PASSWORD"],
    )
    lake = LakeResource(
        root=f"s3://{settings['APS_S3_BUCKET']}/bench/living-{uuid.uuid4().hex[:8]}",
        s3_endpoint=settings["APS_S3_ENDPOINT"],
        s3_region=settings["APS_S3_REGION"],
        s3_access_key=settings["APS_S3_ACCESS_KEY"],
        s3_secret_key=settings["APS_S3_SECRET_KEY"],
    )
    yield {
        "dataset": dataset,
        "source": source,
        "lake": lake,
        "owner": bench.stack.owner_uri(database),
    }
    if lake.fs.exists(lake.root):
        lake.fs.rm(lake.root, recursive=True)


def _measurement(bench: Bench, key: str, label: str, rows: int) -> harness.Measurement:
    m = harness.Measurement(
        key=f"living/{key}", kind="living", tool=key, label=label, dataset=ROLE,
        server="stack", rows=rows,
    )  # fmt: skip
    bench.measurements.append(m)
    return m


def _round(seconds: float, stages: dict[str, float], **result: Any) -> harness.Round:
    return harness.Round(
        wall=seconds,
        peak_rss_mb=0.0,
        load_before=list(load_average()),
        result={"stages": stages, **result},
    )


def test_sensor_check_of_seven_days(bench: Bench, living: dict, benchmark: Any) -> None:
    day = dt.date.fromisoformat(living["dataset"].partition)
    days = business_days(day, 7)
    m = _measurement(
        bench,
        "sensor_check",
        f"source-change check: fingerprints of {len(DAILY_SPECS)} tables x 7 days "
        "(tables side by side)",
        living["dataset"].rows,
    )

    def check() -> None:
        # as the sensor asks: the tables side by side, each table's days in one statement
        stages: dict[str, float] = {}
        started = time.perf_counter()
        fingerprints_of(living["source"], DAILY_SPECS, days, timings=stages)
        m.rounds.append(_round(time.perf_counter() - started, stages))

    benchmark.pedantic(check, rounds=bench.scale.rounds[ROLE], iterations=1)


def _change_one_percent(owner: str, day: dt.date) -> int:
    """1% of the day's rows of each changing table get a correction (updated_at moves
    forward, a value changes); returns how many. Undone by _undo."""
    start, end = business_day_window(day)
    changed = 0
    for table, (key, where) in CHANGING.items():
        where = where.replace("$start", f"'{start.isoformat()}'").replace(
            "$end", f"'{end.isoformat()}'"
        )
        _execute(
            owner,
            f"drop table if exists _bench_undo_{table}",
            f"create table _bench_undo_{table} as select {key} as k, updated_at "
            f"from {table} where {where} and {key} % 100 = 7",
            f"update {table} t set updated_at = now() from _bench_undo_{table} u "
            f"where t.{key} = u.k",
        )
        changed += _fetch(owner, f"select count(*) from _bench_undo_{table}")[0][0]
    return changed


def _undo(owner: str) -> None:
    for table, (key, _) in CHANGING.items():
        _execute(
            owner,
            f"update {table} t set updated_at = u.updated_at from _bench_undo_{table} u "
            f"where t.{key} = u.k",
            f"drop table _bench_undo_{table}",
        )


def _snapshot_day(living: dict, lake: LakeResource, day: str) -> tuple[dict[str, float], dict]:
    stages, methods = {}, {}
    for spec in DAILY_SPECS:
        t = time.perf_counter()
        result = snapshot_partition(
            living["source"], lake, spec, extract_table(spec, "aps_input"), day
        )
        stages[spec.name] = time.perf_counter() - t
        methods[spec.name] = f"{result.action}/{result.snapshot.method}"
    return stages, methods


def test_incremental_resnapshot_against_full(bench: Bench, living: dict, benchmark: Any) -> None:
    day = living["dataset"].partition
    rows = living["dataset"].rows
    full = _measurement(bench, "full_resnapshot", "re-extract of the whole day (full)", rows)
    inc = _measurement(
        bench, "incremental_resnapshot", "re-snapshot of the day, 1% corrected (incremental)", rows
    )

    def one_round() -> None:
        base = living["lake"]
        lake = LakeResource(
            root=f"{base.root}/r{len(full.rounds)}",
            s3_endpoint=base.s3_endpoint,
            s3_region=base.s3_region,
            s3_access_key=base.s3_access_key,
            s3_secret_key=base.s3_secret_key,
        )
        t = time.perf_counter()
        stages, methods = _snapshot_day(living, lake, day)  # first snapshots: full reads
        full.rounds.append(_round(time.perf_counter() - t, stages, methods=methods))
        changed = _change_one_percent(living["owner"], dt.date.fromisoformat(day))
        try:
            t = time.perf_counter()
            stages, methods = _snapshot_day(living, lake, day)
            inc.rounds.append(
                _round(time.perf_counter() - t, stages, methods=methods, changed_rows=changed)
            )
        finally:
            _undo(living["owner"])

    benchmark.pedantic(one_round, rounds=bench.scale.rounds[ROLE], iterations=1)
    assert all(
        r.result["methods"][name] == "new/incremental" for r in inc.rounds for name in CHANGING
    ), [r.result["methods"] for r in inc.rounds]
