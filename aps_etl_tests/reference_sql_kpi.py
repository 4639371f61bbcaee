"""An independent implementation of the scenario-2..4 contract (aps_outputs.md) in PostgreSQL
SQL, run directly on the source database (tables of mes_source.sql), like reference_sql.py for
scenario 1. It shares no code with the pipeline, so agreement on generated data is evidence
that both read the contract the same way.

Queries and parameters (each returns exactly the contract's columns in the contract's order,
the partition column first, rows ordered by the grain):

    PLAN_DIFF             $1 = run_id (text)              aps_plan_diff of that run
    PLAN_IN_FORCE         $1 = D (date)                   one column run_id, or no row
    KPI_PLAN_VS_ACTUAL    $1 = D (date)                   aps_kpi_plan_vs_actual
    KPI_EQUIPMENT_UTIL    $1 = D (date)                   aps_kpi_equipment_util
    KPI_BOTTLENECK        $1 = D (date)                   aps_kpi_bottleneck
    BALANCE_MONITOR       $1 = D (date), $2 = threshold   aps_balance_monitor
    BALANCE_CORRECTION    $1 = D (date), $2 = threshold   aps_input_balance_correction
                                                          ($2 unused, accepted for symmetry)

`REFERENCE_KPI` maps the daily tables to their SQL; `parameters(table, day)` gives the
parameter tuple each needs (threshold only for the balance tables).

Where the contract is silent, this file reads it as follows (to reconcile with the pipeline):

 1. PLAN_DIFF of a run that is not COMPLETED (or unknown) yields no rows: such runs never
    become partitions. Keys with equal planned_qty in both runs yield no row (only ADDED,
    REMOVED, CHANGED are changes). "Present in a run" means present in its plan_production.
 2. Text tie-breaks that decide a value ("greatest run_id", "eqp_group_id asc" in util_rank)
    compare bytes (collate "C"), as Polars does, whatever the database's collation. The final
    ORDER BY uses the database's default collation, like reference_sql.py and the harness.
 3. The plan in force is chosen with created_at strictly before the start of W(D) and
    base_date <= D < base_date + horizon_days (date arithmetic on the run's base_date).
 4. actual_qty (plan vs actual) is the sum of process_result.out_qty (the good output of the
    step), not in_qty. Abnormal (Hold/Scrap) lots count: "all lots". A key whose only passes
    in W(D) are rework passes, and that has no plan row, has no row.
 5. With no plan in force, plan_run_id, planned_qty, planned_util are null, and so are the
    derived deviation_qty, attainment and util_gap (null arithmetic); actual values are
    still given. With a plan in force, a plan_production row with planned_qty 0 is "found"
    and gives a row (attainment null) even without actual output.
 6. planned_util uses plan_equipment rows with plan_date = D of the plan in force; rows for
    inactive equipment are ignored (population: active equipment).
 7. "Active" is equipment.active as it is in the source now (no history of the flag).
 8. waiting_wip_qty counts every lot in WAIT at the end of D, abnormal or not (the contract
    filters by state only, like aps_input_wip); a lot's step is mapped to its group through
    its product's route and its step_seq; a lot whose (route, step_seq) is not in route_step
    is in no group's waiting_wip_qty.
 9. process_id of a bottleneck row is taken from the group's active members (one by master
    data; a group with two would show as a repeated grain key). equipment_count,
    avg_actual_util count active members only.
10. util_rank is row_number() over (avg_actual_util desc, waiting_wip_qty desc, eqp_group_id
    asc): ranks 1..n with no gaps and no shared ranks; util_rank is bigint.
11. Durations are exact: clipped intervals are summed as intervals and counted in integer
    microseconds; a ratio is then one double precision division (actual_util = RUN us /
    86_400_000_000, = minutes / 1440; available_h = (a day's us - DOWN/PM us) / 3_600_000_000;
    avg_actual_util = the group's RUN us / (active members x a day's us), the exact mean
    rounded once, so equal utilisations tie exactly and fall through to waiting_wip_qty).
12. capacity_qty is double precision (capacity_per_hour x available_h is fractional and the
    contract stores no rounding): capacity_per_hour::float8 * available_h.
13. out_qty of the balance tables is 0 for an equipment without passes in W(D), and passes of
    every lot count (abnormal lots included; rework included as the contract says).
14. Group totals (capacity, out_qty) and the group mean are over the group's population
    members only (its active equipment). group_mean_ratio is null when every load_ratio of
    the group is null; deviation is null when load_ratio is null; flagged compares the
    double precision deviation with the double precision threshold (abs(deviation) >
    threshold, strictly), false when null.
15. An interval counts by its overlap with W(D): start_ts < end of W(D) and
    coalesce(end_ts, end of W(D)) > start of W(D); an open interval that starts after W(D)
    does not count.
"""

