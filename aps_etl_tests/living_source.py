"""A living MES source for the tests: corrections, late rows, deletes, moved rows, an
emptied and refilled day, updated_at going backwards or into the future, each applied
with SQL to a seeded `mes`, as the plant's MES would.

Each change is made on PostgreSQL. A `MirroredSource` (a PostgreSQL URI with a `mirror`)
copies the source to another engine after every change: the MariaDB tests change their
MariaDB MES that way, and the PostgreSQL copy stays the reference the contract's SQL runs
on."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable
from typing import Any, TypeVar

import adbc_driver_postgresql.dbapi as adbc

from aps_etl.lib.business_days import business_day_window
from aps_etl_tests.pipeline_harness import fetch

F = TypeVar("F", bound=Callable[..., Any])


class MirroredSource(str):
    """A PostgreSQL source URI whose every change (a function below) is then copied to
    another engine's source by `mirror()`."""

    mirror: Callable[[], None]

    def __new__(cls, uri: str, mirror: Callable[[], None]) -> MirroredSource:
        made = super().__new__(cls, uri)
        made.mirror = mirror
        return made


def mutation(change: F) -> F:
    """A change of the source: mirrored afterwards when the source is a MirroredSource."""

    @functools.wraps(change)
    def changed(uri: str, *args: Any, **kwargs: Any) -> Any:
        result = change(uri, *args, **kwargs)
        if isinstance(uri, MirroredSource):
            uri.mirror()
        return result

    return changed  # type: ignore[return-value]


def execute(uri: str, sql: str, *params: Any) -> None:
    """A statement without a result (DDL, DML without RETURNING), committed."""
    with adbc.connect(uri) as connection, connection.cursor() as cursor:
        cursor.execute(sql, parameters=params or None)
        connection.commit()


def window(day: str) -> tuple[dt.datetime, dt.datetime]:
    return business_day_window(dt.date.fromisoformat(day))


def _ids(uri: str, sql: str, *params: Any) -> list[int]:
    return [next(iter(r.values())) for r in fetch(uri, sql, *params)]


def _results_of(uri: str, day: str, limit: int, offset: int = 0) -> list[int]:
    start, end = window(day)
    return _ids(
        uri,
        "select result_id from process_result where track_out_ts >= $1 and track_out_ts < $2 "
        "and out_qty > 0 order by result_id limit $3 offset $4",
        start,
        end,
        limit,
        offset,
    )


@mutation
def correct_results(
    uri: str, day: str, n: int = 5, *, updated_at: str = "now()", offset: int = 0
) -> list[int]:
    """The correction of the issue: out_qty - 1, scrap_qty + 1 (in_qty still adds up)."""
    ids = _results_of(uri, day, n, offset)
    fetch(
        uri,
        "update process_result set out_qty = out_qty - 1, scrap_qty = scrap_qty + 1, "
        f"updated_at = {updated_at} where result_id = any($1) returning 1",
        ids,
    )
    return ids


@mutation
def late_result(uri: str, day: str) -> int:
    """A pass reported hours late: a new row, track-out inside the day."""
    (row,) = fetch(
        uri,
        """insert into process_result
             select (select max(result_id) + 1 from process_result), lot_id, product_id,
                    step_seq, step_id, process_id, equipment_id, track_in_ts, track_out_ts,
                    in_qty, out_qty, scrap_qty, is_rework, now()
             from process_result where result_id = $1
           returning result_id""",
        _results_of(uri, day, 1, offset=3)[0],
    )
    return row["result_id"]


@mutation
def late_hold(uri: str, day: str) -> int:
    """A HOLD recorded late on a lot that moved that day: the lot becomes abnormal for D."""
    start, end = window(day)
    (row,) = fetch(
        uri,
        """insert into lot_history
             select (select max(event_id) + 1 from lot_history), lot_id, product_id, 'HOLD',
                    event_ts + interval '1 second', step_seq, step_id, null, 'HOLD', qty,
                    'LATE-QA', now()
             from lot_history
             where event_type = 'TRACK_OUT' and event_ts >= $1 and event_ts < $2
             order by event_id limit 1
           returning event_id""",
        start,
        end,
    )
    return row["event_id"]


@mutation
def delete_result(uri: str, day: str) -> int:
    (result_id,) = _results_of(uri, day, 1, offset=7)
    fetch(uri, "delete from process_result where result_id = $1 returning 1", result_id)
    return result_id


@mutation
def move_result(uri: str, day: str) -> int:
    """A pass whose times were wrong by a day: it moves to the next business day."""
    (result_id,) = _results_of(uri, day, 1, offset=11)
    fetch(
        uri,
        "update process_result set track_in_ts = track_in_ts + interval '1 day', "
        "track_out_ts = track_out_ts + interval '1 day', updated_at = now() "
        "where result_id = $1 returning 1",
        result_id,
    )
    return result_id


@mutation
def idle_run_interval(uri: str, day: str) -> int:
    """An equipment interval corrected from RUN to IDLE."""
    start, end = window(day)
    (row,) = fetch(
        uri,
        """update equipment_event set state = 'IDLE', updated_at = now()
           where event_id = (select event_id from equipment_event where state = 'RUN'
                             and start_ts >= $1 and start_ts < $2 order by event_id limit 1)
           returning event_id""",
        start,
        end,
    )
    return row["event_id"]


@mutation
def empty_day(uri: str, day: str) -> int:
    """The day's results vanish (a lagging feed); they are kept aside for refill_day."""
    start, end = window(day)
    execute(uri, "drop table if exists _kept_results")
    execute(
        uri,
        "create table _kept_results as select * from process_result "
        "where track_out_ts >= $1 and track_out_ts < $2",
        start,
        end,
    )
    (row,) = fetch(uri, "select count(*) as n from _kept_results")
    execute(
        uri, "delete from process_result where result_id in (select result_id from _kept_results)"
    )
    return row["n"]


@mutation
def refill_day(uri: str) -> int:
    """The rows arrive after all, exactly as they were."""
    execute(uri, "insert into process_result select * from _kept_results")
    (row,) = fetch(uri, "select count(*) as n from _kept_results")
    execute(uri, "drop table _kept_results")
    return row["n"]


@mutation
def change_plan(uri: str, run_id: str, delta: int) -> None:
    """A COMPLETED plan run edited in place (and edited back with -delta)."""
    execute(
        uri,
        f"update plan_production set planned_qty = planned_qty + ({int(delta)}) "
        "where run_id = $1 and (plan_date, product_id, step_id) = "
        "(select plan_date, product_id, step_id from plan_production "
        "where run_id = $1 order by 1, 2, 3 limit 1)",
        run_id,
    )
