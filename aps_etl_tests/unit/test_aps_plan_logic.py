"""Scenario 2 business logic (plan snapshots and plan diff) on small hand-computed fixtures.

Expected numbers are written out by hand; the comments show the arithmetic.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import polars as pl
import pytest

from aps_etl.defs.scenarios.aps_plan import (
    APS_PLAN_DIFF,
    APS_PLAN_EQUIPMENT,
    APS_PLAN_PRODUCTION,
    TABLES,
    aps_plan_diff,
    aps_plan_equipment,
    aps_plan_production,
    compared_plan_dates,
    diff_summary,
    previous_run,
)
from aps_etl.lib.output_tables import validate
from aps_etl.lib.warehouse.target import create_table_sql

KST = timezone(timedelta(hours=9))
TS = pl.Datetime("us", "UTC")


def kst(day: int, h: int = 0, m: int = 0) -> datetime:
    """A March 2026 plant-local time, as UTC."""
    return datetime(2026, 3, day, h, m, tzinfo=KST).astimezone(UTC)


def d(day: int) -> date:
    return date(2026, 3, day)


# Output schemas written out by hand (not read from the declaration under test).
PRODUCTION_SCHEMA = {
    "run_id": pl.String,
    "base_date": pl.Date,
    "plan_date": pl.Date,
    "product_id": pl.String,
    "step_id": pl.String,
    "process_id": pl.String,
    "planned_qty": pl.Int64,
}
EQUIPMENT_SCHEMA = {
    "run_id": pl.String,
    "base_date": pl.Date,
    "plan_date": pl.Date,
    "equipment_id": pl.String,
    "planned_qty": pl.Int64,
    "planned_load_min": pl.Float64,
}
DIFF_SCHEMA = {
    "run_id": pl.String,
    "plan_date": pl.Date,
    "product_id": pl.String,
    "step_id": pl.String,
    "prev_run_id": pl.String,
    "change_type": pl.String,
    "prev_qty": pl.Int64,
    "new_qty": pl.Int64,
}

# Fixture builders (the source's dtypes: integer columns Int32, numeric Float64) -------------


def plan_run(rows: list[tuple]) -> pl.LazyFrame:
    """rows: (run_id, base_date, horizon_days, created_at, status)."""
    schema = {
        "run_id": pl.String,
        "base_date": pl.Date,
        "horizon_days": pl.Int32,
        "created_at": TS,
        "status": pl.String,
    }
    return pl.DataFrame(rows, schema=schema, orient="row").lazy()


def plan_production(rows: list[tuple]) -> pl.LazyFrame:
    """rows: (run_id, plan_date, product_id, step_id, planned_qty); process_id from step."""
    schema = {
        "run_id": pl.String,
        "plan_date": pl.Date,
        "product_id": pl.String,
        "step_id": pl.String,
        "process_id": pl.String,
        "planned_qty": pl.Int32,
    }
    process = {"S10": "PHOTO", "S20": "ETCH", "T10": "PHOTO"}
    data = [(r, pd, p, s, process[s], q) for r, pd, p, s, q in rows]
    return pl.DataFrame(data, schema=schema, orient="row").lazy()


def plan_equipment(rows: list[tuple]) -> pl.LazyFrame:
    """rows: (run_id, plan_date, equipment_id, planned_qty, planned_load_min)."""
    schema = {
        "run_id": pl.String,
        "plan_date": pl.Date,
        "equipment_id": pl.String,
        "planned_qty": pl.Int32,
        "planned_load_min": pl.Float64,
    }
    return pl.DataFrame(rows, schema=schema, orient="row").lazy()


RUNS = plan_run(
    [
        # R0: the earliest run of all, but RUNNING (an abandoned execution): never a plan
        ("R0", d(6), 3, kst(7, 5), "RUNNING"),
        ("R1", d(8), 3, kst(8, 6), "COMPLETED"),
        ("R2", d(9), 3, kst(9, 6), "COMPLETED"),
        # R3A and R3B: the same created_at; R3B is the greater run_id. Listed B before A.
        ("R3B", d(10), 3, kst(10, 6), "COMPLETED"),
        ("R3A", d(10), 3, kst(10, 6), "COMPLETED"),
        # R4 RUNNING and R5 FAILED after them: ignored as previous runs
        ("R4", d(10), 3, kst(10, 8), "RUNNING"),
        ("R5", d(10), 3, kst(10, 9), "FAILED"),
        ("R6", d(10), 3, kst(10, 12), "COMPLETED"),
    ]
)


# previous_run -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("run_id", "expected"),
    [
        ("R1", None),  # the earliest COMPLETED run; R0 before it is RUNNING
        ("R2", "R1"),
        ("R3A", "R2"),  # R3B has the same created_at: not strictly before
        ("R3B", "R2"),
        ("R6", "R3B"),  # R5 FAILED, R4 RUNNING skipped; R3A/R3B tie -> greatest run_id
        ("R4", "R3B"),  # defined for any run; its own status does not matter here
        ("R0", None),
    ],
)
def test_previous_run(run_id: str, expected: str | None) -> None:
    assert previous_run(RUNS, run_id) == expected
    assert previous_run(RUNS.collect(), run_id) == expected  # DataFrames too


def test_previous_run_of_an_unknown_run_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"plan run 'R9' not found in plan_run"):
        previous_run(RUNS, "R9")


# Snapshots ----------------------------------------------------------------------------------

PRODUCTION = plan_production(
    [
        # previous run R3B: plan dates 03-10, 03-11, 03-12
        ("R3B", d(10), "P1", "S10", 100),  # plan date not in R6: not compared
        ("R3B", d(11), "P1", "S10", 100),  # R6 the same: unchanged, no row
        ("R3B", d(11), "P1", "S20", 80),  # R6 90: CHANGED
        ("R3B", d(11), "P2", "T10", 50),  # not in R6: REMOVED
        ("R3B", d(12), "P2", "T10", 60),  # R6 0: CHANGED (0 is a quantity, not absence)
        ("R3B", d(12), "P1", "S20", 0),  # R6 0: unchanged
        # this run R6: plan dates 03-11, 03-12, 03-13; listed out of order
        ("R6", d(13), "P1", "S10", 70),  # plan date not in R3B: not compared
        ("R6", d(12), "P1", "S10", 40),  # not in R3B: ADDED
        ("R6", d(11), "P1", "S20", 90),
        ("R6", d(11), "P1", "S10", 100),
        ("R6", d(12), "P2", "T10", 0),
        ("R6", d(12), "P1", "S20", 0),
        # another run in the same table: ignored
        ("R3A", d(11), "P1", "S10", 999),
    ]
)


def test_plan_production_snapshot_adds_base_date() -> None:
    out = aps_plan_production(PRODUCTION, RUNS, "R6").collect()
    assert out.schema == pl.Schema(PRODUCTION_SCHEMA)
    # all six R6 rows, base_date 03-10 of R6, sorted by (plan_date, product_id, step_id)
    assert out.rows() == [
        ("R6", d(10), d(11), "P1", "S10", "PHOTO", 100),
        ("R6", d(10), d(11), "P1", "S20", "ETCH", 90),
        ("R6", d(10), d(12), "P1", "S10", "PHOTO", 40),
        ("R6", d(10), d(12), "P1", "S20", "ETCH", 0),
        ("R6", d(10), d(12), "P2", "T10", "PHOTO", 0),
        ("R6", d(10), d(13), "P1", "S10", "PHOTO", 70),
    ]
    assert validate(APS_PLAN_PRODUCTION, out).ok


def test_plan_equipment_snapshot_adds_base_date() -> None:
    pe = plan_equipment(
        [
            ("R2", d(9), "E2", 10, 1440.0),  # a full day: the upper bound is valid
            ("R2", d(9), "E1", 0, 0.0),  # an idle tool: the lower bound is valid
            ("R2", d(10), "E1", 25, 612.25),
            ("R1", d(9), "E1", 99, 99.0),  # another run: ignored
        ]
    )
    out = aps_plan_equipment(pe, RUNS, "R2").collect()
    assert out.schema == pl.Schema(EQUIPMENT_SCHEMA)
    assert out.rows() == [
        ("R2", d(9), d(9), "E1", 0, 0.0),
        ("R2", d(9), d(9), "E2", 10, 1440.0),
        ("R2", d(9), d(10), "E1", 25, 612.25),
    ]
    assert validate(APS_PLAN_EQUIPMENT, out).ok


@pytest.mark.parametrize(
    ("run_id", "message"),
    [
        ("R4", r"plan run 'R4' is RUNNING, not COMPLETED"),
        ("R5", r"plan run 'R5' is FAILED, not COMPLETED"),
        ("R9", r"plan run 'R9' not found in plan_run"),
    ],
)
def test_snapshot_of_a_run_that_is_not_a_plan_is_refused(run_id: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        aps_plan_production(PRODUCTION, RUNS, run_id)
    with pytest.raises(ValueError, match=message):
        aps_plan_equipment(plan_equipment([]), RUNS, run_id)


def test_snapshot_of_a_run_without_rows_is_empty_with_the_schema() -> None:
    out = aps_plan_production(PRODUCTION, RUNS, "R1").collect()
    assert out.height == 0 and out.schema == pl.Schema(PRODUCTION_SCHEMA)
    out = aps_plan_equipment(plan_equipment([]), RUNS, "R1").collect()
    assert out.height == 0 and out.schema == pl.Schema(EQUIPMENT_SCHEMA)


# Diff ---------------------------------------------------------------------------------------

EXPECTED_DIFF = [
    # compared plan dates: R6 {11, 12, 13} and R3B {10, 11, 12} -> {11, 12}
    ("R6", d(11), "P1", "S20", "R3B", "CHANGED", 80, 90),
    ("R6", d(11), "P2", "T10", "R3B", "REMOVED", 50, None),
    ("R6", d(12), "P1", "S10", "R3B", "ADDED", None, 40),
    ("R6", d(12), "P2", "T10", "R3B", "CHANGED", 60, 0),
]


def test_diff_on_the_whole_source_table() -> None:
    out = aps_plan_diff(PRODUCTION, PRODUCTION, "R6", "R3B").collect()
    assert out.schema == pl.Schema(DIFF_SCHEMA)
    assert out.rows() == EXPECTED_DIFF
    assert validate(APS_PLAN_DIFF, out).ok


def test_diff_on_the_snapshots_is_the_same() -> None:
    current = aps_plan_production(PRODUCTION, RUNS, "R6")
    previous = aps_plan_production(PRODUCTION, RUNS, "R3B").collect()  # a DataFrame works too
    assert aps_plan_diff(current, previous, "R6", "R3B").collect().rows() == EXPECTED_DIFF


def test_diff_summary() -> None:
    out = aps_plan_diff(PRODUCTION, PRODUCTION, "R6", "R3B").collect()
    dates = compared_plan_dates(PRODUCTION, PRODUCTION, "R6", "R3B")
    assert dates == [d(11), d(12)]
    assert diff_summary(out, dates) == {
        "rows": 4,
        "ADDED": 1,
        "REMOVED": 1,
        "CHANGED": 2,
        # new: 90 + 0 + 40 + 0 = 130; prev: 80 + 50 + 0 + 60 = 190; 130 - 190 = -60.
        # Check: R6 on 03-11/12 = 100 + 90 + 40 + 0 + 0 = 230;
        #        R3B on 03-11/12 = 100 + 80 + 50 + 60 + 0 = 290; 230 - 290 = -60
        "net_qty_change": -60,
        "added_qty": 40,
        "removed_qty": 50,
        "plan_dates_with_changes": ["2026-03-11", "2026-03-12"],
        "compared_plan_dates": ["2026-03-11", "2026-03-12"],
    }


def test_diff_compares_only_plan_dates_in_both_runs() -> None:
    pp = plan_production(
        [
            ("A", d(10), "P1", "S10", 10),
            ("B", d(11), "P1", "S10", 10),  # another date: not compared, not ADDED
            ("B", d(12), "P2", "T10", 5),
        ]
    )
    out = aps_plan_diff(pp, pp, "B", "A").collect()
    assert out.height == 0 and out.schema == pl.Schema(DIFF_SCHEMA)
    assert compared_plan_dates(pp, pp, "B", "A") == []


def test_identical_runs_give_no_rows() -> None:
    pp = plan_production([("A", d(10), "P1", "S10", 10), ("B", d(10), "P1", "S10", 10)])
    out = aps_plan_diff(pp, pp, "B", "A").collect()
    assert out.height == 0
    assert compared_plan_dates(pp, pp, "B", "A") == [d(10)]
    summary = diff_summary(out, [d(10)])
    assert summary["rows"] == 0 and summary["net_qty_change"] == 0
    assert summary["compared_plan_dates"] == ["2026-03-10"]


def test_no_previous_run_gives_an_empty_frame_with_the_schema() -> None:
    assert previous_run(RUNS, "R1") is None
    out = aps_plan_diff(PRODUCTION, PRODUCTION, "R1", None).collect()
    assert out.height == 0 and out.schema == pl.Schema(DIFF_SCHEMA)
    assert compared_plan_dates(PRODUCTION, PRODUCTION, "R1", None) == []
    assert diff_summary(out, []) == {
        "rows": 0, "ADDED": 0, "REMOVED": 0, "CHANGED": 0, "net_qty_change": 0,
        "added_qty": 0, "removed_qty": 0, "plan_dates_with_changes": [],
        "compared_plan_dates": [],
    }  # fmt: skip
    assert "compared_plan_dates" not in diff_summary(out)  # unknown unless given


def test_empty_inputs_give_empty_frames_with_the_schema() -> None:
    empty = plan_production([])
    assert aps_plan_diff(empty, empty, "R6", "R3B").collect().schema == pl.Schema(DIFF_SCHEMA)
    assert aps_plan_production(empty, RUNS, "R6").collect().schema == pl.Schema(PRODUCTION_SCHEMA)


# Declaration and validation -----------------------------------------------------------------


def test_declarations_match_the_contract() -> None:
    assert APS_PLAN_PRODUCTION.polars_schema == pl.Schema(PRODUCTION_SCHEMA)
    assert APS_PLAN_EQUIPMENT.polars_schema == pl.Schema(EQUIPMENT_SCHEMA)
    assert APS_PLAN_DIFF.polars_schema == pl.Schema(DIFF_SCHEMA)
    assert set(TABLES) == {"aps_plan_production", "aps_plan_equipment", "aps_plan_diff"}
    for table in TABLES.values():
        assert table.partition_column == "run_id"
    assert APS_PLAN_PRODUCTION.grain == ("run_id", "plan_date", "product_id", "step_id")
    assert APS_PLAN_EQUIPMENT.grain == ("run_id", "plan_date", "equipment_id")
    assert APS_PLAN_DIFF.grain == ("run_id", "plan_date", "product_id", "step_id")
    ddl = create_table_sql(APS_PLAN_DIFF, "aps")
    assert '"prev_qty" bigint,' in ddl and '"new_qty" bigint,' in ddl  # nullable
    assert '"change_type" text not null' in ddl
    assert 'primary key ("run_id", "plan_date", "product_id", "step_id")' in ddl
    assert '"planned_load_min" double precision not null' in create_table_sql(APS_PLAN_EQUIPMENT)


def test_validation_catches_range_violations_and_null_keys() -> None:
    df = pl.DataFrame(
        [
            ("R2", d(9), d(9), "E1", 10, 1440.5),  # load above a day
            ("R2", d(9), d(9), None, 10, 100.0),  # null key
            ("R2", d(9), d(10), "E1", -1, -0.5),  # negative qty and load
            ("R2", d(9), d(10), "E2", 0, 0.0),  # fine
        ],
        schema=EQUIPMENT_SCHEMA,
        orient="row",
    )
    report = validate(APS_PLAN_EQUIPMENT, df)
    assert report.counts == {
        ("equipment_id", "not_nullable"): 1,
        ("planned_qty", "greater_than_or_equal_to(0)"): 1,
        ("planned_load_min", "greater_than_or_equal_to(0)"): 1,
        ("planned_load_min", "less_than_or_equal_to(1440)"): 1,
    }
    df = pl.DataFrame(
        [
            ("R6", d(11), "P1", "S10", "R3B", "MOVED", 1, 2),  # unknown change type
            ("R6", d(11), "P1", "S20", "R3B", "CHANGED", 5, 5),  # not a change
            ("R6", d(11), "P2", "T10", "R3B", "ADDED", 5, 7),  # ADDED with a prev_qty
            ("R6", d(12), "P1", "S10", None, "REMOVED", 5, None),  # null prev_run_id
            ("R6", d(12), "P1", "S20", "R3B", "REMOVED", -5, None),  # negative qty
        ],
        schema=DIFF_SCHEMA,
        orient="row",
    )
    report = validate(APS_PLAN_DIFF, df)
    assert report.counts == {
        ("change_type", "change_type in (ADDED,REMOVED,CHANGED)"): 1,
        ("change_type,prev_qty,new_qty", "prev_qty/new_qty match change_type"): 2,
        ("prev_run_id", "not_nullable"): 1,
        ("prev_qty", "greater_than_or_equal_to(0)"): 1,
    }
