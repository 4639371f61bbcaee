"""An independent implementation of the scenario-1 contract (aps_outputs.md) in PostgreSQL
SQL, run directly on the source database. The pipeline (Polars) and this (SQL) share no
code, so agreement on generated data is evidence that both read the contract the same way.
"""

from __future__ import annotations

# $1 is the business day D (date). W(D) = [D 00:00, D+1 00:00) Asia/Seoul.
_COMMON = """
with bounds as (
  select ($1::date)::timestamp at time zone 'Asia/Seoul' as s,
         ($1::date + 1)::timestamp at time zone 'Asia/Seoul' as e
),
last_state as (
  select distinct on (h.lot_id) h.*
  from lot_history h, bounds b
  where h.event_ts < b.e
  order by h.lot_id, h.event_ts desc, h.event_id desc
),
abnormal as (
  select h.lot_id from lot_history h, bounds b
  where h.event_type in ('HOLD', 'SCRAP') and h.event_ts >= b.s and h.event_ts < b.e
  union
  select lot_id from last_state where lot_status in ('HOLD', 'SCRAPPED')
)
"""

WIP = (
    _COMMON
    + """
select $1::date as base_date, l.product_id, l.step_id, rs.process_id,
       count(*)::bigint as wip_lots,
       sum(l.qty)::bigint as wip_qty,
       count(*) filter (where l.lot_status = 'RUN')::bigint as run_lots,
       coalesce(sum(l.qty) filter (where l.lot_status = 'RUN'), 0)::bigint as run_qty
from last_state l
join product p on p.product_id = l.product_id
join route_step rs on rs.route_id = p.route_id and rs.step_seq = l.step_seq
where l.lot_status in ('WAIT', 'RUN')
group by l.product_id, l.step_id, rs.process_id
order by 2, 3
"""
)

CYCLE_TIME = (
    _COMMON
    + """
, passes as (
  select r.*, extract(epoch from r.track_out_ts - r.track_in_ts)::float8 / 60 as ct_min,
         rs.std_cycle_min::float8 as std_cycle_min
  from process_result r
  join product p on p.product_id = r.product_id
  join route_step rs on rs.route_id = p.route_id and rs.step_seq = r.step_seq,
  bounds b
  where r.track_out_ts >= b.s and r.track_out_ts < b.e and not r.is_rework
    and r.lot_id not in (select lot_id from abnormal)
)
select $1::date as base_date, product_id, step_id, process_id,
       count(*)::bigint as passes,
       sum(in_qty)::bigint as in_qty, sum(out_qty)::bigint as out_qty,
       sum(scrap_qty)::bigint as scrap_qty,
       avg(ct_min) as ct_avg_min,
       percentile_cont(0.5) within group (order by ct_min) as ct_p50_min,
       percentile_cont(0.9) within group (order by ct_min) as ct_p90_min,
       std_cycle_min,
       avg(ct_min) / std_cycle_min as ct_ratio
from passes
group by product_id, step_id, process_id, std_cycle_min
order by 2, 3
"""
)

LEAD_TIME = (
    _COMMON
    + """
, completed as (
  select h.lot_id, h.product_id, h.qty, h.event_ts
  from lot_history h, bounds b
  where h.event_type = 'COMPLETE' and h.event_ts >= b.s and h.event_ts < b.e
    and h.lot_id not in (select lot_id from abnormal)
),
created as (
  select lot_id, min(event_ts) as created_ts from lot_history
  where event_type = 'CREATE' group by lot_id
),
lead as (
  select c.product_id, c.qty, extract(epoch from c.event_ts - k.created_ts)::float8 / 3600 as h
  from completed c join created k on k.lot_id = c.lot_id
)
select $1::date as base_date, product_id,
       count(*)::bigint as completed_lots, sum(qty)::bigint as completed_qty,
       avg(h) as lt_avg_h,
       percentile_cont(0.5) within group (order by h) as lt_p50_h,
       percentile_cont(0.9) within group (order by h) as lt_p90_h
from lead
group by product_id
order by 2
"""
)

REFERENCE = {
    "aps_input_wip": WIP,
    "aps_input_cycle_time": CYCLE_TIME,
    "aps_input_lead_time": LEAD_TIME,
}

# The master dimensions: the source's master tables as they are now (every column but
# valid_from, which is the day a run first saw the row; merged tables are compared whole).
MASTER = {
    "aps_dim_product": "select product_id, product_name, route_id, lot_size from product",
    "aps_dim_route_step": (
        "select route_id, step_seq, step_id, process_id, eqp_group_id, "
        "std_cycle_min::float8 as std_cycle_min from route_step"
    ),
    "aps_dim_equipment": (
        "select equipment_id, eqp_group_id, process_id, "
        "capacity_per_hour::float8 as capacity_per_hour, active from equipment"
    ),
}
