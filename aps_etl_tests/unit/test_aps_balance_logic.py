"""Scenario 4 business logic (EVEN / parallel-group balance) on small hand-computed fixtures.

Business day D = 2026-03-10, W(D) = [2026-03-10 00:00+09:00, 2026-03-11 00:00+09:00)
                                   = [2026-03-09 15:00Z,     2026-03-10 15:00Z).
Expected numbers are written out by hand; the comments show the arithmetic. Where a value is
not exact in binary, the expected value is the Python float expression written beside it
(one correctly rounded operation on exactly representable operands).
"""

from __future__ import annotations

import random
import struct
from datetime import UTC, date, datetime, timedelta, timezone

import polars as pl
import pytest

from aps_etl.defs.scenarios.aps_balance import (
    APS_BALANCE_MONITOR,
    APS_INPUT_BALANCE_CORRECTION,
    TABLES,
    aps_balance_monitor,
    aps_input_balance_correction,
)
from aps_etl.lib.output_tables import validate
from aps_etl.lib.warehouse.target import create_table_sql

D = date(2026, 3, 10)
KST = timezone(timedelta(hours=9))
TS = pl.Datetime("us", "UTC")


def kst(day: int, h: int = 0, m: int = 0, s: int = 0) -> datetime:
    """A March 2026 plant-local time, as UTC."""
    return datetime(2026, 3, day, h, m, s, tzinfo=KST).astimezone(UTC)


# Output schemas written out by hand (not read from the declaration under test).
MONITOR_SCHEMA = {
    "base_date": pl.Date,
    "equipment_id": pl.String,
    "eqp_group_id": pl.String,
    "out_qty": pl.Int64,
    "available_h": pl.Float64,
    "capacity_qty": pl.Float64,
    "load_ratio": pl.Float64,
    "group_mean_ratio": pl.Float64,
    "deviation": pl.Float64,
    "threshold": pl.Float64,
    "flagged": pl.Boolean,
}
CORRECTION_SCHEMA = {
    "base_date": pl.Date,
    "equipment_id": pl.String,
    "eqp_group_id": pl.String,
    "capacity_share": pl.Float64,
    "actual_share": pl.Float64,
    "share_correction": pl.Float64,
}

# Fixture builders (the source's dtypes) -------------------------------------------------------


def equipment(rows: list[tuple]) -> pl.LazyFrame:
    """rows: (equipment_id, eqp_group_id, capacity_per_hour, active)."""
    data = [(e, g, f"PROC_{g}", c, a) for e, g, c, a in rows]
    schema = {
        "equipment_id": pl.String,
        "eqp_group_id": pl.String,
        "process_id": pl.String,
        "capacity_per_hour": pl.Float64,
        "active": pl.Boolean,
    }
    return pl.DataFrame(data, schema=schema, orient="row").lazy()


def events(rows: list[tuple]) -> pl.LazyFrame:
    """rows: (event_id, equipment_id, state, start_ts, end_ts or None)."""
    data = [(i, e, st, s, t, "R01" if st in ("DOWN", "PM") else None, s) for i, e, st, s, t in rows]
    schema = {
        "event_id": pl.Int64,
        "equipment_id": pl.String,
        "state": pl.String,
        "start_ts": TS,
        "end_ts": TS,
        "reason_code": pl.String,
        "updated_at": TS,
    }
    return pl.DataFrame(data, schema=schema, orient="row").lazy()


