"""Scenario 3, plan vs actual: the plan in force for business day D, and D's plan attainment,
equipment utilisation and bottleneck groups.

The joins run in DuckDB on views the caller creates on the connection, named and typed as the
source tables (timestamps TIMESTAMP WITH TIME ZONE):

- ``plan_production``, ``plan_equipment``: the rows of the plan in force (empty without one);
- ``process_result``, ``equipment_event``, ``equipment``, ``lot_history``, ``product``,
  ``route_step``: D's extracts, or whole tables.

Every query filters by time itself (comparing timestamps with W(D)'s UTC bounds, passed as
parameters), so it gives the same answer on D's extract and on the whole source table, and
nothing depends on the session's TimeZone (no timestamp is ever turned into a date or a
local time). Durations are integer microseconds (`epoch_us` differences) summed exactly and
divided once, so sums and means do not depend on row order and reruns are bit-identical.
Outputs carry exactly the columns of the declarations in `schema`, rows sorted by grain.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import duckdb
import polars as pl

from aps_etl.lib.business_days import business_day_window

from .schema import (
    APS_KPI_BOTTLENECK,
    APS_KPI_EQUIPMENT_UTIL,
    APS_KPI_PLAN_VS_ACTUAL,
    OutputTable,
)

_TS = pl.Datetime("us", "UTC")
_DAY_MIN = 1440  # W(D) is always 1440 minutes (calendar.PLANT_UTC_OFFSET)
_DAY_US = _DAY_MIN * 60 * 1_000_000  # 86_400_000_000 microseconds


# The plan in force ------------------------------------------------------------------------


def plan_in_force(plan_run: pl.DataFrame | pl.LazyFrame, day: date) -> str | None:
    """run_id of the plan in force for D: the COMPLETED run with the greatest created_at
    strictly before the start of W(D) whose horizon covers D (base_date <= D < base_date +
    horizon_days); ties on created_at: the greatest run_id. None when there is none."""
    start, _ = business_day_window(day)
    since_base = (pl.lit(day, dtype=pl.Date) - pl.col("base_date")).dt.total_days()
    chosen = (
        plan_run.lazy()
        .filter(
            (pl.col("status") == "COMPLETED")
            # an instant comparison whatever the column's time zone or unit
            & (pl.col("created_at").dt.convert_time_zone("UTC") < pl.lit(start, dtype=_TS))
            & (since_base >= 0)
            & (since_base < pl.col("horizon_days"))
        )
        .sort(["created_at", "run_id"], descending=True)
        .select("run_id")
        .head(1)
        .collect()
    )
    return chosen.item() if chosen.height else None


# Shared SQL -------------------------------------------------------------------------------

# Parameters: $ws, $we = W(D)'s bounds (TIMESTAMPTZ), $day = D (DATE), $run = plan run (VARCHAR
# or NULL). DuckDB rejects unused named parameters, so each query is given only its own.

# Minutes of RUN clipped to W(D) per ACTIVE equipment, as exact integer microseconds. An open
# interval (end_ts null) runs to the end of W(D); an interval touching W(D) only at a bound
# contributes nothing. Equipment events of inactive or unknown equipment are ignored. Source
# intervals of one equipment never overlap; should they (bad data), the sum exceeds a day and
# validation rejects actual_util > 1.
_EQUIPMENT_RUN_CTES = """
active_equipment as (
    select equipment_id, eqp_group_id, process_id
    from equipment
    where active
),
run_clipped as (
    select equipment_id,
           sum(epoch_us(least(coalesce(end_ts, $we::timestamptz), $we::timestamptz))
               - epoch_us(greatest(start_ts, $ws::timestamptz)))::bigint as run_us
    from equipment_event
    where state = 'RUN'
      and start_ts < $we::timestamptz
      and (end_ts is null or end_ts > $ws::timestamptz)
    group by equipment_id
),
equipment_run as (
    select a.equipment_id, a.eqp_group_id, a.process_id, coalesce(r.run_us, 0) as run_us
    from active_equipment a
    left join run_clipped r on r.equipment_id = a.equipment_id
)
"""


def _window_params(day: date) -> dict[str, datetime]:
    ws, we = business_day_window(day)  # UTC-aware: DuckDB binds them as TIMESTAMPTZ
    return {"ws": ws, "we": we}


def _query(con: duckdb.DuckDBPyConnection, sql: str, params: dict[str, Any]) -> pl.DataFrame:
    return con.sql(sql, params=params).pl()


def _finish(df: pl.DataFrame, table: OutputTable, day: date) -> pl.DataFrame:
    """base_date first, declared columns in declared order and dtypes, rows sorted by grain
    (sorted in Polars: byte order, whatever DuckDB collation the session may set)."""
    df = df.with_columns(pl.lit(day, dtype=pl.Date).alias(table.partition_column))
    return df.select(pl.col(c.name).cast(c.dtype) for c in table.columns).sort(list(table.grain))


# aps_kpi_plan_vs_actual -------------------------------------------------------------------

# Choices where the contract is silent:
# - actual_qty sums process_result.out_qty: the good units a step produced (what the plan asks
#   a step to deliver); in_qty would count units later scrapped at that step as produced.
# - the plan views are also filtered by run_id = $run, so rows of another run never count even
#   if the views held them; with no plan in force ($run null) they are not read at all.
# - a key whose only passes are rework passes, with no plan row, has no row (not found on
#   either side); a plan row with planned_qty 0 and no pass gives a row of zeros, attainment
#   null.
_PLAN_VS_ACTUAL_SQL = """
with planned as (
    select product_id, step_id, sum(planned_qty::bigint) as planned_qty
    from plan_production
    where run_id = $run::varchar and plan_date = $day::date
    group by product_id, step_id
),
actual as (
    select product_id, step_id, sum(out_qty::bigint) as actual_qty
    from process_result
    where track_out_ts >= $ws::timestamptz and track_out_ts < $we::timestamptz
      and is_rework = false
    group by product_id, step_id
),
joined as (
    select coalesce(p.product_id, a.product_id) as product_id,
           coalesce(p.step_id, a.step_id) as step_id,
           $run::varchar as plan_run_id,
           -- a missing side counts 0 while a plan is in force; no plan: planned is null
           case when $run::varchar is not null then coalesce(p.planned_qty, 0) end::bigint
               as planned_qty,
           coalesce(a.actual_qty, 0)::bigint as actual_qty
    from planned p
    full outer join actual a on a.product_id = p.product_id and a.step_id = p.step_id
)
select product_id, step_id, plan_run_id, planned_qty, actual_qty,
       actual_qty - planned_qty as deviation_qty,  -- null when planned_qty is null
       case when planned_qty > 0 then actual_qty::double / planned_qty::double end
           as attainment