from __future__ import annotations

import datetime as dt

DEFAULT_THRESHOLD = 0.20

# W(D) = [D 00:00, D+1 00:00) Asia/Seoul; $1 is D.
_BOUNDS = """
bounds as (
  select ($1::date)::timestamp at time zone 'Asia/Seoul' as s,
         ($1::date + 1)::timestamp at time zone 'Asia/Seoul' as e
)"""

_PLAN_IN_FORCE = """
plan_in_force as (
  select r.run_id
  from plan_run r, bounds b
  where r.status = 'COMPLETED' and r.created_at < b.s
    and r.base_date <= $1::date and $1::date < r.base_date + r.horizon_days
  order by r.created_at desc, r.run_id collate "C" desc
  limit 1
)"""


def _clipped(states: str) -> str:
    """Per equipment: exact microseconds (bigint) of its `states` intervals clipped to W(D).
    The clipped intervals are summed as intervals (exact), then counted in microseconds."""
    return f"""
  select ev.equipment_id,
         (extract(epoch from sum(least(coalesce(ev.end_ts, b.e), b.e)
                                 - greatest(ev.start_ts, b.s))) * 1000000)::bigint as us
  from equipment_event ev, bounds b
  where ev.state in ({states}) and ev.start_ts < b.e and coalesce(ev.end_ts, b.e) > b.s
  group by ev.equipment_id"""


_DAY_US = "86400000000.0"  # W(D) is always 1440 minutes
_HOUR_US = "3600000000.0"

# Active equipment with the exact microseconds of RUN in W(D).
_RUN_US = f"""
run_us as ({_clipped("'RUN'")}
),
active_util as (
  select e.equipment_id, e.eqp_group_id, e.process_id, coalesce(r.us, 0)::bigint as run_us
  from equipment e left join run_us r on r.equipment_id = e.equipment_id
  where e.active
)"""

PLAN_IN_FORCE = f"""
with {_BOUNDS},
{_PLAN_IN_FORCE}
select run_id from plan_in_force
"""

PLAN_DIFF = """
with this_run as (
  select run_id, created_at from plan_run where run_id = $1::text and status = 'COMPLETED'
),
prev_run as (
  select r.run_id
  from plan_run r, this_run t
  where r.status = 'COMPLETED' and r.created_at < t.created_at
  order by r.created_at desc, r.run_id collate "C" desc
  limit 1
),
new_rows as (
  select pp.plan_date, pp.product_id, pp.step_id, pp.planned_qty
  from plan_production pp join this_run t on t.run_id = pp.run_id
),
old_rows as (
  select pp.plan_date, pp.product_id, pp.step_id, pp.planned_qty
  from plan_production pp join prev_run p on p.run_id = pp.run_id
),
common_dates as (
  select plan_date from new_rows intersect select plan_date from old_rows
),
n as (select * from new_rows where plan_date in (select plan_date from common_dates)),
o as (select * from old_rows where plan_date in (select plan_date from common_dates)),
diff as (
  select coalesce(n.plan_date, o.plan_date) as plan_date,
         coalesce(n.product_id, o.product_id) as product_id,
         coalesce(n.step_id, o.step_id) as step_id,
         case when o.product_id is null then 'ADDED'
              when n.product_id is null then 'REMOVED'
              else 'CHANGED' end as change_type,
         o.planned_qty::bigint as prev_qty,
         n.planned_qty::bigint as new_qty
  from n full join o
    on o.plan_date = n.plan_date and o.product_id = n.product_id and o.step_id = n.step_id
  where n.planned_qty is distinct from o.planned_qty
)
select t.run_id, d.plan_date, d.product_id, d.step_id, p.run_id as prev_run_id,
       d.change_type, d.prev_qty, d.new_qty
from diff d cross join this_run t cross join prev_run p
order by 2, 3, 4
"""

