"""Scenario 3 (plan vs actual) business logic on small hand-computed fixtures.

Business day D = 2026-03-10, W(D) = [2026-03-10 00:00+09:00, 2026-03-11 00:00+09:00)
                                   = [2026-03-09 15:00Z,     2026-03-10 15:00Z).
Expected numbers are written out by hand; the comments show the arithmetic. The KPI functions
read DuckDB views named as the source tables; here the views sit on in-memory Polars frames.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import duckdb
import polars as pl
import pytest

from aps_etl.defs.scenarios.aps_kpi import (
    APS_KPI_BOTTLENECK,
    APS_KPI_EQUIPMENT_UTIL,
    APS_KPI_PLAN_VS_ACTUAL,
    TABLES,
    ValidationError,
    aps_kpi_bottleneck,
    aps_kpi_equipment_util,
    aps_kpi_plan_vs_actual,
    plan_in_force,
    validate,
)
from aps_etl.lib.warehouse.target import create_table_sql

D = date(2026, 3, 10)
KST = timezone(timedelta(hours=9))
TS = pl.Datetime("us", "UTC")


def kst(day: int, h: int = 0, m: int = 0, s: int = 0, us: int = 0) -> datetime:
    """A March 2026 plant-local time."""
    return datetime(2026, 3, day, h, m, s, us, tzinfo=KST)


# Output schemas written out by hand (not read from the declarations under test).
PVA_SCHEMA = {
    "base_date": pl.Date,
    "product_id": pl.String,
    "step_id": pl.String,
    "plan_run_id": pl.String,
    "planned_qty": pl.Int64,
    "actual_qty": pl.Int64,
    "deviation_qty": pl.Int64,
    "attainment": pl.Float64,
}
UTIL_SCHEMA = {
    "base_date": pl.Date,
    "equipment_id": pl.String,
    "plan_run_id": pl.String,
    "eqp_group_id": pl.String,
    "planned_util": pl.Float64,
    "actual_util": pl.Float64,
    "util_gap": pl.Float64,
}
BOTTLENECK_SCHEMA = {
    "base_date": pl.Date,
    "eqp_group_id": pl.String,
    "process_id": pl.String,
    "equipment_count": pl.Int64,
    "avg_actual_util": pl.Float64,
    "waiting_wip_qty": pl.Int64,
    "util_rank": pl.Int64,
    "is_bottleneck": pl.Boolean,
}

# Source tables: the names and types the caller's views carry --------------------------------

SOURCE_SCHEMAS: dict[str, dict[str, pl.DataType]] = {
    "plan_run": {
        "run_id": pl.String(), "base_date": pl.Date(), "horizon_days": pl.Int32(),
        "created_at": TS, "status": pl.String(),
    },
    "plan_production": {
        "run_id": pl.String(), "plan_date": pl.Date(), "product_id": pl.String(),
        "step_id": pl.String(), "process_id": pl.String(), "planned_qty": pl.Int32(),
    },
    "plan_equipment": {
        "run_id": pl.String(), "plan_date": pl.Date(), "equipment_id": pl.String(),
        "planned_qty": pl.Int32(), "planned_load_min": pl.Float64(),
    },
    "process_result": {
        "result_id": pl.Int64(), "lot_id": pl.String(), "product_id": pl.String(),
        "step_seq": pl.Int32(), "step_id": pl.String(), "process_id": pl.String(),
        "equipment_id": pl.String(), "track_in_ts": TS, "track_out_ts": TS,
        "in_qty": pl.Int32(), "out_qty": pl.Int32(), "scrap_qty": pl.Int32(),
        "is_rework": pl.Boolean(), "updated_at": TS,
    },
    "equipment_event": {
        "event_id": pl.Int64(), "equipment_id": pl.String(), "state": pl.String(),
        "start_ts": TS, "end_ts": TS, "reason_code": pl.String(), "updated_at": TS,
    },
    "equipment": {
        "equipment_id": pl.String(), "eqp_group_id": pl.String(), "process_id": pl.String(),
        "capacity_per_hour": pl.Float64(), "active": pl.Boolean(),
    },
    "lot_history": {
        "event_id": pl.Int64(), "lot_id": pl.String(), "product_id": pl.String(),
        "event_type": pl.String(), "event_ts": TS, "step_seq": pl.Int32(),
        "step_id": pl.String(), "equipment_id": pl.String(), "lot_status": pl.String(),
        "qty": pl.Int32(), "hold_reason": pl.String(), "updated_at": TS,
    },
    "product": {
        "product_id": pl.String(), "product_name": pl.String(), "route_id": pl.String(),
        "lot_size": pl.Int32(),
    },
    "route_step": {
        "route_id": pl.String(), "step_seq": pl.Int32(), "step_id": pl.String(),
        "process_id": pl.String(), "eqp_group_id": pl.String(), "std_cycle_min": pl.Float64(),
    },
}  # fmt: skip
VIEWS = [name for name in SOURCE_SCHEMAS if name != "plan_run"]


def frame(table: str, rows: list[dict]) -> pl.DataFrame:
    schema = SOURCE_SCHEMAS[table]
    return pl.DataFrame([{c: r.get(c) for c in schema} for r in rows], schema=schema)


def connect(time_zone: str | None = None, **frames: pl.DataFrame) -> duckdb.DuckDBPyConnection:
    """A connection with one view per source table (empty unless given), as the caller makes."""
    con = duckdb.connect()
    if time_zone:
        con.sql(f"set TimeZone = '{time_zone}'")
    for name in VIEWS:
        df = frames.get(name, frame(name, []))
        con.register(f"src_{name}", df)
        con.sql(f"create view {name} as select * from src_{name}")
    return con


def run_rows(rows: list[tuple]) -> pl.DataFrame:
    """rows: (run_id, base_date, horizon_days, created_at, status)."""
    return frame(
        "plan_run",
        [
            {"run_id": r, "base_date": b, "horizon_days": h, "created_at": c.astimezone(UTC),
             "status": s}
            for r, b, h, c, s in rows
        ],
    )  # fmt: skip


# Master data: two routes; groups G1..G4; G3's only member is inactive, and so is one of G2's.
PRODUCT = frame(
    "product",
    [
        {"product_id": "P1", "product_name": "Widget", "route_id": "R1", "lot_size": 25},
        {"product_id": "P2", "product_name": "Gadget", "route_id": "R2", "lot_size": 50},
    ],
)
ROUTE = [
    ("R1", 1, "S10", "PHOTO", "G1"),
    ("R1", 2, "S20", "ETCH", "G2"),
    ("R1", 3, "S30", "DEPO", "G3"),
    ("R1", 4, "S40", "CLEAN", "G4"),
    ("R2", 1, "T10", "PHOTO", "G1"),
    ("R2", 2, "T20", "ETCH", "G2"),
]
ROUTE_STEP = frame(
    "route_step",
    [
        {"route_id": r, "step_seq": n, "step_id": s, "process_id": p, "eqp_group_id": g,
         "std_cycle_min": 30.0}
        for r, n, s, p, g in ROUTE
    ],
)  # fmt: skip
STEP_SEQ = {("P1" if r == "R1" else "P2", s): n for r, n, s, _, _ in ROUTE}
EQUIPMENT = frame(
    "equipment",
    [
        {"equipment_id": e, "eqp_group_id": g, "process_id": p, "capacity_per_hour": 10.0,
         "active": a}
        for e, g, p, a in [
            ("E1", "G1", "PHOTO", True),
            ("E2", "G1", "PHOTO", True),
            ("E3", "G2", "ETCH", True),
            ("E4", "G2", "ETCH", False),
            ("E5", "G3", "DEPO", False),
            ("E6", "G4", "CLEAN", True),
        ]
    ],
)  # fmt: skip


def results(rows: list[tuple]) -> pl.DataFrame:
    """rows: (result_id, product_id, step_id, track_out, in_qty, out_qty, is_rework)."""
    return frame(
        "process_result",
        [
            {"result_id": rid, "lot_id": f"L{rid}", "product_id": prod,
             "step_seq": STEP_SEQ.get((prod, step), 1), "step_id": step, "process_id": "PHOTO",
             "equipment_id": "E1", "track_in_ts": (out - timedelta(minutes=30)).astimezone(UTC),
             "track_out_ts": out.astimezone(UTC), "in_qty": i, "out_qty": o,
             "scrap_qty": i - o, "is_rework": rw, "updated_at": out.astimezone(UTC)}
            for rid, prod, step, out, i, o, rw in rows
        ],
    )  # fmt: skip


def plan_production(rows: list[tuple]) -> pl.DataFrame:
    """rows: (run_id, plan_date, product_id, step_id, planned_qty)."""
    return frame(
        "plan_production",
        [
            {"run_id": r, "plan_date": d, "product_id": p, "step_id": s, "process_id": "PHOTO",
             "planned_qty": q}
            for r, d, p, s, q in rows
        ],
    )  # fmt: skip


def plan_equipment(rows: list[tuple]) -> pl.DataFrame:
    """rows: (run_id, plan_date, equipment_id, planned_load_min)."""
    return frame(
        "plan_equipment",
        [
            {"run_id": r, "plan_date": d, "equipment_id": e, "planned_qty": 0,
             "planned_load_min": m}
            for r, d, e, m in rows
        ],
    )  # fmt: skip


def events(rows: list[tuple]) -> pl.DataFrame:
    """rows: (event_id, equipment_id, state, start, end or None)."""
    return frame(
        "equipment_event",
        [
            {"event_id": i, "equipment_id": e, "state": st, "start_ts": s.astimezone(UTC),
             "end_ts": en.astimezone(UTC) if en else None,
             "reason_code": "R" if st in ("DOWN", "PM") else None,
             "updated_at": (en or s).astimezone(UTC)}
            for i, e, st, s, en in rows
        ],
    )  # fmt: skip


STATUS_OF = {
    "CREATE": "WAIT", "TRACK_IN": "RUN", "TRACK_OUT": "WAIT", "COMPLETE": "COMPLETED",
    "HOLD": "HOLD", "RELEASE": "WAIT", "REWORK": "WAIT", "SCRAP": "SCRAPPED",
}  # fmt: skip


def history(rows: list[tuple], step_ids: dict[tuple[str, int], str] | None = None):
    """rows: (event_id, lot_id, product_id, event_type, event_ts, step_seq, qty)."""
    step_ids = step_ids or {(p, n): s for (p, s), n in STEP_SEQ.items()}
    return frame(
        "lot_history",
        [
            {"event_id": eid, "lot_id": lot, "product_id": prod, "event_type": et,
             "event_ts": ts.astimezone(UTC), "step_seq": seq, "step_id": step_ids[(prod, seq)],
             "equipment_id": "E1" if et in ("TRACK_IN", "TRACK_OUT") else None,
             "lot_status": STATUS_OF[et], "qty": qty,
             "hold_reason": "QC" if et == "HOLD" else None, "updated_at": ts.astimezone(UTC)}
            for eid, lot, prod, et, ts, seq, qty in rows
        ],
    )  # fmt: skip


# The plan in force --------------------------------------------------------------------------

RUNS = [
    # covers 03-08..03-10 (base + 3 = 03-11 excluded): a candidate, but older than B
    ("A", date(2026, 3, 8), 3, kst(8, 20), "COMPLETED"),
    # covers 03-10..03-16, created 22:00 of D-1: the plan in force for D
    ("B", date(2026, 3, 10), 7, kst(9, 22), "COMPLETED"),
    # created at 00:00+09:00 of D = the start of W(D): not before it
    ("C", date(2026, 3, 10), 7, kst(10, 0), "COMPLETED"),
    # newer than B but not COMPLETED
    ("D", date(2026, 3, 10), 7, kst(9, 23), "RUNNING"),
    ("E", date(2026, 3, 10), 7, kst(9, 23, 30), "FAILED"),
    # newer than B, horizon does not cover D: starts after D / ends before D
    ("F", date(2026, 3, 11), 5, kst(9, 23, 40), "COMPLETED"),
    ("G", date(2026, 3, 8), 2, kst(9, 23, 50), "COMPLETED"),
]


def test_plan_in_force_selection() -> None:
    runs = run_rows(RUNS)
    assert plan_in_force(runs, D) == "B"
    assert plan_in_force(runs.lazy(), D) == "B"
    # the input's row order does not matter
    assert plan_in_force(runs.reverse(), D) == "B"
    # without B, the older A (covering its last day, 03-10 < 03-08 + 3) is in force
    assert plan_in_force(runs.filter(pl.col("run_id") != "B"), D) == "A"
    # D+6 = 03-16, last day of B and C; C (created at the start of D) is before 03-16 00:00
    assert plan_in_force(runs, date(2026, 3, 16)) == "C"
    # 03-17 = 03-10 + 7: past B's and C's horizon, F covers 03-11..03-15 only
    assert plan_in_force(runs, date(2026, 3, 17)) is None
    # 03-08: A covers it but was created on 03-08 itself (20:00), not before its start
    assert plan_in_force(runs, date(2026, 3, 8)) is None
    assert plan_in_force(run_rows([]), D) is None


def test_plan_in_force_tie_on_created_at_goes_to_the_greatest_run_id() -> None:
    tie = [
        ("B-R", date(2026, 3, 10), 7, kst(9, 22), "COMPLETED"),  # "B-R" > "B"
        ("A9", date(2026, 3, 10), 7, kst(9, 22), "COMPLETED"),  # "A9" < "B"
    ]
    assert plan_in_force(run_rows(RUNS + tie), D) == "B-R"
    assert plan_in_force(run_rows(tie[1:] + RUNS), D) == "B"


def test_plan_in_force_last_microsecond_and_time_zone_of_the_column() -> None:
    last = ("H", date(2026, 3, 9), 2, kst(9, 23, 59, 59, 999999), "COMPLETED")
    runs = run_rows(RUNS + [last])
    assert plan_in_force(runs, D) == "H"
    # the same instants held in a plant-time column compare the same
    local = runs.with_columns(pl.col("created_at").dt.convert_time_zone("Asia/Seoul"))
    assert plan_in_force(local, D) == "H"


# aps_kpi_plan_vs_actual ---------------------------------------------------------------------

RESULTS = results(
    [
        # (P1, S10): 24 + 25 = 49 counted (out_qty)
        (1, "P1", "S10", kst(10, 10), 25, 24, False),
        (2, "P1", "S10", kst(10, 23, 59, 59), 25, 25, False),  # last second of D: in
        (3, "P1", "S10", kst(11, 0), 20, 20, False),  # 00:00 of D+1: out
        (4, "P1", "S10", kst(9, 23, 59, 59), 25, 25, False),  # last second of D-1: out
        (5, "P1", "S10", kst(10, 12), 25, 25, True),  # rework pass: out
        # (P1, S20): only actual, 25
        (6, "P1", "S20", kst(10, 11), 25, 25, False),
        # (P1, S30): only a rework pass and no plan: no row
        (7, "P1", "S30", kst(10, 11), 25, 25, True),
        # (P2, T10): in 50, out 48 (counted: out_qty) + 2 at 00:00:00 of D (in) -> 50
        (8, "P2", "T10", kst(10, 9), 50, 48, False),
        (9, "P2", "T10", kst(10, 0), 2, 2, False),
    ]
)
PLAN_PRODUCTION = plan_production(
    [
        ("B", D, "P1", "S10", 50),
        ("B", D, "P2", "T10", 40),
        ("B", D, "P2", "T20", 30),  # only planned
        ("B", D, "P1", "S40", 0),  # planned 0, no actual
        ("B", date(2026, 3, 11), "P1", "S30", 99),  # another plan date: out
        ("A", D, "P1", "S20", 77),  # another run: out
    ]
)


def test_plan_vs_actual_with_a_plan_in_force() -> None:
    con = connect(process_result=RESULTS, plan_production=PLAN_PRODUCTION)
    out = aps_kpi_plan_vs_actual(con, D, "B")
    assert out.schema == pl.Schema(PVA_SCHEMA)
    assert out.to_dicts() == [
        # 49 - 50 = -1; 49 / 50 = 0.98
        {"base_date": D, "product_id": "P1", "step_id": "S10", "plan_run_id": "B",
         "planned_qty": 50, "actual_qty": 49, "deviation_qty": -1, "attainment": 0.98},
        # no plan row: planned 0, 25 - 0 = 25, attainment null (planned 0)
        {"base_date": D, "product_id": "P1", "step_id": "S20", "plan_run_id": "B",
         "planned_qty": 0, "actual_qty": 25, "deviation_qty": 25, "attainment": None},
        # planned 0 and nothing done: 0 - 0 = 0, attainment null
        {"base_date": D, "product_id": "P1", "step_id": "S40", "plan_run_id": "B",
         "planned_qty": 0, "actual_qty": 0, "deviation_qty": 0, "attainment": None},
        # 50 - 40 = 10; 50 / 40 = 1.25
        {"base_date": D, "product_id": "P2", "step_id": "T10", "plan_run_id": "B",
         "planned_qty": 40, "actual_qty": 50, "deviation_qty": 10, "attainment": 1.25},
        # nothing done: 0 - 30 = -30; 0 / 30 = 0.0
        {"base_date": D, "product_id": "P2", "step_id": "T20", "plan_run_id": "B",
         "planned_qty": 30, "actual_qty": 0, "deviation_qty": -30, "attainment": 0.0},
    ]  # fmt: skip
    assert validate(APS_KPI_PLAN_VS_ACTUAL, out).ok


def test_plan_vs_actual_without_a_plan_in_force() -> None:
    # the plan views are empty when no plan is in force; rows left in them are not read
    for plans in (plan_production([]), PLAN_PRODUCTION):
        con = connect(process_result=RESULTS, plan_production=plans)
        out = aps_kpi_plan_vs_actual(con, D, None)
        assert out.schema == pl.Schema(PVA_SCHEMA)
        assert out.drop("base_date").rows() == [
            # (product, step, plan_run_id, planned, actual, deviation, attainment)
            ("P1", "S10", None, None, 49, None, None),
            ("P1", "S20", None, None, 25, None, None),
            ("P2", "T10", None, None, 50, None, None),
        ]
        assert validate(APS_KPI_PLAN_VS_ACTUAL, out).ok


# aps_kpi_equipment_util ---------------------------------------------------------------------

EVENTS = events(
    [
        # E1: 120 + 360 + 240 = 720 min of RUN -> 720 / 1440 = 0.5
        (1, "E1", "RUN", kst(9, 22), kst(10, 2)),  # crosses the start: 00:00-02:00 = 120
        (2, "E1", "IDLE", kst(10, 2), kst(10, 10)),
        (3, "E1", "RUN", kst(10, 10), kst(10, 16)),  # 360
        (4, "E1", "DOWN", kst(10, 16), kst(10, 20)),
        (5, "E1", "RUN", kst(10, 20), kst(11, 3)),  # crosses the end: 20:00-24:00 = 240
        (6, "E1", "IDLE", kst(11, 3), None),
        # E2: only the open RUN from 18:00 counts: 360 -> 360 / 1440 = 0.25
        (7, "E2", "RUN", kst(9, 10), kst(9, 12)),  # before W(D)
        (8, "E2", "RUN", kst(9, 20), kst(10, 0)),  # ends at the start of W(D): 0
        (9, "E2", "IDLE", kst(10, 0), kst(10, 6)),
        (10, "E2", "PM", kst(10, 6), kst(10, 18)),
        (11, "E2", "RUN", kst(10, 18), None),  # open: runs to the end of W(D), 360
        # E3: 0.5 + 720 = 720.5 min -> 720.5 / 1440
        (12, "E3", "RUN", kst(10, 8), kst(10, 8, 0, 30)),  # 30 s = 0.5 min
        (13, "E3", "RUN", kst(10, 9), kst(10, 21)),  # 720
        (14, "E3", "DOWN", kst(10, 21), None),
        # E4 inactive, RUN all day: not reported; E5 inactive, decommissioned
        (15, "E4", "RUN", kst(9), None),
        (16, "E5", "DOWN", kst(1), None),
        # E6: idle through D; its RUN starts at the end of W(D): 0
        (17, "E6", "IDLE", kst(9), kst(11, 0)),
        (18, "E6", "RUN", kst(11, 0), None),
    ]
)
PLAN_EQUIPMENT = plan_equipment(
    [
        ("B", D, "E1", 600.0),
        ("B", D, "E2", 1440.0),
        ("B", D, "E4", 100.0),  # inactive: not in the population
        ("B", D, "E6", 0.0),
        ("B", date(2026, 3, 11), "E3", 500.0),  # another plan date: E3 has no row for D
        ("A", D, "E3", 300.0),  # another run
    ]
)


def test_equipment_util_with_a_plan_in_force() -> None:
    con = connect(equipment=EQUIPMENT, equipment_event=EVENTS, plan_equipment=PLAN_EQUIPMENT)
    out = aps_kpi_equipment_util(con, D, "B")
    assert out.schema == pl.Schema(UTIL_SCHEMA)
    assert out.drop("base_date").rows() == [
        # (equipment, plan_run_id, group, planned_util, actual_util, util_gap)
        ("E1", "B", "G1", 600 / 1440, 0.5, 0.5 - 600 / 1440),
        ("E2", "B", "G1", 1.0, 0.25, -0.75),  # 1440 / 1440 = 1; 0.25 - 1 = -0.75
        ("E3", "B", "G2", 0.0, 720.5 / 1440, 720.5 / 1440),  # no plan row: planned 0
        ("E6", "B", "G4", 0.0, 0.0, 0.0),
    ]
    assert (out["base_date"] == D).all()
    assert validate(APS_KPI_EQUIPMENT_UTIL, out).ok


def test_equipment_util_without_a_plan_in_force() -> None:
    con = connect(equipment=EQUIPMENT, equipment_event=EVENTS)
    out = aps_kpi_equipment_util(con, D, None)
    assert out.schema == pl.Schema(UTIL_SCHEMA)
    # planned_util null (a planned value), so util_gap = actual - null is null
    assert out.drop("base_date").rows() == [
        ("E1", None, "G1", None, 0.5, None),
        ("E2", None, "G1", None, 0.25, None),
        ("E3", None, "G2", None, 720.5 / 1440, None),
        ("E6", None, "G4", None, 0.0, None),
    ]
    assert validate(APS_KPI_EQUIPMENT_UTIL, out).ok


# aps_kpi_bottleneck -------------------------------------------------------------------------

LOTS = [
    # L1: WAIT at S10 (G1), 25
    (1, "L1", "P1", "CREATE", kst(9, 8), 1, 25),
    # L2: RUN at S10: not waiting
    (2, "L2", "P1", "CREATE", kst(9, 8), 1, 25),
    (3, "L2", "P1", "TRACK_IN", kst(10, 9), 1, 25),
    # L3: HOLD at S20: not waiting
    (4, "L3", "P1", "CREATE", kst(8), 1, 25),
    (5, "L3", "P1", "TRACK_OUT", kst(9), 2, 25),
    (6, "L3", "P1", "HOLD", kst(10, 3), 2, 25),
    # L4: arrives at S20 (G2) at 23:59:59 of D with 24
    (7, "L4", "P1", "CREATE", kst(9), 1, 25),
    (8, "L4", "P1", "TRACK_IN", kst(10, 23), 1, 25),
    (9, "L4", "P1", "TRACK_OUT", kst(10, 23, 59, 59), 2, 24),
    # L5: WAIT at S20 (G2), 20; its TRACK_IN at 00:00 of D+1 is after D
    (10, "L5", "P1", "CREATE", kst(8), 1, 20),
    (11, "L5", "P1", "TRACK_OUT", kst(9), 2, 20),
    (12, "L5", "P1", "TRACK_IN", kst(11, 0), 2, 20),
    # L6: P2 WAIT at T10 (G1), 50
    (13, "L6", "P2", "CREATE", kst(10, 20), 1, 50),
    # L7: completed on D; L8: created at the start of D+1; L11: scrapped on D
    (14, "L7", "P1", "CREATE", kst(5), 1, 25),
    (15, "L7", "P1", "COMPLETE", kst(10, 7), 4, 25),
    (16, "L8", "P1", "CREATE", kst(11, 0), 1, 25),
    (17, "L11", "P1", "CREATE", kst(5), 1, 25),
    (18, "L11", "P1", "SCRAP", kst(10, 5), 1, 0),
    # T: HOLD and RELEASE at the same instant, listed backwards; event_id 40 < 41: HOLD last
    (41, "T", "P1", "HOLD", kst(10, 12), 1, 7),
    (40, "T", "P1", "RELEASE", kst(10, 12), 1, 7),
    (39, "T", "P1", "CREATE", kst(9, 9), 1, 7),
    # U: the mirror image; RELEASE (51) is last: WAIT at S10 (G1), 10
    (51, "U", "P1", "RELEASE", kst(10, 12), 1, 10),
    (50, "U", "P1", "HOLD", kst(10, 12), 1, 10),
    (49, "U", "P1", "CREATE", kst(9, 9), 1, 10),
    # L10: WAIT at S30, served by G3 whose only member is inactive: in no row
    (60, "L10", "P1", "CREATE", kst(7), 1, 15),
    (61, "L10", "P1", "TRACK_OUT", kst(8), 2, 15),
    (62, "L10", "P1", "TRACK_OUT", kst(9), 3, 15),
    # L12: sent back to S10 (G1) by a REWORK on D, WAIT, 5
    (70, "L12", "P1", "CREATE", kst(6), 1, 5),
    (71, "L12", "P1", "TRACK_OUT", kst(7), 2, 5),
    (72, "L12", "P1", "TRACK_OUT", kst(8), 3, 5),
    (73, "L12", "P1", "REWORK", kst(10, 11), 1, 5),
    # L13: P2 WAIT at T20 (G2), 40
    (80, "L13", "P2", "CREATE", kst(8), 1, 40),
    (81, "L13", "P2", "TRACK_OUT", kst(9), 2, 40),
    # L14: WAIT at S40 (G4), 25; tracked in at 00:00 of D+1
    (90, "L14", "P1", "CREATE", kst(5), 1, 25),
    (91, "L14", "P1", "TRACK_OUT", kst(6), 2, 25),
    (92, "L14", "P1", "TRACK_OUT", kst(7), 3, 25),
    (93, "L14", "P1", "TRACK_OUT", kst(8), 4, 25),
    (94, "L14", "P1", "TRACK_IN", kst(11, 0), 4, 25),
]


def test_bottleneck() -> None:
    con = connect(
        equipment=EQUIPMENT,
        equipment_event=EVENTS,
        lot_history=history(LOTS),
        product=PRODUCT,
        route_step=ROUTE_STEP,
    )
    out = aps_kpi_bottleneck(con, D)
    assert out.schema == pl.Schema(BOTTLENECK_SCHEMA)
    assert out.drop("base_date").rows() == [
        # (group, process, active members, avg util, waiting wip, rank, bottleneck)
        # G1: E1 720 + E2 360 min over 2 members: 1080 / 2 / 1440 = 0.375;
        #     WIP L1 25 + L6 50 + U 10 + L12 5 = 90
        ("G1", "PHOTO", 2, 0.375, 90, 2, False),
        # G2: E3 only (E4 inactive): 720.5 / 1440 = 0.5003...; WIP L4 24 + L5 20 + L13 40 = 84
        ("G2", "ETCH", 1, 720.5 / 1440, 84, 1, True),
        # G3: no active member: no row. G4: E6 0 min; WIP L14 25
        ("G4", "CLEAN", 1, 0.0, 25, 3, False),
    ]
    assert validate(APS_KPI_BOTTLENECK, out).ok


# A second factory for the ranking: route RT steps 1..5 served by GA, GB, GC, GD, GZ.
TIE_ROUTE = [(1, "A10", "GA"), (2, "B10", "GB"), (3, "C10", "GC"), (4, "D10", "GD"),
             (5, "Z10", "GZ")]  # fmt: skip
TIE_STEPS = {("PT", n): s for n, s, _ in TIE_ROUTE}
TIE_MASTER = {
    "product": frame(
        "product", [{"product_id": "PT", "product_name": "T", "route_id": "RT", "lot_size": 10}]
    ),
    "route_step": frame(
        "route_step",
        [
            {"route_id": "RT", "step_seq": n, "step_id": s, "process_id": f"PR{g}",
             "eqp_group_id": g, "std_cycle_min": 10.0}
            for n, s, g in TIE_ROUTE
        ],
    ),
    "equipment": frame(
        "equipment",
        [
            {"equipment_id": e, "eqp_group_id": g, "process_id": f"PR{g}",
             "capacity_per_hour": 1.0, "active": e != "B3"}
            for e, g in [("A1", "GA"), ("B1", "GB"), ("B2", "GB"), ("B3", "GB"), ("C1", "GC"),
                         ("D1", "GD"), ("Z1", "GZ")]
        ],
    ),
}  # fmt: skip
TIE_EVENTS = [
    (1, "A1", "RUN", kst(10, 0), kst(10, 12)),  # 720 -> GA 720 / 1440 = 0.5
    (2, "B1", "RUN", kst(10, 0), kst(10, 6)),  # 360
    (3, "B2", "RUN", kst(10, 0), kst(10, 18)),  # 1080 -> GB (360 + 1080) / 2 / 1440 = 0.5
    (4, "B3", "RUN", kst(9), None),  # inactive: not in GB's mean
    (5, "C1", "RUN", kst(10, 6), kst(10, 18)),  # 720 -> GC 0.5
    (6, "D1", "RUN", kst(10, 6), None),  # 1080 -> GD 0.75
    (7, "Z1", "RUN", kst(10, 6), kst(10, 7)),  # 60 -> GZ 60 / 1440
]
TIE_LOTS = [
    # WAIT: GA 10, GB 30, GC 30, GZ 1000; a RUN lot of 500 at GB and a HOLD lot of 500 at GC
    # would overturn the ranking if they counted
    (1, "A", "PT", "CREATE", kst(9), 1, 10),
    (2, "B", "PT", "CREATE", kst(9), 1, 30),
    (3, "B", "PT", "TRACK_OUT", kst(9, 1), 2, 30),
    (4, "C", "PT", "CREATE", kst(9), 1, 30),
    (5, "C", "PT", "TRACK_OUT", kst(9, 1), 3, 30),
    (6, "Z", "PT", "CREATE", kst(9), 1, 1000),
    (7, "Z", "PT", "TRACK_OUT", kst(9, 1), 5, 1000),
    (8, "BR", "PT", "CREATE", kst(9), 1, 500),
    (9, "BR", "PT", "TRACK_OUT", kst(9, 1), 2, 500),
    (10, "BR", "PT", "TRACK_IN", kst(10, 1), 2, 500),
    (11, "CH", "PT", "CREATE", kst(9), 1, 500),
    (12, "CH", "PT", "TRACK_OUT", kst(9, 1), 3, 500),
    (13, "CH", "PT", "HOLD", kst(10, 1), 3, 500),
]


def test_bottleneck_ranking_ties_break_on_waiting_wip_then_group_id() -> None:
    con = connect(
        **TIE_MASTER,
        equipment_event=events(TIE_EVENTS),
        lot_history=history(TIE_LOTS, TIE_STEPS),
    )
    out = aps_kpi_bottleneck(con, D)
    assert out.drop("base_date").rows() == [
        # GA, GB, GC tie on 0.5: GB and GC (30) before GA (10); GB before GC by id
        ("GA", "PRGA", 1, 0.5, 10, 4, False),
        ("GB", "PRGB", 2, 0.5, 30, 2, False),
        ("GC", "PRGC", 1, 0.5, 30, 3, False),
        ("GD", "PRGD", 1, 0.75, 0, 1, True),  # highest util, no WIP
        ("GZ", "PRGZ", 1, 60 / 1440, 1000, 5, False),  # most WIP, lowest util
    ]
    assert validate(APS_KPI_BOTTLENECK, out).ok


# Across the three tables ---------------------------------------------------------------------


def all_frames() -> dict[str, pl.DataFrame]:
    return {
        "plan_production": PLAN_PRODUCTION,
        "plan_equipment": PLAN_EQUIPMENT,
        "process_result": RESULTS,
        "equipment_event": EVENTS,
        "equipment": EQUIPMENT,
        "lot_history": history(LOTS),
        "product": PRODUCT,
        "route_step": ROUTE_STEP,
    }


def kpis(con: duckdb.DuckDBPyConnection, run: str | None = "B") -> list[pl.DataFrame]:
    return [
        aps_kpi_plan_vs_actual(con, D, run),
        aps_kpi_equipment_util(con, D, run),
        aps_kpi_bottleneck(con, D),
    ]


def assert_same(a: list[pl.DataFrame], b: list[pl.DataFrame]) -> None:
    for x, y in zip(a, b, strict=True):
        assert x.schema == y.schema
        assert x.equals(y), (x, y)


def test_same_answer_on_the_days_extract_as_on_the_whole_tables() -> None:
    whole = all_frames()
    ws, we = kst(10).astimezone(UTC), kst(11).astimezone(UTC)
    # the caller's extracts: passes tracked out in W(D); intervals overlapping W(D); history
    # up to the end of W(D) of lots not terminal before its start (here: L7 completes on D,
    # so none is dropped; L8's CREATE at the end of W(D) and the D+1 events are)
    passes = whole["process_result"]
    intervals = whole["equipment_event"]
    extract = dict(
        whole,
        process_result=passes.filter(pl.col("track_out_ts").is_between(ws, we, closed="left")),
        equipment_event=intervals.filter(
            (pl.col("start_ts") < we) & (pl.col("end_ts").is_null() | (pl.col("end_ts") > ws))
        ),
        lot_history=whole["lot_history"].filter(pl.col("event_ts") < we),
    )
    assert extract["equipment_event"].height < whole["equipment_event"].height
    assert_same(kpis(connect(**whole)), kpis(connect(**extract)))


def test_independent_of_row_order_and_session_time_zone() -> None:
    base = kpis(connect(**all_frames()))
    shuffled = {k: v.sample(fraction=1.0, shuffle=True, seed=7) for k, v in all_frames().items()}
    reversed_ = {k: v.reverse() for k, v in all_frames().items()}
    assert_same(base, kpis(connect(**shuffled)))
    assert_same(base, kpis(connect(**reversed_)))
    for tz in ("America/Los_Angeles", "Asia/Seoul", "Pacific/Kiritimati"):
        assert_same(base, kpis(connect(tz, **all_frames())))


def test_same_answer_on_views_over_parquet(tmp_path) -> None:
    # as in the pipeline: views over lake Parquet written by Polars (timestamps read back as
    # TIMESTAMP WITH TIME ZONE), on a session pinned to UTC
    con = duckdb.connect()
    con.sql("set TimeZone = 'UTC'")
    for name in VIEWS:
        path = tmp_path / f"{name}.parquet"
        all_frames().get(name, frame(name, [])).write_parquet(path)
        con.sql(f"create view {name} as select * from read_parquet('{path}')")
    types = con.sql("select typeof(event_ts) from lot_history limit 1").fetchall()
    assert types == [("TIMESTAMP WITH TIME ZONE",)]
    assert_same(kpis(connect(**all_frames())), kpis(con))


def test_empty_day_gives_empty_frames_with_the_exact_schema() -> None:
    con = connect()
    for run in ("B", None):
        pva, util, bottleneck = kpis(con, run)
        for out, schema, table in (
            (pva, PVA_SCHEMA, APS_KPI_PLAN_VS_ACTUAL),
            (util, UTIL_SCHEMA, APS_KPI_EQUIPMENT_UTIL),
            (bottleneck, BOTTLENECK_SCHEMA, APS_KPI_BOTTLENECK),
        ):
            assert out.height == 0
            assert out.schema == pl.Schema(schema)
            assert validate(table, out).ok


# Declarations and validation ---------------------------------------------------------------


def test_declarations_match_the_contract() -> None:
    assert set(TABLES) == {"aps_kpi_plan_vs_actual", "aps_kpi_equipment_util",
                           "aps_kpi_bottleneck"}  # fmt: skip
    for table, schema in (
        (APS_KPI_PLAN_VS_ACTUAL, PVA_SCHEMA),
        (APS_KPI_EQUIPMENT_UTIL, UTIL_SCHEMA),
        (APS_KPI_BOTTLENECK, BOTTLENECK_SCHEMA),
    ):
        assert table.polars_schema == pl.Schema(schema)
        create_table_sql(table)  # every dtype has a PostgreSQL type
    assert APS_KPI_PLAN_VS_ACTUAL.grain == ("base_date", "product_id", "step_id")
    assert APS_KPI_EQUIPMENT_UTIL.grain == ("base_date", "equipment_id")
    assert APS_KPI_BOTTLENECK.grain == ("base_date", "eqp_group_id")
    nullable = {t.name: {c.name for c in t.columns if c.nullable} for t in TABLES.values()}
    assert nullable == {
        "aps_kpi_plan_vs_actual": {"plan_run_id", "planned_qty", "deviation_qty", "attainment"},
        "aps_kpi_equipment_util": {"plan_run_id", "planned_util", "util_gap"},
        "aps_kpi_bottleneck": set(),
    }
    ddl = create_table_sql(APS_KPI_EQUIPMENT_UTIL, "aps")
    assert '"actual_util" double precision not null' in ddl
    assert '"planned_util" double precision,' in ddl


def test_validation_catches_util_above_one() -> None:
    # overlapping RUN intervals on E1 (impossible in the source): 1080 + 1080 = 2160 min = 1.5
    overlap = events(
        [(1, "E1", "RUN", kst(10, 0), kst(10, 18)), (2, "E1", "RUN", kst(10, 6), kst(11, 0))]
    )
    con = connect(equipment=EQUIPMENT, equipment_event=overlap, product=PRODUCT,
                  route_step=ROUTE_STEP)  # fmt: skip
    util = aps_kpi_equipment_util(con, D, "B")
    assert util.filter(pl.col("equipment_id") == "E1")["actual_util"].item() == 1.5
    report = validate(APS_KPI_EQUIPMENT_UTIL, util)
    assert report.counts == {
        ("actual_util", "less_than_or_equal_to(1)"): 1,
        ("util_gap", "less_than_or_equal_to(1)"): 1,  # 1.5 - 0 (no plan row)
    }
    assert report.samples[0]["equipment_id"] == "E1"
    # G1: (2160 + 0) / 2 / 1440 = 0.75 is still a valid mean; a lone member would not be
    bottleneck = aps_kpi_bottleneck(con, D)
    assert bottleneck.filter(pl.col("eqp_group_id") == "G1")["avg_actual_util"].item() == 0.75
    with pytest.raises(ValidationError, match="aps_kpi_equipment_util: 2 violations in 4 rows"):
        report.raise_if_failed()


def test_validation_catches_a_null_key() -> None:
    bad = results([(1, "P1", "S10", kst(10, 10), 25, 25, False)]).with_columns(
        product_id=pl.lit(None, pl.String)
    )
    out = aps_kpi_plan_vs_actual(connect(process_result=bad), D, None)
    assert out.drop("base_date").rows() == [(None, "S10", None, None, 25, None, None)]
    assert validate(APS_KPI_PLAN_VS_ACTUAL, out).counts == {("product_id", "not_nullable"): 1}


def test_validation_catches_inconsistent_rows() -> None:
    con = connect(**all_frames())
    pva, util, bottleneck = kpis(con)
    # plan_vs_actual: a wrong deviation, an attainment where planned is 0, a second run id
    bad = pva.with_columns(
        deviation_qty=pl.when(pl.col("step_id") == "S10").then(0).otherwise("deviation_qty"),
        attainment=pl.when(pl.col("step_id") == "S20").then(1.0).otherwise("attainment"),
        plan_run_id=pl.when(pl.col("step_id") == "T20").then(pl.lit("A")).otherwise("plan_run_id"),
    )  # fmt: skip
    assert validate(APS_KPI_PLAN_VS_ACTUAL, bad).counts == {
        ("deviation_qty,actual_qty,planned_qty", "deviation_qty=actual_qty-planned_qty"): 1,
        ("attainment,actual_qty,planned_qty", "attainment=actual_qty/planned_qty"): 1,
        ("plan_run_id", "plan_run_id_constant"): 1,
    }
    # equipment_util: a planned value without a plan; a gap that is not actual - planned
    bad = util.with_columns(
        plan_run_id=pl.when(pl.col("equipment_id") == "E1").then(None).otherwise("plan_run_id"),
        util_gap=pl.when(pl.col("equipment_id") == "E2").then(0.0).otherwise("util_gap"),
    )
    counts = validate(APS_KPI_EQUIPMENT_UTIL, bad).counts
    assert counts[("plan_run_id,planned_util", "planned_util_null_iff_no_plan")] == 1
    assert counts[("util_gap,actual_util,planned_util", "util_gap=actual_util-planned_util")] == 1
    # bottleneck: two bottlenecks; a rank repeated; a rank above the row count (3 rows)
    bad = bottleneck.with_columns(is_bottleneck=pl.lit(True))
    assert validate(APS_KPI_BOTTLENECK, bad).counts == {
        ("is_bottleneck,util_rank", "is_bottleneck=(util_rank=1)"): 2
    }
    bad = bottleneck.with_columns(util_rank=pl.lit(2, pl.Int64), is_bottleneck=pl.lit(False))
    assert validate(APS_KPI_BOTTLENECK, bad).counts == {("util_rank", "util_rank_is_1..n"): 3}
    bad = bottleneck.with_columns(util_rank=pl.col("util_rank") + 1).with_columns(
        is_bottleneck=pl.col("util_rank") == 1
    )
    assert validate(APS_KPI_BOTTLENECK, bad).counts == {("util_rank", "util_rank_is_1..n"): 1}
