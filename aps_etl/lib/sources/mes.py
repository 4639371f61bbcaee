"""The MES source's extract specs (contract: ../shared/contracts/mes_source.sql)."""

from __future__ import annotations

import polars as pl

from aps_etl.lib.sources.specs import TS, ExtractSpec

I64, I32, F64, STR, BOOL, DATE = pl.Int64, pl.Int32, pl.Float64, pl.String, pl.Boolean, pl.Date

PRODUCT = ExtractSpec(
    name="product",
    table="product",
    mode="full",
    columns={"product_id": STR, "product_name": STR, "route_id": STR, "lot_size": I32},
    primary_key=("product_id",),
    rules={"lot_size > 0": pl.col("lot_size") > 0},
    description="Products and their routes (master data, a full snapshot per day).",
)

ROUTE_STEP = ExtractSpec(
    name="route_step",
    table="route_step",
    mode="full",
    columns={
        "route_id": STR,
        "step_seq": I32,
        "step_id": STR,
        "process_id": STR,
        "eqp_group_id": STR,
        "std_cycle_min": F64,
    },
    primary_key=("route_id", "step_seq"),
    rules={
        "step_seq > 0": pl.col("step_seq") > 0,
        "std_cycle_min > 0": pl.col("std_cycle_min") > 0,
    },
    description="Ordered process steps of each route (master data, a full snapshot per day).",
)

EQUIPMENT = ExtractSpec(
    name="equipment",
    table="equipment",
    mode="full",
    columns={
        "equipment_id": STR,
        "eqp_group_id": STR,
        "process_id": STR,
        "capacity_per_hour": F64,
        "active": BOOL,
    },
    primary_key=("equipment_id",),
    rules={"capacity_per_hour >= 0": pl.col("capacity_per_hour") >= 0},
    description="Equipment and its parallel groups (master data, a full snapshot per day).",
)

_LOT_HISTORY_COLUMNS: dict[str, pl.DataType | type[pl.DataType]] = {
    "event_id": I64,
    "lot_id": STR,
    "product_id": STR,
    "event_type": STR,
    "event_ts": TS,
    "step_seq": I32,
    "step_id": STR,
    "equipment_id": STR,
    "lot_status": STR,
    "qty": I32,
    "hold_reason": STR,
    "updated_at": TS,
}

# WIP needs each lot's state at the end of D, lead time its CREATE event, which may be
# days old: so D's extract holds the whole history (up to the end of D) of every lot that
# was still alive at the start of D. Lots that ended earlier cannot be WIP, cannot
# complete in D and cannot have results in D.
LOT_HISTORY = ExtractSpec(
    name="lot_history",
    mode="query",
    query="""
        select h.* from lot_history h
        where h.event_ts < {end}
          and not exists (
            select 1 from lot_history t
            where t.lot_id = h.lot_id
              and t.event_type in ('COMPLETE', 'SCRAP')
              and t.event_ts < {start})
    """,
    columns=_LOT_HISTORY_COLUMNS,
    nullable=frozenset({"equipment_id", "hold_reason"}),
    primary_key=("event_id",),
    rules={
        "event_type known": pl.col("event_type").is_in(
            ["CREATE", "TRACK_IN", "TRACK_OUT", "COMPLETE", "HOLD", "RELEASE", "REWORK", "SCRAP"]
        ),
        "lot_status known": pl.col("lot_status").is_in(
            ["WAIT", "RUN", "HOLD", "SCRAPPED", "COMPLETED"]
        ),
        "qty >= 0": pl.col("qty") >= 0,
    },
    guard="fail",
    description="History up to the end of D of every lot alive at the start of D.",
)

PROCESS_RESULT = ExtractSpec(
    name="process_result",
    table="process_result",
    mode="incremental",
    partition_column="track_out_ts",
    columns={
        "result_id": I64,
        "lot_id": STR,
        "product_id": STR,
        "step_seq": I32,
        "step_id": STR,
        "process_id": STR,
        "equipment_id": STR,
        "track_in_ts": TS,
        "track_out_ts": TS,
        "in_qty": I32,
        "out_qty": I32,
        "scrap_qty": I32,
        "is_rework": BOOL,
        "updated_at": TS,
    },
    primary_key=("result_id",),
    rules={
        "track_out_ts >= track_in_ts": pl.col("track_out_ts") >= pl.col("track_in_ts"),
        "in_qty >= 0": pl.col("in_qty") >= 0,
        "out_qty >= 0": pl.col("out_qty") >= 0,
        "scrap_qty >= 0": pl.col("scrap_qty") >= 0,
    },
    guard="fail",
    description="Finished passes whose track-out falls in D.",
)