KPI_PLAN_VS_ACTUAL = f"""
with {_BOUNDS},
{_PLAN_IN_FORCE},
planned as (
  select pp.product_id, pp.step_id, sum(pp.planned_qty)::bigint as planned_qty
  from plan_production pp join plan_in_force f on f.run_id = pp.run_id
  where pp.plan_date = $1::date
  group by pp.product_id, pp.step_id
),
actual as (
  select r.product_id, r.step_id, sum(r.out_qty)::bigint as actual_qty
  from process_result r, bounds b
  where r.track_out_ts >= b.s and r.track_out_ts < b.e and not r.is_rework
  group by r.product_id, r.step_id
),
joined as (
  select coalesce(p.product_id, a.product_id) as product_id,
         coalesce(p.step_id, a.step_id) as step_id,
         (select run_id from plan_in_force) as plan_run_id,
         case when exists (select 1 from plan_in_force)
              then coalesce(p.planned_qty, 0) end::bigint as planned_qty,
         coalesce(a.actual_qty, 0)::bigint as actual_qty
  from planned p full join actual a on a.product_id = p.product_id and a.step_id = p.step_id
)
select $1::date as base_date, product_id, step_id, plan_run_id, planned_qty, actual_qty,
       (actual_qty - planned_qty)::bigint as deviation_qty,
       case when planned_qty > 0 then actual_qty::float8 / planned_qty::float8 end
         as attainment
from joined
order by 2, 3
"""

KPI_EQUIPMENT_UTIL = f"""
with {_BOUNDS},
{_PLAN_IN_FORCE},
{_RUN_US},
planned as (
  select pe.equipment_id, pe.planned_load_min::float8 as planned_load_min
  from plan_equipment pe join plan_in_force f on f.run_id = pe.run_id
  where pe.plan_date = $1::date
),
util as (
  select u.equipment_id, u.eqp_group_id,
         (select run_id from plan_in_force) as plan_run_id,
         case when exists (select 1 from plan_in_force)
              then coalesce(p.planned_load_min, 0) / 1440.0 end as planned_util,
         u.run_us::float8 / {_DAY_US} as actual_util
  from active_util u left join planned p on p.equipment_id = u.equipment_id
)
select $1::date as base_date, equipment_id, plan_run_id, eqp_group_id,
       planned_util, actual_util, actual_util - planned_util as util_gap
from util
order by 2
"""

KPI_BOTTLENECK = f"""
with {_BOUNDS},
{_RUN_US},
last_state as (
  select distinct on (h.lot_id) h.*
  from lot_history h, bounds b
  where h.event_ts < b.e
  order by h.lot_id, h.event_ts desc, h.event_id desc
),
waiting as (
  select rs.eqp_group_id, sum(l.qty)::bigint as qty
  from last_state l
  join product p on p.product_id = l.product_id
  join route_step rs on rs.route_id = p.route_id and rs.step_seq = l.step_seq
  where l.lot_status = 'WAIT'
  group by rs.eqp_group_id
),
grp as (
  select eqp_group_id, process_id, count(*)::bigint as equipment_count,
         sum(run_us)::float8 / (count(*) * {_DAY_US}) as avg_actual_util
  from active_util
  group by eqp_group_id, process_id
),
ranked as (
  select g.eqp_group_id, g.process_id, g.equipment_count, g.avg_actual_util,
         coalesce(w.qty, 0)::bigint as waiting_wip_qty,
         row_number() over (
           order by g.avg_actual_util desc, coalesce(w.qty, 0) desc,
                    g.eqp_group_id collate "C"
         )::bigint as util_rank
  from grp g left join waiting w on w.eqp_group_id = g.eqp_group_id
)
select $1::date as base_date, eqp_group_id, process_id, equipment_count, avg_actual_util,
       waiting_wip_qty, util_rank, util_rank = 1 as is_bottleneck
from ranked
order by 2
"""

