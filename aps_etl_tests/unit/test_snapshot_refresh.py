"""Snapshots of a changing source, one partition at a time, on the embedded PostgreSQL:
fingerprints agree between PostgreSQL and Polars, a composed (incremental) snapshot equals
a full re-extract on randomized corrections, source rules and the completeness guard
refuse what must not become the day's data, and each failure names table, partition and
cause while the previous snapshot stays in force."""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
from pathlib import Path

import adbc_driver_postgresql.dbapi as adbc
import polars as pl
import pytest

from aps_etl.defs.extract import extract_table
from aps_etl.devdata import seed_source
from aps_etl.env.embedded import SOURCE_DB, start_embedded_postgres
from aps_etl.lib.business_days import business_day_window
from aps_etl.lib.lake import LakeResource, snapshots
from aps_etl.lib.sources.changes import daily_states, source_fingerprints
from aps_etl.lib.sources.database import SourceDatabase, SourceError
from aps_etl.lib.sources.extraction import (
    IncompleteExtract,
    SourceRulesViolated,
    snapshot_partition,
)
from aps_etl.lib.sources.fingerprint import from_row
from aps_etl.lib.sources.mes import LOT_HISTORY, PROCESS_RESULT, ROUTE_STEP
from aps_etl.lib.sources.specs import TS, ExtractSpec
from aps_etl_tests.living_source import execute

START = dt.date(2026, 11, 20)
PR_TABLE = extract_table(PROCESS_RESULT, "aps_input")
DAY = "2026-11-21"


@pytest.fixture(scope="module")
def pgdata(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tmp_path_factory.mktemp("refresh-home") / "postgres")


@pytest.fixture(scope="module")
def pg(pgdata: str):
    return start_embedded_postgres(Path(pgdata))


@pytest.fixture
def plant(pg, pgdata, tmp_path):
    """A freshly seeded source and an empty lake, for each test."""
    seed_source(pg.uri(SOURCE_DB), start_date=START, days=3, lots=300, seed=5, progress=False)
    source = SourceDatabase(database=SOURCE_DB, embedded_pgdata=pgdata)
    return {"uri": pg.uri(SOURCE_DB), "source": source, "lake": LakeResource(root=str(tmp_path))}


def _snap(plant, spec: ExtractSpec, day: str = DAY, **kw):
    table = extract_table(spec, "aps_input")
    return snapshot_partition(plant["source"], plant["lake"], spec, table, day, **kw)


def _full(plant, spec: ExtractSpec, day: str = DAY) -> pl.DataFrame:
    start, end = business_day_window(dt.date.fromisoformat(day))
    return plant["source"].extract(spec, start, end)


def _sorted(frame: pl.DataFrame, spec: ExtractSpec) -> pl.DataFrame:
    return frame.sort(list(spec.primary_key))