def results(rows: list[tuple]) -> pl.LazyFrame:
    """rows: (result_id, equipment_id, track_out_ts, out_qty, is_rework); in = out, 1 h pass."""
    data = [
        (r, f"L{r}", "P1", 1, "S10", "PHOTO", e, t - timedelta(hours=1), t, q, q, 0, rw, t)
        for r, e, t, q, rw in rows
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


EQUIPMENT = equipment(
    [
        # GA: three active members and an inactive one (left out, not in the group's numbers)
        ("EA1", "GA", 10.0, True),
        ("EA2", "GA", 10.0, True),
        ("EA3", "GA", 12.5, True),
        ("EA4", "GA", 10.0, False),
        # GB: a capacity-0 tool among two normal ones
        ("EB1", "GB", 0.0, True),
        ("EB2", "GB", 8.0, True),
        ("EB3", "GB", 5.0, True),
        # GC: one active member (the other inactive): not a parallel group, left out
        ("EC1", "GC", 10.0, True),
        ("EC2", "GC", 10.0, False),
        # GD: no active member: left out
        ("ED1", "GD", 10.0, False),
        ("ED2", "GD", 10.0, False),
        # GE: every member without capacity for D (capacity 0, or DOWN all day), no output
        ("EE1", "GE", 0.0, True),
        ("EE2", "GE", 5.0, True),
        # GF: ratios 0.1, 0.2, 0.3, whose float sum depends on the order of addition
        ("EF1", "GF", 10.0, True),
        ("EF2", "GF", 10.0, True),
        ("EF3", "GF", 10.0, True),
    ]
)

EVENTS = events(
    [
        # EA1: DOWN 03-09 22:00 -> 03-10 02:00 crosses midnight: 2 h in W(D)
        (1, "EA1", "DOWN", kst(9, 22), kst(10, 2)),
        (2, "EA1", "RUN", kst(10, 2), kst(10, 20)),  # RUN and IDLE do not reduce availability
        (3, "EA1", "IDLE", kst(10, 20), None),
        # EA2: open PM from 18:00: runs to the end of W(D): 6 h
        (4, "EA2", "PM", kst(10, 18), None),
        # EA3: a DOWN ending exactly at the start of W(D) and one starting exactly at its end
        (5, "EA3", "DOWN", kst(9, 20), kst(10, 0)),
        (6, "EA3", "DOWN", kst(11, 0), None),
        # EA4 (inactive): DOWN all day, irrelevant
        (7, "EA4", "DOWN", kst(9), None),
        # EB2: DOWN 06:00-12:00 (6 h) and PM 13:00-13:30 (0.5 h): 6.5 h
        (8, "EB2", "DOWN", kst(10, 6), kst(10, 12)),
        (9, "EB2", "PM", kst(10, 13), kst(10, 13, 30)),
        # EE2: DOWN from 03-09 10:00 to 03-11 03:00: all 24 h of W(D)
        (10, "EE2", "DOWN", kst(9, 10), kst(11, 3)),
    ]
)

RESULTS = results(
    [
        # EA1: 50 at 00:00:00 (start of W(D), in) + 50 at 23:59:59 (in) + rework 10 = 110
        (1, "EA1", kst(10, 0), 50, False),
        (2, "EA1", kst(10, 23, 59, 59), 50, False),
        (3, "EA1", kst(10, 12), 10, True),
        (4, "EA1", kst(11, 0), 1000, False),  # 00:00:00 of D+1: not D's
        (5, "EA1", kst(9, 23, 59, 59), 1000, False),  # 23:59:59 of D-1: not D's
        # EA2: 20 + 25 = 45
        (6, "EA2", kst(10, 9), 20, False),
        (7, "EA2", kst(10, 10), 25, True),
        # EA3: 225
        (8, "EA3", kst(10, 11), 225, False),
        # EA4 (inactive): left out
        (9, "EA4", kst(10, 11), 500, False),
        # EB1 (capacity 0) still reports output
        (10, "EB1", kst(10, 11), 7, False),
        (11, "EB2", kst(10, 11), 105, False),
        (12, "EB3", kst(10, 11), 30, False),
        # EC1 (group of one): left out
        (13, "EC1", kst(10, 11), 40, False),
        (14, "EF1", kst(10, 11), 24, False),
        (15, "EF2", kst(10, 11), 48, False),
        (16, "EF3", kst(10, 11), 72, False),
    ]
)


def monitor(threshold: float | None = None) -> pl.DataFrame:
    kwargs = {} if threshold is None else {"threshold": threshold}
    return aps_balance_monitor(RESULTS, EVENTS, EQUIPMENT, D, **kwargs).collect()


# aps_balance_monitor --------------------------------------------------------------------------


def test_monitor() -> None:
    out = monitor()
    assert out.schema == pl.Schema(MONITOR_SCHEMA)
    assert out.drop("base_date", "threshold").rows() == [
        # GA: capacities 10*22 = 220, 10*18 = 180, 12.5*24 = 300
        #     ratios 110/220 = 0.5, 45/180 = 0.25, 225/300 = 0.75; mean 1.5/3 = 0.5
        ("EA1", "GA", 110, 22.0, 220.0, 0.5, 0.5, 0.0, False),
        ("EA2", "GA", 45, 18.0, 180.0, 0.25, 0.5, -0.25, True),  # |-0.25| > 0.20
        ("EA3", "GA", 225, 24.0, 300.0, 0.75, 0.5, 0.25, True),
        # GB: EB1 0*24 = 0: no ratio, not flagged, not in the mean
        #     EB2 24 - 6.5 = 17.5 h, 8*17.5 = 140, 105/140 = 0.75; EB3 5*24 = 120, 30/120 = 0.25
        #     mean (0.75 + 0.25)/2 = 0.5
        ("EB1", "GB", 7, 24.0, 0.0, None, 0.5, None, False),
        ("EB2", "GB", 105, 17.5, 140.0, 0.75, 0.5, 0.25, True),
        ("EB3", "GB", 30, 24.0, 120.0, 0.25, 0.5, -0.25, True),
        # GE: no ratio in the group: mean and deviations null, nobody flagged
        ("EE1", "GE", 0, 24.0, 0.0, None, None, None, False),
        ("EE2", "GE", 0, 0.0, 0.0, None, None, None, False),
        # GF: 24/240, 48/240, 72/240 are the doubles nearest 0.1, 0.2, 0.3. Their exact sum
        #     0.1000000000000000055511151231257827 + 0.2000000000000000111022302462515654
        #   + 0.2999999999999999888977697537484346 = 0.6000000000000000055511151231257827,
        #     / 3 = 0.20000000000000000185..., nearest double 0.2 (0.2000000000000000111...;
        #     the double below, 0.19999999999999998335..., is farther). Float sums are not:
        #     (0.1 + 0.2 + 0.3)/3 = 0.20000000000000004, (0.3 + 0.2 + 0.1)/3 = 0.19999999999999998
        ("EF1", "GF", 24, 24.0, 240.0, 0.1, 0.2, 0.1 - 0.2, False),  # = -0.1 exactly
        ("EF2", "GF", 48, 24.0, 240.0, 0.2, 0.2, 0.0, False),
        ("EF3", "GF", 72, 24.0, 240.0, 0.3, 0.2, 0.3 - 0.2, False),  # 0.09999999999999998
    ]
    assert out["base_date"].unique().to_list() == [D]
    assert out["threshold"].unique().to_list() == [0.20]
    assert validate(APS_BALANCE_MONITOR, out).ok


def test_flag_exactly_at_the_threshold_is_not_raised() -> None:
    # deviations of GA and GB are exactly -0.25 / +0.25 (binary-exact): 0.25 > 0.25 is false
    out = monitor(threshold=0.25)
    assert out["flagged"].to_list() == [False] * 11
    assert out["threshold"].unique().to_list() == [0.25]
    # just below the deviation: the four members at +-0.25 are flagged
    out = monitor(threshold=0.249)
    assert out.filter("flagged")["equipment_id"].to_list() == ["EA2", "EA3", "EB2", "EB3"]
    # threshold 0: every non-zero deviation (EF1 and EF3 too), never a null ratio
    out = monitor(threshold=0.0)
    assert out.filter("flagged")["equipment_id"].to_list() == [
        "EA2", "EA3", "EB2", "EB3", "EF1", "EF3"
    ]  # fmt: skip
    assert validate(APS_BALANCE_MONITOR, out).ok


@pytest.mark.parametrize("bad", [-0.1, float("nan"), float("inf"), True])
def test_invalid_threshold_is_a_clear_error(bad: float) -> None:
    with pytest.raises(ValueError, match="balance threshold must be a finite number >= 0"):
        aps_balance_monitor(RESULTS, EVENTS, EQUIPMENT, D, threshold=bad)


def test_group_of_one_and_inactive_equipment_are_left_out() -> None:
    ids = monitor()["equipment_id"].to_list()
    assert not {"EA4", "EC1", "EC2", "ED1", "ED2"} & set(ids)


def test_a_day_without_results_or_events() -> None:
    # D+1 = 03-11: EA1's 1000 at 00:00:00 counts; the open PM of EA2 (from 03-10 18:00) covers
    # all of W(D+1): 0 h; EA3's DOWN open from 03-11 00:00: 0 h; EE2's DOWN until 03:00: 21 h
    out = aps_balance_monitor(RESULTS, EVENTS, EQUIPMENT, D + timedelta(days=1)).collect()
    got = {r["equipment_id"]: (r["out_qty"], r["available_h"]) for r in out.to_dicts()}
    assert got == {
        "EA1": (1000, 24.0),  # the DOWN ended on 03-10; the IDLE does not count
        "EA2": (0, 0.0),
        "EA3": (0, 0.0),
        "EB1": (0, 24.0), "EB2": (0, 24.0), "EB3": (0, 24.0),
        "EE1": (0, 24.0),
        "EE2": (0, 21.0),  # 24 - 3
        "EF1": (0, 24.0), "EF2": (0, 24.0), "EF3": (0, 24.0),
    }  # fmt: skip
    assert out["base_date"].unique().to_list() == [D + timedelta(days=1)]


def test_available_hours_are_exact_for_odd_interval_lengths() -> None:
    # DOWN 10:00:00 -> 10:00:01 (1 s) and PM 12:00 -> 12:20 (1/3 h)
    eq = equipment([("X1", "G", 6.0, True), ("X2", "G", 6.0, True)])
    ev = events(
        [
            (1, "X1", "DOWN", kst(10, 10), kst(10, 10, 0, 1)),
            (2, "X1", "PM", kst(10, 12), kst(10, 12, 20)),
        ]
    )
    out = aps_balance_monitor(results([]), ev, eq, D).collect()
    # unavailable 1 + 1200 = 1201 s; available (86400 - 1201) / 3600 h = 85199 / 3600
    assert out["available_h"].to_list() == [85199 / 3600, 24.0]
    assert out["capacity_qty"].to_list() == [6.0 * (85199 / 3600), 144.0]
    # no output in the group: ratios 0.0, mean 0.0, deviations 0.0
    assert out["load_ratio"].to_list() == [0.0, 0.0]
    assert out["flagged"].to_list() == [False, False]


def test_nan_capacity_does_not_crash_and_fails_validation() -> None:
    # PostgreSQL numeric admits 'NaN' and NaN >= 0 there, so the source check lets it through
    eq = equipment([("X1", "G", float("nan"), True), ("X2", "G", 10.0, True)])
    res = results([(1, "X1", kst(10, 9), 5, False), (2, "X2", kst(10, 9), 120, False)])
    out = aps_balance_monitor(res, events([]), eq, D).collect()
    assert out["load_ratio"][1] == 0.5  # X2: 120 / 240
    report = validate(APS_BALANCE_MONITOR, out)
    assert report.counts[("capacity_qty", "not_nullable")] == 1  # pandera: NaN counts as null
    cor = aps_input_balance_correction(out).collect()
    # the group's capacity total is NaN, so both capacity shares and corrections are NaN,
    # which fail "<= 1" (NaN compares false) in the nullable columns
    assert validate(APS_INPUT_BALANCE_CORRECTION, cor).counts == {
        ("capacity_share", "less_than_or_equal_to(1)"): 2,
        ("share_correction", "less_than_or_equal_to(1)"): 2,
    }


# aps_input_balance_correction ----------------------------------------------------------------


def test_correction() -> None:
    out = aps_input_balance_correction(monitor()).collect()
    assert out.schema == pl.Schema(CORRECTION_SCHEMA)
    assert out["base_date"].unique().to_list() == [D]
    assert out.drop("base_date").rows() == [
        # GA: capacity total 220 + 180 + 300 = 700; out total 110 + 45 + 225 = 380
        ("EA1", "GA", 220 / 700, 110 / 380, 220 / 700 - 110 / 380),
        ("EA2", "GA", 180 / 700, 45 / 380, 180 / 700 - 45 / 380),
        ("EA3", "GA", 300 / 700, 225 / 380, 300 / 700 - 225 / 380),
        # GB: capacity total 0 + 140 + 120 = 260; out total 7 + 105 + 30 = 142
        ("EB1", "GB", 0.0, 7 / 142, 0.0 - 7 / 142),
        ("EB2", "GB", 140 / 260, 105 / 142, 140 / 260 - 105 / 142),
        ("EB3", "GB", 120 / 260, 30 / 142, 120 / 260 - 30 / 142),
        # GE: both totals 0: every share null, and so the correction
        ("EE1", "GE", None, None, None),
        ("EE2", "GE", None, None, None),
        # GF: capacity total 720, each 240/720; out total 24 + 48 + 72 = 144
        ("EF1", "GF", 240 / 720, 24 / 144, 240 / 720 - 24 / 144),
        ("EF2", "GF", 240 / 720, 48 / 144, 240 / 720 - 48 / 144),
        ("EF3", "GF", 240 / 720, 72 / 144, 240 / 720 - 72 / 144),
    ]
    assert validate(APS_INPUT_BALANCE_CORRECTION, out).ok


def test_correction_zero_total_on_one_side_only() -> None:
    # capacity 0 all round but output recorded; and capacity but no output
    mon = pl.DataFrame(
        [
            (D, "A1", "GA", 3, 0.0),
            (D, "A2", "GA", 1, 0.0),
            (D, "B1", "GB", 0, 100.0),
            (D, "B2", "GB", 0, 300.0),
        ],
        schema=["base_date", "equipment_id", "eqp_group_id", "out_qty", "capacity_qty"],
        orient="row",
    )
    out = aps_input_balance_correction(mon).collect()
    assert out.drop("base_date").rows() == [
        ("A1", "GA", None, 0.75, None),  # 3 / (3 + 1)
        ("A2", "GA", None, 0.25, None),  # 1 / 4
        ("B1", "GB", 0.25, None, None),  # 100 / 400
        ("B2", "GB", 0.75, None, None),  # 300 / 400
    ]


def test_correction_capacity_total_is_exact() -> None:
    # capacities 0.1, 0.2, 0.3: their exact sum 0.6000000000000000055511151231257827 rounds
    # to the double 0.6 (0.59999999999999997779...), which is exactly 2 * 0.3, so the third
    # share is exactly 0.5. Left-to-right float addition gives 0.6000000000000001 and a share
    # of 0.4999999999999999.
    mon = pl.DataFrame(
        {
            "base_date": [D] * 3,
            "equipment_id": ["X1", "X2", "X3"],
            "eqp_group_id": ["G"] * 3,
            "out_qty": [1, 1, 2],
            "capacity_qty": [0.1, 0.2, 0.3],
        }
    )
    out = aps_input_balance_correction(mon).collect()
    assert out["capacity_share"].to_list() == [0.1 / 0.6, 0.2 / 0.6, 0.5]
    assert out["actual_share"].to_list() == [0.25, 0.25, 0.5]  # 1/4, 1/4, 2/4
    assert out["share_correction"][2] == 0.0


def test_correction_groups_per_day() -> None:
    # two days in one frame: totals are per (base_date, eqp_group_id)
    mon = pl.DataFrame(
        [
            (D, "A1", "GA", 1, 10.0),
            (D, "A2", "GA", 3, 30.0),
            (D + timedelta(days=1), "A1", "GA", 1, 10.0),
            (D + timedelta(days=1), "A2", "GA", 1, 10.0),
        ],
        schema=["base_date", "equipment_id", "eqp_group_id", "out_qty", "capacity_qty"],
        orient="row",
    )
    out = aps_input_balance_correction(mon).collect()
    # D: 10/40, 1/4; 30/40, 3/4 -> corrections 0. D+1: 10/20, 1/2
    assert out.drop("base_date", "eqp_group_id").rows() == [
        ("A1", 0.25, 0.25, 0.0),
        ("A2", 0.75, 0.75, 0.0),
        ("A1", 0.5, 0.5, 0.0),
        ("A2", 0.5, 0.5, 0.0),
    ]


# Determinism and empty inputs -----------------------------------------------------------------


def _shuffled(lf: pl.LazyFrame, rng: random.Random) -> pl.LazyFrame:
    df = lf.collect()
    order = list(range(df.height))
    rng.shuffle(order)
    return df[order].lazy()


def _bits(values: pl.Series) -> list[bytes | None]:
    return [None if v is None else struct.pack(">d", v) for v in values.to_list()]


def test_reruns_on_shuffled_inputs_are_bit_identical() -> None:
    first_monitor = monitor()
    first_correction = aps_input_balance_correction(first_monitor).collect()
    rng = random.Random(20260310)
    for _ in range(30):
        mon = aps_balance_monitor(
            _shuffled(RESULTS, rng), _shuffled(EVENTS, rng), _shuffled(EQUIPMENT, rng), D
        ).collect()
        cor = aps_input_balance_correction(_shuffled(mon.lazy(), rng)).collect()
        # equals() compares floats by value; the bits make "identical" literal
        for a, b in ((mon, first_monitor), (cor, first_correction)):
            assert a.equals(b)
            for col in a.columns:
                if a[col].dtype == pl.Float64:
                    assert _bits(a[col]) == _bits(b[col]), col


def test_empty_inputs_give_empty_frames_with_the_exact_schema() -> None:
    mon = aps_balance_monitor(results([]), events([]), equipment([]), D).collect()
    assert mon.height == 0 and mon.schema == pl.Schema(MONITOR_SCHEMA)
    cor = aps_input_balance_correction(mon).collect()
    assert cor.height == 0 and cor.schema == pl.Schema(CORRECTION_SCHEMA)
    # equipment without results or events: every active member of a real group at 24 h
    mon = aps_balance_monitor(results([]), events([]), EQUIPMENT, D).collect()
    assert mon.height == 11
    assert mon["out_qty"].unique().to_list() == [0]
    assert mon["available_h"].unique().to_list() == [24.0]
    cor = aps_input_balance_correction(mon).collect()
    assert cor["actual_share"].null_count() == 11  # every group's out total is 0


# Declaration and validation -------------------------------------------------------------------


def test_declarations_match_the_contract() -> None:
    assert APS_BALANCE_MONITOR.polars_schema == pl.Schema(MONITOR_SCHEMA)
    assert APS_INPUT_BALANCE_CORRECTION.polars_schema == pl.Schema(CORRECTION_SCHEMA)
    assert set(TABLES) == {"aps_balance_monitor", "aps_input_balance_correction"}
    for table in TABLES.values():
        assert table.grain == ("base_date", "equipment_id")
        assert table.partition_column == "base_date"
    ddl = create_table_sql(APS_BALANCE_MONITOR, "aps")
    assert '"load_ratio" double precision,' in ddl  # nullable
    assert '"capacity_qty" double precision not null' in ddl
    assert '"flagged" boolean not null' in ddl
    assert '"out_qty" bigint not null' in ddl
    assert 'primary key ("base_date", "equipment_id")' in ddl


def test_validation_catches_range_violations_and_null_keys() -> None:
    good = (D, "E1", "G", 10, 24.0, 240.0, 0.5, 0.5, 0.0, 0.2, False)
    df = pl.DataFrame(
        [
            good,
            (D, None, "G", 10, 24.0, 240.0, 0.5, 0.5, 0.0, 0.2, False),  # null key
            (D, "E3", "G", 10, 25.0, 250.0, 0.5, 0.5, 0.0, 0.2, False),  # 25 h in a day
            (D, "E4", "G", 10, -1.0, -10.0, 0.5, 0.5, 0.0, 0.2, False),  # negative hours
            (D, "E5", "G", 10, 24.0, 240.0, 0.9, 0.5, 0.4, 0.2, False),  # should be flagged
        ],
        schema=MONITOR_SCHEMA,
        orient="row",
    )
    report = validate(APS_BALANCE_MONITOR, df)
    assert report.counts == {
        ("equipment_id", "not_nullable"): 1,
        ("available_h", "greater_than_or_equal_to(0)"): 1,
        ("available_h", "less_than_or_equal_to(24)"): 1,
        ("capacity_qty", "greater_than_or_equal_to(0)"): 1,
        ("flagged,deviation,threshold", "flagged=abs(deviation)>threshold"): 1,
    }
    df = pl.DataFrame(
        [
            (D, "E1", "G", 1.5, 0.5, 1.0),  # a share above 1
            (D, "E2", None, -0.5, 0.5, -1.0),  # null group, a negative share
            (D, "E3", "G", None, None, None),  # null shares are allowed
        ],
        schema=CORRECTION_SCHEMA,
        orient="row",
    )
    report = validate(APS_INPUT_BALANCE_CORRECTION, df)
    assert report.counts == {
        ("eqp_group_id", "not_nullable"): 1,
        ("capacity_share", "greater_than_or_equal_to(0)"): 1,
        ("capacity_share", "less_than_or_equal_to(1)"): 1,
    }