# Population of scenario 4: active equipment of groups with at least two active members, with
# out_qty, available_h, capacity_qty, load_ratio and the group's totals and mean ratio.
_BALANCE = f"""
with {_BOUNDS},
params as (select $2::float8 as threshold),
active as (
  select equipment_id, eqp_group_id, capacity_per_hour::float8 as capacity_per_hour
  from equipment where active
),
pop as (
  select a.* from active a
  where a.eqp_group_id in (select eqp_group_id from active group by 1 having count(*) >= 2)
),
outs as (
  select r.equipment_id, sum(r.out_qty)::bigint as out_qty
  from process_result r, bounds b
  where r.track_out_ts >= b.s and r.track_out_ts < b.e
  group by r.equipment_id
),
unavailable as ({_clipped("'DOWN', 'PM'")}
),
per_eq as (
  select p.equipment_id, p.eqp_group_id, p.capacity_per_hour,
         coalesce(o.out_qty, 0)::bigint as out_qty,
         (86400000000 - coalesce(d.us, 0))::float8 / {_HOUR_US} as available_h
  from pop p
  left join outs o on o.equipment_id = p.equipment_id
  left join unavailable d on d.equipment_id = p.equipment_id
),
with_capacity as (
  select e.*, e.capacity_per_hour * e.available_h as capacity_qty from per_eq e
),
with_ratio as (
  select e.*,
         case when e.capacity_qty <> 0 then e.out_qty::float8 / e.capacity_qty end
           as load_ratio,
         sum(e.capacity_qty) over (partition by e.eqp_group_id) as group_capacity,
         sum(e.out_qty) over (partition by e.eqp_group_id) as group_out
  from with_capacity e
),
balance as (
  select r.*, avg(r.load_ratio) over (partition by r.eqp_group_id) as group_mean_ratio
  from with_ratio r
)"""

BALANCE_MONITOR = f"""
{_BALANCE},
monitor as (
  select b.equipment_id, b.eqp_group_id, b.out_qty, b.available_h, b.capacity_qty,
         b.load_ratio, b.group_mean_ratio, b.load_ratio - b.group_mean_ratio as deviation,
         p.threshold
  from balance b cross join params p
)
select $1::date as base_date, equipment_id, eqp_group_id, out_qty, available_h, capacity_qty,
       load_ratio, group_mean_ratio, deviation, threshold,
       coalesce(abs(deviation) > threshold, false) as flagged
from monitor
order by 2
"""

BALANCE_CORRECTION = f"""
{_BALANCE},
shares as (
  select b.equipment_id, b.eqp_group_id,
         case when b.group_capacity <> 0 then b.capacity_qty / b.group_capacity end
           as capacity_share,
         case when b.group_out <> 0 then b.out_qty::float8 / b.group_out::float8 end
           as actual_share
  from balance b
)
select $1::date as base_date, equipment_id, eqp_group_id, capacity_share, actual_share,
       capacity_share - actual_share as share_correction
from shares
order by 2
"""

REFERENCE_KPI = {
    "aps_kpi_plan_vs_actual": KPI_PLAN_VS_ACTUAL,
    "aps_kpi_equipment_util": KPI_EQUIPMENT_UTIL,
    "aps_kpi_bottleneck": KPI_BOTTLENECK,
    "aps_balance_monitor": BALANCE_MONITOR,
    "aps_input_balance_correction": BALANCE_CORRECTION,
}

# Daily tables whose query takes the threshold as $2.
WITH_THRESHOLD = frozenset({"aps_balance_monitor", "aps_input_balance_correction"})


def parameters(table: str, day: dt.date, threshold: float = DEFAULT_THRESHOLD) -> tuple:
    """The parameter tuple of REFERENCE_KPI[table] for business day `day`."""
    if table not in REFERENCE_KPI:
        raise KeyError(f"no reference query for {table!r}; known: {sorted(REFERENCE_KPI)}")
    return (day, float(threshold)) if table in WITH_THRESHOLD else (day,)