def test_fingerprints_agree_however_they_are_computed(pg, pgdata) -> None:
    """Negative keys, timestamps before 1970, microseconds, keys beyond 2^31: the day's
    aggregate, a grouped scan of several days, and the hashes of the day's rows given
    back to the source as literal values (how a composed snapshot is checked) agree."""
    with adbc.connect(pg.uri("postgres")) as c, c.cursor() as cur:
        c.adbc_connection.set_autocommit(True)  # type: ignore[attr-defined]
        cur.execute("drop database if exists fp_check")
        cur.execute("create database fp_check")
    uri = pg.uri("fp_check")
    execute(
        uri,
        "create table t (id bigint primary key, at timestamptz not null, "
        "updated_at timestamptz not null)",
    )
    rng = random.Random(3)
    rows = []
    for _ in range(2000):
        key = rng.choice([-1, 1]) * rng.randrange(1, 10**12)
        at = dt.datetime(2026, 11, 19, 15, tzinfo=dt.UTC) + dt.timedelta(
            seconds=rng.randrange(0, 3 * 86400)
        )
        upd = dt.datetime(1960, 1, 1, tzinfo=dt.UTC) + dt.timedelta(
            microseconds=rng.randrange(0, 3 * 10**15)
        )
        rows.append((key, at, upd))
    frame = pl.DataFrame(rows, schema={"id": pl.Int64, "at": TS, "updated_at": TS}, orient="row")
    frame = frame.unique("id")
    with adbc.connect(uri) as c, c.cursor() as cur:
        cur.adbc_ingest("t", frame.to_arrow(), mode="append")
        c.commit()
    spec = ExtractSpec(
        name="t",
        table="t",
        mode="incremental",
        partition_column="at",
        columns={"id": pl.Int64, "at": TS, "updated_at": TS},
        primary_key=("id",),
    )
    source = SourceDatabase(database="fp_check", embedded_pgdata=pgdata)
    days = ["2026-11-20", "2026-11-21", "2026-11-22", "2026-11-23"]
    grouped = source_fingerprints(source, spec, days)
    for day in days:
        start, end = business_day_window(dt.date.fromisoformat(day))
        with source.consistent_reads(spec) as read:
            sql = read.select_sql(spec, start, end)
            row = read.arrow(read.engine.fingerprint_sql(spec, sql)).to_pylist()[0]
            rows_of_day = read.rows(sql)
            given = (
                read.arrow(read.engine.rows_hash_sql(spec, rows_of_day)).column(0)[0].as_py()
                if rows_of_day.height
                else "0"
            )
        in_pg = from_row(spec, tuple(row.values()))
        assert in_pg == grouped[day], day
        assert (in_pg.rows, in_pg.checksum) == (rows_of_day.height, given), day
    assert grouped["2026-11-23"].rows == 0 and sum(g.rows for g in grouped.values()) == frame.height


_SHIFT = (
    "track_out_ts = track_out_ts + interval '1 day', track_in_ts = track_in_ts + interval '1 day'"
)
_CHANGES = {
    "update": "update process_result set out_qty = greatest(out_qty - 1, 0), "
    "updated_at = clock_timestamp() where result_id = $1",
    "late": "insert into process_result select (select max(result_id) + 1 from process_result), "
    "lot_id, product_id, step_seq, step_id, process_id, equipment_id, track_in_ts, "
    "track_out_ts, in_qty, out_qty, scrap_qty, is_rework, clock_timestamp() "
    "from process_result where result_id = $1",
    "delete": "delete from process_result where result_id = $1",
    "move_out": f"update process_result set {_SHIFT}, updated_at = clock_timestamp() "
    "where result_id = $1",
    "backwards": "update process_result set scrap_qty = scrap_qty + 1, "
    "updated_at = updated_at - interval '3 hours' where result_id = $1",
    "future": "update process_result set scrap_qty = scrap_qty + 1, "
    "updated_at = clock_timestamp() + interval '1 day' where result_id = $1",
}


def _random_change(rng: random.Random, plant: dict, day: str) -> str:
    """One MES change to the day's process_result (or a row moved in from the day before)."""
    kind = rng.choice(
        ["update", "update", "late", "delete", "move_out", "move_in", "backwards", "future"]
    )
    source_day = dt.date.fromisoformat(day) - dt.timedelta(days=1 if kind == "move_in" else 0)
    start, end = business_day_window(source_day)
    ids = (
        plant["source"]
        .fetch_arrow(
            "select result_id from process_result where track_out_ts >= "
            f"'{start.isoformat()}' and track_out_ts < '{end.isoformat()}' order by result_id"
        )["result_id"]
        .to_pylist()
    )
    sql = _CHANGES["move_out" if kind == "move_in" else kind]
    execute(plant["uri"], sql, rng.choice(ids))
    return kind


def test_a_composed_snapshot_equals_a_full_reextract_on_random_corrections(plant) -> None:
    rng = random.Random(20261201)
    first = _snap(plant, PROCESS_RESULT)
    assert (first.action, first.snapshot.version) == ("new", 1)
    methods = []
    for _ in range(14):
        kinds = [_random_change(rng, plant, DAY) for _ in range(rng.randint(1, 3))]
        result = _snap(plant, PROCESS_RESULT)
        full = _full(plant, PROCESS_RESULT)
        stored = snapshots.scan(plant["lake"], PR_TABLE, result.snapshot).collect()
        assert _sorted(stored, PROCESS_RESULT).equals(_sorted(full, PROCESS_RESULT)), kinds
        assert result.snapshot.rows == full.height
        methods.append((tuple(kinds), result.snapshot.method))
        # checked again at once: the source holds still, the snapshot is current
        assert _snap(plant, PROCESS_RESULT).action == "current"
    used = {method for _, method in methods}
    assert used == {"incremental", "full"}, methods
    # every version is still there, each readable with its own rows
    history = snapshots.history(plant["lake"], extract_table(PROCESS_RESULT, "aps_input"), DAY)
    assert [s.version for s in history] == list(range(1, len(history) + 1))
    assert all(
        snapshots.scan(plant["lake"], PR_TABLE, s).collect().height == s.rows for s in history
    )
    # a delta holds only the changed rows; the version before it is untouched
    deltas = [s for s in history if s.is_delta]
    assert deltas and all(pl.read_parquet(s.uri).height == s.delta_rows for s in deltas)