EQUIPMENT_EVENT = ExtractSpec(
    name="equipment_event",
    mode="query",
    query="""
        select e.* from equipment_event e
        where e.start_ts < {end} and (e.end_ts is null or e.end_ts > {start})
    """,
    columns={
        "event_id": I64,
        "equipment_id": STR,
        "state": STR,
        "start_ts": TS,
        "end_ts": TS,
        "reason_code": STR,
        "updated_at": TS,
    },
    nullable=frozenset({"end_ts", "reason_code"}),
    primary_key=("event_id",),
    rules={
        "state known": pl.col("state").is_in(["RUN", "IDLE", "DOWN", "PM"]),
        "end_ts > start_ts": pl.col("end_ts").is_null() | (pl.col("end_ts") > pl.col("start_ts")),
    },
    guard="fail",
    description="Equipment state intervals that overlap D (open ones included).",
)

_PLAN_RUN_COLUMNS: dict[str, pl.DataType | type[pl.DataType]] = {
    "run_id": STR,
    "base_date": DATE,
    "horizon_days": I32,
    "created_at": TS,
    "status": STR,
}
_PLAN_RUN_RULES = {
    "horizon_days > 0": pl.col("horizon_days") > 0,
    "status known": pl.col("status").is_in(["RUNNING", "COMPLETED", "FAILED"]),
}

PLAN_RUN = ExtractSpec(
    name="plan_run",
    table="plan_run",
    mode="full",
    columns=_PLAN_RUN_COLUMNS,
    primary_key=("run_id",),
    rules=_PLAN_RUN_RULES,
    description="Every APS engine run so far (which plan is in force, which run came before).",
)

# The plan runs a business day can see: those created before its end. The plan in force for
# D is chosen among runs created before D starts, so later runs cannot change D's numbers;
# scoping the day's snapshot to them keeps every new plan run from making all past days'
# snapshots stale. A run created before D ends whose status changes later (RUNNING ->
# COMPLETED) does change D's snapshot, as it should.
PLAN_RUN_OF_DAY = ExtractSpec(
    name="plan_run",
    mode="query",
    query="select r.* from plan_run r where r.created_at < {end}",
    columns=_PLAN_RUN_COLUMNS,
    primary_key=("run_id",),
    rules=_PLAN_RUN_RULES,
    description="The APS engine runs created before the end of D (which plan is in force).",
)

# A plan run's results, taken whole as the run's immutable snapshot.
PLAN_PRODUCTION = ExtractSpec(
    name="plan_production",
    table="plan_production",
    mode="key",
    partition_column="run_id",
    columns={
        "run_id": STR,
        "plan_date": DATE,
        "product_id": STR,
        "step_id": STR,
        "process_id": STR,
        "planned_qty": I32,
    },
    primary_key=("run_id", "plan_date", "product_id", "step_id"),
    rules={"planned_qty >= 0": pl.col("planned_qty") >= 0},
    description="All plan_production rows of one APS run (immutable snapshot).",
)

PLAN_EQUIPMENT = ExtractSpec(
    name="plan_equipment",
    table="plan_equipment",
    mode="key",
    partition_column="run_id",
    columns={
        "run_id": STR,
        "plan_date": DATE,
        "equipment_id": STR,
        "planned_qty": I32,
        "planned_load_min": F64,
    },
    primary_key=("run_id", "plan_date", "equipment_id"),
    rules={
        "planned_qty >= 0": pl.col("planned_qty") >= 0,
        "planned_load_min in [0, 1440]": pl.col("planned_load_min").is_between(0, 1440),
    },
    description="All plan_equipment rows of one APS run (immutable snapshot).",
)

# The MES tables of a business day: every daily scenario (§10.1, §10.3, §10.4) reads them.
DAILY_SOURCES = (
    PRODUCT,
    ROUTE_STEP,
    EQUIPMENT,
    LOT_HISTORY,
    PROCESS_RESULT,
    EQUIPMENT_EVENT,
    PLAN_RUN_OF_DAY,
)
# The tables of one APS plan run (§10.2).
PLAN_SOURCES = (PLAN_RUN, PLAN_PRODUCTION, PLAN_EQUIPMENT)

# The lake namespaces the sources are extracted into: the daily tables under scenario 1's
# (scenarios 3 and 4 read them there), the plan tables under scenario 2's.
DAILY_NAMESPACE = "aps_input"
PLAN_NAMESPACE = "aps_plan"