from joined
"""


def aps_kpi_plan_vs_actual(
    con: duckdb.DuckDBPyConnection, day: date, plan_run_id: str | None
) -> pl.DataFrame:
    """Planned (plan_production of `plan_run_id` for D) vs actual (non-rework passes tracked
    out in W(D), all lots) per (product_id, step_id) found on either side."""
    params = {**_window_params(day), "day": day, "run": plan_run_id}
    return _finish(_query(con, _PLAN_VS_ACTUAL_SQL, params), APS_KPI_PLAN_VS_ACTUAL, day)


# aps_kpi_equipment_util -------------------------------------------------------------------

# Choices where the contract is silent:
# - no plan in force: "every planned value is null" covers planned_util (the plan's load), so
#   planned_util is null, not 0, and util_gap = actual_util - null is null too; actual_util is
#   still reported for every active equipment.
# - plan_equipment rows of inactive equipment (or of equipment unknown to `equipment`) are
#   ignored: the population is the active equipment.
# - a duplicate plan_equipment key (impossible by the source's primary key) is not summed: it
#   shows as a duplicate grain key that validation rejects.
# - actual_util = run microseconds / 86_400_000_000 in one division (= minutes / 1440 without
#   the intermediate rounding of minutes).
_EQUIPMENT_UTIL_SQL = f"""
with {_EQUIPMENT_RUN_CTES},
planned as (
    select equipment_id, planned_load_min::double as planned_load_min
    from plan_equipment
    where run_id = $run::varchar and plan_date = $day::date
),
util as (
    select e.equipment_id, $run::varchar as plan_run_id, e.eqp_group_id,
           case when $run::varchar is not null
                then coalesce(p.planned_load_min, 0) / {_DAY_MIN}::double end as planned_util,
           e.run_us::double / {_DAY_US}::double as actual_util
    from equipment_run e
    left join planned p on p.equipment_id = e.equipment_id
)
select *, actual_util - planned_util as util_gap
from util
"""


def aps_kpi_equipment_util(
    con: duckdb.DuckDBPyConnection, day: date, plan_run_id: str | None
) -> pl.DataFrame:
    """Planned vs actual utilisation of D for every active equipment."""
    params = {**_window_params(day), "day": day, "run": plan_run_id}
    return _finish(_query(con, _EQUIPMENT_UTIL_SQL, params), APS_KPI_EQUIPMENT_UTIL, day)


# aps_kpi_bottleneck -----------------------------------------------------------------------

# Choices where the contract is silent:
# - process_id is that of the group's active members; should they disagree (members share one
#   process_id by contract) the group shows twice and validation rejects the duplicate key.
# - avg_actual_util = the group's total run microseconds / (active members x a day's
#   microseconds): the exact mean of the members' actual_util, rounded once, independent of
#   row order, so equal means tie exactly and fall to waiting_wip_qty, then eqp_group_id.
# - a waiting lot's step is found through its product's route and its step_seq (contract
#   "Common rules"); a lot whose (route, step_seq) is not in route_step, or whose step's group
#   has no active member, is in no group's waiting_wip_qty.
# - util_rank is computed in Polars (byte order of eqp_group_id, as the sort), not with a
#   DuckDB window, so a session collation cannot change it.
_BOTTLENECK_SQL = f"""
with {_EQUIPMENT_RUN_CTES},
groups as (
    select eqp_group_id, process_id, count(*)::bigint as equipment_count,
           sum(run_us)::double / (count(*) * {_DAY_US}::double) as avg_actual_util
    from equipment_run
    group by eqp_group_id, process_id
),
last_state as (
    select lot_id, product_id, step_seq, lot_status, qty
    from lot_history
    where event_ts < $we::timestamptz
    qualify row_number() over (partition by lot_id order by event_ts desc, event_id desc) = 1
),
waiting as (
    select rs.eqp_group_id, sum(l.qty::bigint) as waiting_wip_qty
    from last_state l
    join product p on p.product_id = l.product_id
    join route_step rs on rs.route_id = p.route_id and rs.step_seq = l.step_seq
    where l.lot_status = 'WAIT'
    group by rs.eqp_group_id
)
select g.eqp_group_id, g.process_id, g.equipment_count, g.avg_actual_util,
       coalesce(w.waiting_wip_qty, 0)::bigint as waiting_wip_qty
from groups g
left join waiting w on w.eqp_group_id = g.eqp_group_id
"""


def aps_kpi_bottleneck(con: duckdb.DuckDBPyConnection, day: date) -> pl.DataFrame:
    """Equipment groups with an active member, ranked by mean actual utilisation of D, then
    waiting WIP at the end of D, then eqp_group_id; rank 1 is the bottleneck."""
    df = _query(con, _BOTTLENECK_SQL, _window_params(day))
    ranked = df.sort(
        ["avg_actual_util", "waiting_wip_qty", "eqp_group_id"],
        descending=[True, True, False],
    ).with_columns(util_rank=pl.int_range(1, pl.len() + 1, dtype=pl.Int64))
    ranked = ranked.with_columns(is_bottleneck=pl.col("util_rank") == 1)
    return _finish(ranked, APS_KPI_BOTTLENECK, day)