def test_a_query_spec_follows_a_late_event(plant) -> None:
    """lot_history (a query spec): a late HOLD becomes a new version, composed."""
    assert _snap(plant, LOT_HISTORY).snapshot.version == 1
    start, end = business_day_window(dt.date.fromisoformat(DAY))
    execute(
        plant["uri"],
        "insert into lot_history select (select max(event_id) + 1 from lot_history), lot_id, "
        "product_id, 'HOLD', event_ts + interval '1 second', step_seq, step_id, null, 'HOLD', "
        "qty, 'LATE', now() from lot_history where event_type = 'TRACK_OUT' "
        "and event_ts >= $1 and event_ts < $2 order by event_id limit 1",
        start,
        end,
    )
    result = _snap(plant, LOT_HISTORY)
    assert (result.snapshot.version, result.snapshot.method, result.snapshot.delta_rows) == (
        2,
        "incremental",
        1,
    )
    table = extract_table(LOT_HISTORY, "aps_input")
    assert _sorted(
        snapshots.scan(plant["lake"], table, result.snapshot).collect(), LOT_HISTORY
    ).equals(_sorted(_full(plant, LOT_HISTORY), LOT_HISTORY))


def test_policy_reuse_reads_no_source(plant) -> None:
    first = _snap(plant, PROCESS_RESULT)
    broken = SourceDatabase(database="mes", host="127.0.0.1", port=1, user="nobody")
    table = extract_table(PROCESS_RESULT, "aps_input")
    again = snapshot_partition(broken, plant["lake"], PROCESS_RESULT, table, DAY, policy="reuse")
    assert (again.action, again.snapshot.uri) == ("reused", first.snapshot.uri)
    with pytest.raises(SourceError, match="cannot connect"):
        snapshot_partition(broken, plant["lake"], PROCESS_RESULT, table, DAY)


def test_nan_null_and_out_of_range_source_rows_are_refused_with_counts(plant) -> None:
    uri = plant["uri"]
    first = _snap(plant, ROUTE_STEP).snapshot
    execute(uri, "update route_step set std_cycle_min = 'NaN' where step_seq = 1")
    with pytest.raises(SourceRulesViolated) as refused:
        _snap(plant, ROUTE_STEP)
    message = str(refused.value)
    assert "route_step" in message and DAY in message and "std_cycle_min is finite" in message
    (count,) = refused.value.metadata["violation_counts"].values()
    assert count == len(plant["source"].fetch_arrow("select 1 from route_step where step_seq = 1"))
    assert refused.value.metadata["sample_rows"]["std_cycle_min is finite"]
    assert snapshots.newest(plant["lake"], extract_table(ROUTE_STEP, "aps_input"), DAY) == first
    # the feed loses its constraints: nulls and negative quantities are caught here
    execute(uri, "alter table process_result alter column lot_id drop not null")
    execute(
        uri, "alter table process_result drop constraint if exists process_result_out_qty_check"
    )
    start, end = business_day_window(dt.date.fromisoformat(DAY))
    execute(
        uri,
        "update process_result set lot_id = null, out_qty = -1, updated_at = now() "
        "where result_id in (select result_id from process_result "
        "where track_out_ts >= $1 and track_out_ts < $2 order by result_id limit 2)",
        start,
        end,
    )
    with pytest.raises(SourceRulesViolated) as refused:
        _snap(plant, PROCESS_RESULT)
    assert refused.value.metadata["violation_counts"] == {
        "lot_id is not null": 2,
        "out_qty >= 0": 2,
    }


