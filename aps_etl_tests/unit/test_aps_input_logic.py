"""Scenario 1 business logic on small hand-computed fixtures.

Business day D = 2026-03-10, W(D) = [2026-03-10 00:00+09:00, 2026-03-11 00:00+09:00)
                                   = [2026-03-09 15:00Z,     2026-03-10 15:00Z).
Expected numbers are written out by hand; the comments show the arithmetic.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import polars as pl
import pytest

from aps_etl.defs.scenarios.aps_input import (
    APS_INPUT_CYCLE_TIME,
    APS_INPUT_LEAD_TIME,
    APS_INPUT_WIP,
    ValidationError,
    abnormal_lots,
    aps_input_cycle_time,
    aps_input_lead_time,
    aps_input_wip,
    lot_state_at_end_of_day,
    validate,
)
from aps_etl.lib.business_days import PLANT_TZ, business_day_window, parse_partition_key
from aps_etl.lib.warehouse.target import create_table_sql

D = date(2026, 3, 10)
KST = timezone(timedelta(hours=9))
TS = pl.Datetime("us", "UTC")


def kst(day: int, h: int = 0, m: int = 0, s: int = 0) -> datetime:
    """A March 2026 plant-local time."""
    return datetime(2026, 3, day, h, m, s, tzinfo=KST)


def utc(day: int, h: int = 0, m: int = 0, s: int = 0) -> datetime:
    return datetime(2026, 3, day, h, m, s, tzinfo=UTC)


# Output schemas written out by hand (not read from the declaration under test).
WIP_SCHEMA = {
    "base_date": pl.Date,
    "product_id": pl.String,
    "step_id": pl.String,
    "process_id": pl.String,
    "wip_lots": pl.Int64,
    "wip_qty": pl.Int64,
    "run_lots": pl.Int64,
    "run_qty": pl.Int64,
}
CT_SCHEMA = {
    "base_date": pl.Date,
    "product_id": pl.String,
    "step_id": pl.String,
    "process_id": pl.String,
    "passes": pl.Int64,
    "in_qty": pl.Int64,
    "out_qty": pl.Int64,
    "scrap_qty": pl.Int64,
    "ct_avg_min": pl.Float64,
    "ct_p50_min": pl.Float64,
    "ct_p90_min": pl.Float64,
    "std_cycle_min": pl.Float64,
    "ct_ratio": pl.Float64,
}
LT_SCHEMA = {
    "base_date": pl.Date,
    "product_id": pl.String,
    "completed_lots": pl.Int64,
    "completed_qty": pl.Int64,
    "lt_avg_h": pl.Float64,
    "lt_p50_h": pl.Float64,
    "lt_p90_h": pl.Float64,
}

# Fixture builders ---------------------------------------------------------------------------

STATUS_OF = {
    "CREATE": "WAIT",
    "TRACK_IN": "RUN",
    "TRACK_OUT": "WAIT",
    "COMPLETE": "COMPLETED",
    "HOLD": "HOLD",
    "RELEASE": "WAIT",
    "REWORK": "WAIT",
    "SCRAP": "SCRAPPED",
}
STEP_ID = {("P1", 1): "S10", ("P1", 2): "S20", ("P1", 3): "S30", ("P2", 1): "T10"}


def history(rows: list[tuple], int_dtype: pl.DataType = pl.Int64) -> pl.LazyFrame:
    """rows: (event_id, lot_id, product_id, event_type, event_ts, step_seq, qty).
    lot_status follows from event_type, step_id from (product, step_seq)."""
    data = [
        {
            "event_id": eid,
            "lot_id": lot,
            "product_id": prod,
            "event_type": etype,
            "event_ts": ts.astimezone(UTC),
            "step_seq": seq,
            "step_id": STEP_ID.get((prod, seq), f"S{seq}0"),
            "equipment_id": "E1" if etype in ("TRACK_IN", "TRACK_OUT") else None,
            "lot_status": STATUS_OF[etype],
            "qty": qty,
            "hold_reason": "QC" if etype == "HOLD" else None,
            "updated_at": ts.astimezone(UTC),
        }
        for eid, lot, prod, etype, ts, seq, qty in rows
    ]
    schema = {
        "event_id": pl.Int64,
        "lot_id": pl.String,
        "product_id": pl.String,
        "event_type": pl.String,
        "event_ts": TS,
        "step_seq": int_dtype,
        "step_id": pl.String,
        "equipment_id": pl.String,
        "lot_status": pl.String,
        "qty": int_dtype,
        "hold_reason": pl.String,
        "updated_at": TS,
    }
    return pl.DataFrame(data, schema=schema, orient="row").lazy()


def results(rows: list[tuple]) -> pl.LazyFrame:
    """rows: (result_id, lot_id, product_id, step_seq, process_id, track_in, track_out,
    in_qty, out_qty, scrap_qty, is_rework)."""
    data = [
        {
            "result_id": rid,
            "lot_id": lot,
            "product_id": prod,
            "step_seq": seq,
            "step_id": STEP_ID.get((prod, seq), f"S{seq}0"),
            "process_id": proc,
            "equipment_id": "E1",
            "track_in_ts": t_in.astimezone(UTC),
            "track_out_ts": t_out.astimezone(UTC),
            "in_qty": i,
            "out_qty": o,
            "scrap_qty": s,
            "is_rework": rw,
            "updated_at": t_out.astimezone(UTC),
        }
        for rid, lot, prod, seq, proc, t_in, t_out, i, o, s, rw in rows
    ]
    schema = {
        "result_id": pl.Int64,
        "lot_id": pl.String,
        "product_id": pl.String,
        "step_seq": pl.Int32,
        "step_id": pl.String,
        "process_id": pl.String,
        "equipment_id": pl.String,
        "track_in_ts": TS,
        "track_out_ts": TS,
        "in_qty": pl.Int32,
        "out_qty": pl.Int32,
        "scrap_qty": pl.Int32,
        "is_rework": pl.Boolean,
        "updated_at": TS,
    }
    return pl.DataFrame(data, schema=schema, orient="row").lazy()


PRODUCT = pl.LazyFrame(
    {
        "product_id": ["P1", "P2"],
        "product_name": ["Widget", "Gadget"],
        "route_id": ["R1", "R2"],
        "lot_size": [25, 50],
    },
    schema_overrides={"lot_size": pl.Int32},
)
ROUTE_STEP = pl.LazyFrame(
    {
        "route_id": ["R1", "R1", "R1", "R2", "R2"],
        "step_seq": [1, 2, 3, 1, 2],
        "step_id": ["S10", "S20", "S30", "T10", "T20"],
        "process_id": ["PHOTO", "ETCH", "CLEAN", "PHOTO", "DEPO"],
        "eqp_group_id": ["G1", "G2", "G3", "G1", "G4"],
        "std_cycle_min": [30.0, 45.5, 20.0, 60.0, 90.0],
    },
    schema_overrides={"step_seq": pl.Int32},
)


def rows_of(lf: pl.LazyFrame) -> list[dict]:
    return lf.collect().to_dicts()


# Calendar -----------------------------------------------------------------------------------


def test_business_day_window_is_kst_midnight_to_midnight_in_utc() -> None:
    start, end = business_day_window(D)
    assert (start, end) == (utc(9, 15), utc(10, 15))  # 00:00+09:00 = 15:00Z the day before
    assert start.utcoffset() == timedelta(0) and end.utcoffset() == timedelta(0)
    assert PLANT_TZ == "Asia/Seoul"
    # year boundary: 2026-01-01 00:00+09:00 = 2025-12-31 15:00Z
    assert business_day_window(date(2026, 1, 1))[0] == datetime(2025, 12, 31, 15, tzinfo=UTC)
    # always 1440 minutes, even on a day Seoul once observed DST (1988-05-08)
    s, e = business_day_window(date(1988, 5, 8))
    assert e - s == timedelta(minutes=1440)


def test_parse_partition_key_accepts_real_dates() -> None:
    assert parse_partition_key("2026-03-10") == D
    assert parse_partition_key("2024-02-29") == date(2024, 2, 29)


@pytest.mark.parametrize(
    "key",
    ["2026-1-5", "20261125", "2026-02-30", "", "2026-03-10 ", "2026-03-10\n", "2026/03/10",
     "2026-03-10T00:00", "２０２６-03-10", "2026-13-01"],
)  # fmt: skip
def test_parse_partition_key_rejects(key: str) -> None:
    with pytest.raises(ValueError) as err:
        parse_partition_key(key)
    assert repr(key) in str(err.value)
    assert "YYYY-MM-DD" in str(err.value)


# Lot state and abnormal lots ----------------------------------------------------------------


def test_state_at_end_of_day_boundaries_and_event_id_ties() -> None:
    lh = history(
        [
            # A: last event at 23:59:59+09:00 of D counts for D
            (1, "A", "P1", "CREATE", kst(8, 8), 1, 25),
            (2, "A", "P1", "TRACK_IN", kst(10, 23), 1, 25),
            (3, "A", "P1", "TRACK_OUT", kst(10, 23, 59, 59), 2, 24),
            # B: the TRACK_OUT at 00:00:00+09:00 of D+1 does not
            (4, "B", "P1", "CREATE", kst(9, 10), 1, 25),
            (5, "B", "P1", "TRACK_IN", kst(10, 10), 1, 25),
            (6, "B", "P1", "TRACK_OUT", kst(11, 0), 2, 25),
            # T: same event_ts; listed out of order; event_id 31 > 30 so TRACK_IN is last
            (20, "T", "P1", "CREATE", kst(9, 9), 1, 25),
            (31, "T", "P1", "TRACK_IN", kst(10, 12), 1, 25),
            (30, "T", "P1", "HOLD", kst(10, 12), 1, 25),
            # U: the mirror image; event_id 41 > 40 so HOLD is last
            (39, "U", "P1", "CREATE", kst(9, 9), 1, 25),
            (41, "U", "P1", "HOLD", kst(10, 12), 1, 25),
            (40, "U", "P1", "TRACK_IN", kst(10, 12), 1, 25),
            # N: created at the start of D+1: does not exist yet at the end of D
            (50, "N", "P1", "CREATE", kst(11, 0), 1, 25),
        ],
        int_dtype=pl.Int32,
    )
    state = lot_state_at_end_of_day(lh, D).collect()
    assert state.columns == [
        "lot_id", "product_id", "step_seq", "step_id", "lot_status", "qty", "event_ts"
    ]  # fmt: skip
    assert state["step_seq"].dtype == pl.Int64 and state["qty"].dtype == pl.Int64
    assert state.to_dicts() == [
        {"lot_id": "A", "product_id": "P1", "step_seq": 2, "step_id": "S20",
         "lot_status": "WAIT", "qty": 24, "event_ts": kst(10, 23, 59, 59)},
        {"lot_id": "B", "product_id": "P1", "step_seq": 1, "step_id": "S10",
         "lot_status": "RUN", "qty": 25, "event_ts": kst(10, 10)},
        {"lot_id": "T", "product_id": "P1", "step_seq": 1, "step_id": "S10",
         "lot_status": "RUN", "qty": 25, "event_ts": kst(10, 12)},
        {"lot_id": "U", "product_id": "P1", "step_seq": 1, "step_id": "S10",
         "lot_status": "HOLD", "qty": 25, "event_ts": kst(10, 12)},
    ]  # fmt: skip


ABNORMAL_HISTORY = [
    # H1: HOLD at 15:30Z of D-1 = 00:30+09:00 of D, released at 08:00: abnormal (event in W(D))
    (1, "H1", "P1", "CREATE", kst(8), 1, 25),
    (2, "H1", "P1", "HOLD", utc(9, 15, 30), 1, 25),
    (3, "H1", "P1", "RELEASE", kst(10, 8), 1, 25),
    # H2: held before D and still held: abnormal (state HOLD)
    (4, "H2", "P1", "CREATE", kst(7), 1, 25),
    (5, "H2", "P1", "HOLD", kst(9, 10), 1, 25),
    # H3: held and released before D: normal
    (6, "H3", "P1", "CREATE", kst(7), 1, 25),
    (7, "H3", "P1", "HOLD", kst(8, 10), 1, 25),
    (8, "H3", "P1", "RELEASE", kst(9, 23, 59, 59), 1, 25),
    # H4: HOLD at 14:59:59Z of D-1 = 23:59:59+09:00 of D-1, released on D: normal
    (9, "H4", "P1", "CREATE", kst(7), 1, 25),
    (10, "H4", "P1", "HOLD", utc(9, 14, 59, 59), 1, 25),
    (11, "H4", "P1", "RELEASE", kst(10, 1), 1, 25),
    # H5: HOLD at 23:59:59+09:00 of D: abnormal
    (12, "H5", "P1", "CREATE", kst(7), 1, 25),
    (13, "H5", "P1", "HOLD", kst(10, 23, 59, 59), 1, 25),
    # H6: HOLD at 00:00:00+09:00 of D+1: normal for D
    (14, "H6", "P1", "CREATE", kst(7), 1, 25),
    (15, "H6", "P1", "HOLD", kst(11, 0), 1, 25),
    # S1: scrapped during D: abnormal
    (16, "S1", "P1", "CREATE", kst(7), 1, 25),
    (17, "S1", "P1", "SCRAP", kst(10, 14), 1, 0),
    # S2: scrapped days before D (only in the whole table, not in D's extract): abnormal
    (18, "S2", "P1", "CREATE", kst(1), 1, 25),
    (19, "S2", "P1", "SCRAP", kst(5), 1, 0),
    # N: normal
    (20, "N", "P1", "CREATE", kst(10, 9), 1, 25),
]


def test_abnormal_lots() -> None:
    out = abnormal_lots(history(ABNORMAL_HISTORY), D).collect()
    assert out.columns == ["lot_id"]
    assert out["lot_id"].to_list() == ["H1", "H2", "H5", "S1", "S2"]


# aps_input_wip ------------------------------------------------------------------------------

WIP_HISTORY = [
    # W1 spans days: at S20 since D-1, tracked in on D; its D+1 00:00 TRACK_OUT is not D's
    (1, "W1", "P1", "CREATE", kst(8), 1, 25),
    (2, "W1", "P1", "TRACK_IN", kst(9, 10), 1, 25),
    (3, "W1", "P1", "TRACK_OUT", kst(9, 10, 40), 2, 25),
    (4, "W1", "P1", "TRACK_IN", kst(10, 9), 2, 25),
    (5, "W1", "P1", "TRACK_OUT", kst(11, 0), 3, 25),
    # W2: partial scrap at S10 (25 -> 24), arrives at S20 at 23:59:59 of D
    (6, "W2", "P1", "CREATE", kst(9, 12), 1, 25),
    (7, "W2", "P1", "TRACK_IN", kst(10, 23), 1, 25),
    (8, "W2", "P1", "TRACK_OUT", kst(10, 23, 59, 59), 2, 24),
    # W3: reached S30, REWORK sends it back to S10, WAIT
    (9, "W3", "P1", "CREATE", kst(6), 1, 20),
    (10, "W3", "P1", "TRACK_OUT", kst(8), 2, 20),
    (11, "W3", "P1", "TRACK_OUT", kst(9), 3, 20),
    (12, "W3", "P1", "REWORK", kst(10, 11), 1, 20),
    # W4: RUN at S10
    (13, "W4", "P1", "CREATE", kst(10, 8), 1, 25),
    (14, "W4", "P1", "TRACK_IN", kst(10, 9, 30), 1, 25),
    # W5: on HOLD at S20: left out
    (15, "W5", "P1", "CREATE", kst(8), 1, 25),
    (16, "W5", "P1", "TRACK_OUT", kst(9), 2, 25),
    (17, "W5", "P1", "HOLD", kst(10, 3), 2, 25),
    # W6: COMPLETED on D: left out
    (18, "W6", "P1", "CREATE", kst(5), 1, 25),
    (19, "W6", "P1", "COMPLETE", kst(10, 7), 3, 25),
    # W7: SCRAPPED on D: left out
    (20, "W7", "P1", "CREATE", kst(5), 1, 25),
    (21, "W7", "P1", "SCRAP", kst(10, 7), 1, 0),
    # W8: P2 created on D at T10
    (22, "W8", "P2", "CREATE", kst(10, 20), 1, 50),
    # W9: created at the start of D+1: left out
    (23, "W9", "P2", "CREATE", kst(11, 0), 1, 50),
    # W10: held and released during D: abnormal, but WIP is by state: WAIT at S20, counts
    (24, "W10", "P1", "CREATE", kst(8), 1, 25),
    (25, "W10", "P1", "TRACK_OUT", kst(9), 2, 25),
    (26, "W10", "P1", "HOLD", kst(10, 2), 2, 25),
    (27, "W10", "P1", "RELEASE", kst(10, 5), 2, 25),
    # W11: completed days before D (whole table only): left out
    (28, "W11", "P1", "CREATE", kst(1), 1, 25),
    (29, "W11", "P1", "COMPLETE", kst(5), 3, 25),
]


def test_wip() -> None:
    out = aps_input_wip(history(WIP_HISTORY, pl.Int32), PRODUCT, ROUTE_STEP, D).collect()
    assert out.schema == pl.Schema(WIP_SCHEMA)
    assert out.to_dicts() == [
        # S10: W3 WAIT 20 + W4 RUN 25 -> 2 lots, 45; RUN: W4 -> 1 lot, 25
        {"base_date": D, "product_id": "P1", "step_id": "S10", "process_id": "PHOTO",
         "wip_lots": 2, "wip_qty": 45, "run_lots": 1, "run_qty": 25},
        # S20: W1 RUN 25 + W2 WAIT 24 + W10 WAIT 25 -> 3 lots, 74; RUN: W1 -> 1 lot, 25
        {"base_date": D, "product_id": "P1", "step_id": "S20", "process_id": "ETCH",
         "wip_lots": 3, "wip_qty": 74, "run_lots": 1, "run_qty": 25},
        # T10: W8 WAIT 50
        {"base_date": D, "product_id": "P2", "step_id": "T10", "process_id": "PHOTO",
         "wip_lots": 1, "wip_qty": 50, "run_lots": 0, "run_qty": 0},
    ]  # fmt: skip
    assert validate(APS_INPUT_WIP, out).ok


def test_wip_same_on_the_days_extract_as_on_the_whole_table() -> None:
    start, end = business_day_window(D)
    whole = history(WIP_HISTORY)
    # D's extract: events before the end of W(D) of lots not terminal before the start of W(D)
    terminal_before = (
        lot_state_at_end_of_day(whole.filter(pl.col("event_ts") < start), D - timedelta(days=1))
        .filter(pl.col("lot_status").is_in(["COMPLETED", "SCRAPPED"]))
        .select("lot_id")
    )
    extract = whole.filter(pl.col("event_ts") < end).join(terminal_before, on="lot_id", how="anti")
    assert "W11" not in extract.collect()["lot_id"].to_list()
    a = aps_input_wip(whole, PRODUCT, ROUTE_STEP, D).collect()
    b = aps_input_wip(extract, PRODUCT, ROUTE_STEP, D).collect()
    assert a.equals(b)


def test_wip_step_missing_from_the_route_is_null_and_fails_validation() -> None:
    # route R1 has no step 4: the lot is kept with a null process_id, which validation rejects
    lh = history([(1, "Q", "P1", "CREATE", kst(10, 1), 4, 25)])
    out = aps_input_wip(lh, PRODUCT, ROUTE_STEP, D).collect()
    assert out.drop("base_date").rows() == [("P1", "S40", None, 1, 25, 0, 0)]
    assert validate(APS_INPUT_WIP, out).counts == {("process_id", "not_nullable"): 1}


# aps_input_cycle_time -----------------------------------------------------------------------

CT_HISTORY = [
    # CH: held and released during D: abnormal, its passes are left out
    (1, "CH", "P1", "CREATE", kst(9), 1, 25),
    (2, "CH", "P1", "HOLD", kst(10, 11), 2, 25),
    (3, "CH", "P1", "RELEASE", kst(10, 12), 2, 25),
    # CS: scrapped later on D: abnormal
    (4, "CS", "P1", "CREATE", kst(9), 1, 25),
    (5, "CS", "P1", "SCRAP", kst(10, 13), 2, 0),
]
CT_RESULTS = [
    # (P1, S10), std 30
    # C1: 23:00:00 -> 23:59:59 of D = 3599 s = 3599/60 min; partial scrap 25 -> 24 + 1
    (1, "C1", "P1", 1, "PHOTO", kst(10, 23), kst(10, 23, 59, 59), 25, 24, 1, False),
    # C2: 14:50Z -> 15:30Z of D-1 (00:30+09:00 of D) = 40 min: counts for D
    (2, "C2", "P1", 1, "PHOTO", utc(9, 14, 50), utc(9, 15, 30), 25, 25, 0, False),
    # C3: tracked out at 00:00:00+09:00 of D+1: not D's
    (3, "C3", "P1", 1, "PHOTO", kst(10, 23), kst(11, 0), 25, 25, 0, False),
    # C4: tracked out at 14:59:59Z of D-1 = 23:59:59+09:00 of D-1: not D's
    (4, "C4", "P1", 1, "PHOTO", utc(9, 14), utc(9, 14, 59, 59), 25, 25, 0, False),
    # C5: a rework pass: left out
    (5, "C5", "P1", 1, "PHOTO", kst(10, 8), kst(10, 9, 40), 25, 25, 0, True),
    # CH and CS: abnormal lots: left out
    (6, "CH", "P1", 1, "PHOTO", kst(10, 9), kst(10, 10), 25, 25, 0, False),
    (7, "CS", "P1", 1, "PHOTO", kst(10, 8), kst(10, 9), 25, 25, 0, False),
    # (P2, T10), std 60: four passes of 10, 20, 40, 70 min
    (8, "E1", "P2", 1, "PHOTO", kst(10, 1), kst(10, 1, 10), 50, 50, 0, False),
    (9, "E2", "P2", 1, "PHOTO", kst(10, 2), kst(10, 2, 20), 50, 50, 0, False),
    (10, "E3", "P2", 1, "PHOTO", kst(10, 3), kst(10, 3, 40), 50, 50, 0, False),
    (11, "E4", "P2", 1, "PHOTO", kst(10, 4), kst(10, 5, 10), 50, 48, 2, False),
]


def test_cycle_time() -> None:
    out = aps_input_cycle_time(
        results(CT_RESULTS), history(CT_HISTORY), PRODUCT, ROUTE_STEP, D
    ).collect()
    assert out.schema == pl.Schema(CT_SCHEMA)
    assert out.height == 2
    p1, p2 = out.to_dicts()
    # P1/S10: C1 (3599/60 min) and C2 (40 min)
    assert {k: p1[k] for k in list(CT_SCHEMA)[:8]} == {
        "base_date": D, "product_id": "P1", "step_id": "S10", "process_id": "PHOTO",
        "passes": 2, "in_qty": 50, "out_qty": 49, "scrap_qty": 1,  # 25+25, 24+25, 1+0
    }  # fmt: skip
    # avg = (3599/60 + 40) / 2 = (3599 + 2400) / 120 = 5999/120 = 49.991666...
    assert p1["ct_avg_min"] == pytest.approx(5999 / 120, rel=1e-15)
    # two values: p50 = 40 + 0.5 * (3599/60 - 40) = 5999/120
    assert p1["ct_p50_min"] == pytest.approx(5999 / 120, rel=1e-15)
    # p90 = 40 + 0.9 * (3599/60 - 40) = 40 + 0.9 * 1199/60 = 40 + 17.985 = 57.985
    assert p1["ct_p90_min"] == pytest.approx(57.985, rel=1e-15)
    assert p1["std_cycle_min"] == 30.0
    # ratio = (5999/120) / 30 = 5999/3600 = 1.666388...
    assert p1["ct_ratio"] == pytest.approx(5999 / 3600, rel=1e-15)
    # P2/T10: [10, 20, 40, 70], an even count
    assert p2 == {
        "base_date": D, "product_id": "P2", "step_id": "T10", "process_id": "PHOTO",
        "passes": 4, "in_qty": 200, "out_qty": 198, "scrap_qty": 2,  # 4*50; 3*50+48; 2
        "ct_avg_min": 35.0,  # 140 / 4
        "ct_p50_min": 30.0,  # position 0.5*3 = 1.5: 20 + 0.5*(40-20)
        # position 0.9*3 = 2.7: 40 + 0.7*(70-40); 0.9*3 is 2.7000000000000002 in binary
        "ct_p90_min": pytest.approx(61.0, rel=1e-15),
        "std_cycle_min": 60.0,  # route R2, step 1
        "ct_ratio": pytest.approx(35 / 60, rel=1e-15),
    }  # fmt: skip
    assert validate(APS_INPUT_CYCLE_TIME, out).ok


def test_cycle_time_std_follows_the_products_route() -> None:
    # P1 and P2 both do PHOTO at step 1, but R1 says 30 min and R2 60 min: 45 / std
    res = results(
        [
            (1, "X", "P1", 1, "PHOTO", kst(10, 1), kst(10, 1, 45), 5, 5, 0, False),
            (2, "Y", "P2", 1, "PHOTO", kst(10, 1), kst(10, 1, 45), 5, 5, 0, False),
        ]
    )
    out = aps_input_cycle_time(res, history([]), PRODUCT, ROUTE_STEP, D).collect()
    assert out.select("product_id", "std_cycle_min", "ct_ratio").rows() == [
        ("P1", 30.0, 1.5),  # 45 / 30
        ("P2", 60.0, 0.75),  # 45 / 60
    ]


# aps_input_lead_time ------------------------------------------------------------------------

LT_HISTORY = [
    # K1: created 03-07 10:00, completes 03-10 16:30 (+09:00): 3 d 6.5 h = 78.5 h, qty 24
    (1, "K1", "P1", "CREATE", kst(7, 10), 1, 25),
    (2, "K1", "P1", "TRACK_OUT", kst(8, 10), 2, 24),
    (3, "K1", "P1", "COMPLETE", kst(10, 16, 30), 3, 24),
    # K2: created 03-09 08:00+09:00, completes 15:30Z of 03-09 = 03-10 00:30+09:00: 16.5 h
    (4, "K2", "P1", "CREATE", kst(9, 8), 1, 25),
    (5, "K2", "P1", "COMPLETE", utc(9, 15, 30), 3, 25),
    # K3: created 03-08 00:00, completes 03-10 23:59:59: 71 h + 3599/3600 h
    (6, "K3", "P1", "CREATE", kst(8), 1, 25),
    (7, "K3", "P1", "COMPLETE", kst(10, 23, 59, 59), 3, 25),
    # K4: completes at 00:00:00+09:00 of D+1: not D's
    (8, "K4", "P1", "CREATE", kst(8), 1, 25),
    (9, "K4", "P1", "COMPLETE", kst(11, 0), 3, 25),
    # K5: held and released on D, then completes: abnormal, left out
    (10, "K5", "P1", "CREATE", kst(8), 1, 25),
    (11, "K5", "P1", "HOLD", kst(10, 3), 3, 25),
    (12, "K5", "P1", "RELEASE", kst(10, 4), 3, 25),
    (13, "K5", "P1", "COMPLETE", kst(10, 12), 3, 25),
    # K6: P2, created 03-01 00:00, completes 03-10 12:00: 9 d 12 h = 228 h, qty 50
    (14, "K6", "P2", "CREATE", kst(1), 1, 50),
    (15, "K6", "P2", "COMPLETE", kst(10, 12), 1, 50),
    # K7: completed on D-1: not D's
    (16, "K7", "P1", "CREATE", kst(8), 1, 25),
    (17, "K7", "P1", "COMPLETE", kst(9, 23), 3, 25),
]


def test_lead_time() -> None:
    out = aps_input_lead_time(history(LT_HISTORY), D).collect()
    assert out.schema == pl.Schema(LT_SCHEMA)
    p1, p2 = out.to_dicts()
    k3 = 71 + 3599 / 3600  # 71.99972...
    # P1: K1, K2, K3; qty 24 + 25 + 25 = 74; sorted leads [16.5, k3, 78.5]
    assert {k: p1[k] for k in list(LT_SCHEMA)[:4]} == {
        "base_date": D, "product_id": "P1", "completed_lots": 3, "completed_qty": 74,
    }  # fmt: skip
    assert p1["lt_avg_h"] == pytest.approx((16.5 + k3 + 78.5) / 3, rel=1e-15)
    assert p1["lt_p50_h"] == pytest.approx(k3, rel=1e-15)  # middle of three
    # position 0.9*2 = 1.8: k3 + 0.8 * (78.5 - k3)
    assert p1["lt_p90_h"] == pytest.approx(k3 + 0.8 * (78.5 - k3), rel=1e-15)
    assert p2 == {
        "base_date": D, "product_id": "P2", "completed_lots": 1, "completed_qty": 50,
        "lt_avg_h": 228.0, "lt_p50_h": 228.0, "lt_p90_h": 228.0,
    }  # fmt: skip
    assert validate(APS_INPUT_LEAD_TIME, out).ok


def test_lead_time_lot_completes_once_at_its_first_complete() -> None:
    # impossible by contract (COMPLETE is terminal); the lot counts once, at its first COMPLETE
    lh = history(
        [
            # Z: first COMPLETE on D at 06:00, qty 25: lead 03-09 00:00 -> 03-10 06:00 = 30 h
            (1, "Z", "P1", "CREATE", kst(9), 1, 25),
            (2, "Z", "P1", "COMPLETE", kst(10, 6), 3, 25),
            (3, "Z", "P1", "COMPLETE", kst(10, 9), 3, 20),
            # Y: first COMPLETE on D-1: belongs to D-1, not to D
            (4, "Y", "P1", "CREATE", kst(8), 1, 25),
            (5, "Y", "P1", "COMPLETE", kst(9, 12), 3, 25),
            (6, "Y", "P1", "COMPLETE", kst(10, 12), 3, 25),
        ]
    )
    out = aps_input_lead_time(lh, D).collect()
    assert out.drop("base_date").rows() == [("P1", 1, 25, 30.0, 30.0, 30.0)]
    # Y on D-1: 03-08 00:00 -> 03-09 12:00 = 36 h
    prev = aps_input_lead_time(lh, D - timedelta(days=1)).collect()
    assert prev.drop("base_date").rows() == [("P1", 1, 25, 36.0, 36.0, 36.0)]


def test_lead_time_without_create_is_null_and_fails_validation() -> None:
    lh = history(
        [
            # M1 has no CREATE in the input; M2 is complete: 03-09 10:00 -> 03-10 10:00 = 24 h
            (1, "M1", "P1", "COMPLETE", kst(10, 9), 3, 25),
            (2, "M2", "P1", "CREATE", kst(9, 10), 1, 25),
            (3, "M2", "P1", "COMPLETE", kst(10, 10), 3, 20),
        ]
    )
    out = aps_input_lead_time(lh, D).collect()
    # both lots count (2, 25 + 20), but no lead time from the one lot that has it
    assert out.drop("base_date").rows() == [("P1", 2, 45, None, None, None)]
    report = validate(APS_INPUT_LEAD_TIME, out)
    assert report.counts == {
        ("lt_avg_h", "not_nullable"): 1,
        ("lt_p50_h", "not_nullable"): 1,
        ("lt_p90_h", "not_nullable"): 1,
    }


# Empty day ------------------------------------------------------------------------------------


def test_empty_day_gives_empty_frames_with_the_exact_schema() -> None:
    lh, pr = history([]), results([])
    wip = aps_input_wip(lh, PRODUCT, ROUTE_STEP, D).collect()
    ct = aps_input_cycle_time(pr, lh, PRODUCT, ROUTE_STEP, D).collect()
    lt = aps_input_lead_time(lh, D).collect()
    for df, schema in ((wip, WIP_SCHEMA), (ct, CT_SCHEMA), (lt, LT_SCHEMA)):
        assert df.height == 0
        assert df.schema == pl.Schema(schema)
    assert abnormal_lots(lh, D).collect().height == 0
    # a day before any event of a non-empty history is just as empty
    early = date(2026, 2, 1)
    assert aps_input_wip(history(WIP_HISTORY), PRODUCT, ROUTE_STEP, early).collect().height == 0
    assert aps_input_lead_time(history(LT_HISTORY), early).collect().schema == pl.Schema(LT_SCHEMA)


# Declaration and validation -------------------------------------------------------------------


def test_declarations_match_the_contract() -> None:
    assert APS_INPUT_WIP.polars_schema == pl.Schema(WIP_SCHEMA)
    assert APS_INPUT_CYCLE_TIME.polars_schema == pl.Schema(CT_SCHEMA)
    assert APS_INPUT_LEAD_TIME.polars_schema == pl.Schema(LT_SCHEMA)
    assert APS_INPUT_WIP.grain == ("base_date", "product_id", "step_id")
    assert APS_INPUT_LEAD_TIME.grain == ("base_date", "product_id")
    ddl = create_table_sql(APS_INPUT_CYCLE_TIME, "aps")
    assert ddl.startswith('create table if not exists "aps"."aps_input_cycle_time" (')
    assert '"passes" bigint not null' in ddl
    assert '"ct_p90_min" double precision not null' in ddl
    assert '"base_date" date not null' in ddl and '"step_id" text not null' in ddl
    assert 'primary key ("base_date", "product_id", "step_id")' in ddl
    assert ddl.endswith(') partition by list ("base_date")')  # a partition per day


def wip_frame(rows: list[tuple]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=WIP_SCHEMA, orient="row")


def test_validation_counts_null_key_and_negative_count() -> None:
    df = wip_frame(
        [
            (D, None, "S10", "PHOTO", 2, 45, 1, 25),  # null key
            (D, "P1", "S20", "ETCH", 3, 74, -2, 25),  # negative count
            (D, "P2", "T10", "PHOTO", 1, 50, 0, 0),  # fine
            (D, "P2", "T20", "DEPO", 1, 50, -1, 0),  # negative count
        ]
    )
    report = validate(APS_INPUT_WIP, df)
    assert not report.ok and report.rows == 4
    assert report.counts == {
        ("product_id", "not_nullable"): 1,
        ("run_lots", "greater_than_or_equal_to(0)"): 2,
    }
    by_rule = {(v.column, v.rule): v.samples for v in report.violations}
    assert by_rule[("product_id", "not_nullable")] == [df.row(0, named=True)]
    assert [s["step_id"] for s in by_rule[("run_lots", "greater_than_or_equal_to(0)")]] == [
        "S20", "T20"
    ]  # fmt: skip
    with pytest.raises(ValidationError, match=r"aps_input_wip: 3 violations in 4 rows") as err:
        report.raise_if_failed()
    assert "run_lots greater_than_or_equal_to(0): 2" in str(err.value)
    assert err.value.report is report


def test_validation_catches_p50_above_p90_and_limits_samples() -> None:
    good = (D, "P1", "S10", "PHOTO", 2, 50, 49, 1, 50.0, 50.0, 58.0, 30.0, 50.0 / 30.0)
    bad1 = (D, "P1", "S20", "ETCH", 2, 50, 50, 0, 50.0, 59.0, 58.0, 45.5, 50.0 / 45.5)
    bad2 = (D, "P1", "S30", "CLEAN", 1, 50, 50, 0, 20.0, 21.0, 20.5, 20.0, 1.0)
    bad3 = (D, "P2", "T10", "PHOTO", 1, 50, 50, 0, 20.0, 21.0, 20.5, 60.0, 20.0 / 60.0)
    df = pl.DataFrame([good, bad1, bad2, bad3], schema=CT_SCHEMA, orient="row")
    report = validate(APS_INPUT_CYCLE_TIME, df, max_samples=2)
    assert report.counts == {("ct_p50_min,ct_p90_min", "ct_p50_min<=ct_p90_min"): 3}
    assert report.samples == [df.row(1, named=True), df.row(2, named=True)]  # first 2 of 3


def test_validation_catches_duplicate_grain_and_wrong_dtype() -> None:
    df = wip_frame([(D, "P1", "S10", "PHOTO", 1, 25, 0, 0), (D, "P1", "S10", "PHOTO", 1, 20, 0, 0)])
    report = validate(APS_INPUT_WIP, df)
    assert report.counts == {("base_date,product_id,step_id", "multiple_fields_uniqueness"): 2}
    report = validate(APS_INPUT_WIP, df[:1].with_columns(pl.col("wip_qty").cast(pl.Int32)))
    assert report.counts == {("wip_qty", "dtype('Int64')"): 1}