def test_the_completeness_guard_compares_with_earlier_days(plant) -> None:
    for day in ("2026-11-20", DAY):
        _snap(plant, PROCESS_RESULT, day)
    day = "2026-11-22"
    start, end = business_day_window(dt.date.fromisoformat(day))
    execute(
        plant["uri"],
        "delete from process_result where track_out_ts >= $1 and track_out_ts < $2 "
        "and result_id % 10 <> 0",
        start,
        end,
    )
    with pytest.raises(
        IncompleteExtract, match=r"fewer than 50% of the median .* of its 2 earlier day"
    ):
        _snap(plant, PROCESS_RESULT, day)
    assert snapshots.newest(plant["lake"], extract_table(PROCESS_RESULT, "aps_input"), day) is None
    accepted = _snap(plant, PROCESS_RESULT, day, accept_incomplete=True)
    assert accepted.snapshot.version == 1
    assert any(level == "warning" and "taken anyway" in text for level, text in accepted.messages)
    # a "warn" source takes it with a warning
    warn = dataclasses.replace(PROCESS_RESULT, guard="warn")
    execute(
        plant["uri"],
        "delete from process_result where track_out_ts >= $1 and track_out_ts < $2",
        start,
        end,
    )
    result = _snap(plant, warn, day)
    assert result.snapshot.rows == 0 and result.snapshot.version == 2


def test_a_missing_source_table_and_an_unreachable_source_are_named(plant) -> None:
    _snap(plant, PROCESS_RESULT)
    execute(plant["uri"], "alter table process_result rename to process_result_old")
    try:
        with pytest.raises(SourceError, match="process_result.*does not exist"):
            _snap(plant, PROCESS_RESULT)
        tables = {"process_result": extract_table(PROCESS_RESULT, "aps_input")}
        with pytest.raises(SourceError, match=rf"source-change check of process_result for {DAY}"):
            daily_states(plant["source"], plant["lake"], [PROCESS_RESULT], tables, [DAY])
    finally:
        execute(plant["uri"], "alter table process_result_old rename to process_result")
    down = SourceDatabase(database="mes", host="127.0.0.1", port=1, user="nobody")
    with pytest.raises(SourceError, match="process_result.*cannot connect"):
        daily_states(down, plant["lake"], [PROCESS_RESULT], tables, [DAY])


def test_reload_full_and_a_forced_full_snapshot(plant) -> None:
    """PRD 3.1's option: a source set to reload `full` takes a changed partition whole;
    policy `full` takes a new whole version even when the fingerprint did not move (a
    correction made without touching updated_at, which the fingerprint cannot see)."""
    whole = dataclasses.replace(PROCESS_RESULT, reload="full")
    assert _snap(plant, whole).snapshot.version == 1
    start, end = business_day_window(dt.date.fromisoformat(DAY))
    window = "track_out_ts >= $1 and track_out_ts < $2"
    execute(
        plant["uri"],
        "update process_result set out_qty = out_qty + 1, updated_at = now() where result_id = "
        f"(select min(result_id) from process_result where {window})",
        start,
        end,
    )
    changed = _snap(plant, whole).snapshot
    assert (changed.version, changed.method, changed.is_delta) == (2, "full", False)
    # a silent correction: updated_at left as it was
    execute(
        plant["uri"],
        "update process_result set scrap_qty = scrap_qty + 1 where result_id = "
        f"(select max(result_id) from process_result where {window})",
        start,
        end,
    )
    assert _snap(plant, PROCESS_RESULT).action == "current"  # invisible to the fingerprint
    forced = _snap(plant, PROCESS_RESULT, policy="full")
    assert (forced.action, forced.snapshot.version, forced.snapshot.method) == ("new", 3, "full")
    stored = snapshots.scan(plant["lake"], PR_TABLE, forced.snapshot).collect()
    assert _sorted(stored, PROCESS_RESULT).equals(
        _sorted(_full(plant, PROCESS_RESULT), PROCESS_RESULT)
    )
    with pytest.raises(ValueError, match="reload must be incremental or full"):
        dataclasses.replace(PROCESS_RESULT, reload="sometimes")
