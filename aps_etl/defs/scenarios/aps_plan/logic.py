"""Scenario 2, plan snapshots: each COMPLETED plan run copied as it is, plus the diff
against the previous COMPLETED run.

Every function filters by `run_id` itself, so it gives the same answer on the run's extract
and on the whole source table. Outputs carry exactly the columns of the declarations in
`schema`, in declared order and dtypes, rows sorted by grain.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any, cast

import polars as pl

from aps_etl.lib.output_tables import OutputTable

from .schema import APS_PLAN_DIFF, APS_PLAN_EQUIPMENT, APS_PLAN_PRODUCTION, CHANGE_TYPES

Frame = pl.LazyFrame | pl.DataFrame

COMPLETED = "COMPLETED"
_DIFF_KEY = ["plan_date", "product_id", "step_id"]


def _finish(lf: pl.LazyFrame, table: OutputTable) -> pl.LazyFrame:
    """Declared columns in declared order and dtypes, rows sorted by grain."""
    return lf.select(pl.col(c.name).cast(c.dtype) for c in table.columns).sort(list(table.grain))


def _run_row(plan_run: Frame, run_id: str) -> dict[str, Any]:
    """The run's plan_run row; a clear error when the run is unknown (or, impossible by the
    primary key, listed twice)."""
    rows = (
        plan_run.lazy()
        .filter(pl.col("run_id") == run_id)
        .select("run_id", "base_date", "created_at", "status")
        .collect()
    )
    if rows.height != 1:
        found = "not found" if rows.height == 0 else f"listed {rows.height} times"
        raise ValueError(f"plan run {run_id!r} {found} in plan_run")
    return rows.row(0, named=True)


def completed_run_base_date(plan_run: Frame, run_id: str) -> date:
    """base_date of a COMPLETED run. RUNNING and FAILED runs never become partitions, so a
    snapshot of one is refused with a clear error rather than written and later immutable."""
    row = _run_row(plan_run, run_id)
    if row["status"] != COMPLETED:
        raise ValueError(
            f"plan run {run_id!r} is {row['status']}, not {COMPLETED}: only completed runs "
            "are plans and become snapshot partitions"
        )
    return row["base_date"]


def previous_run(plan_run: Frame, run_id: str) -> str | None:
    """The COMPLETED run with the greatest created_at strictly before this run's created_at;
    ties on created_at go to the greatest run_id. None when there is none.

    run_id order is Polars' string order (Unicode code points, as PostgreSQL's "C"
    collation). This run's own status does not matter here; an unknown run_id is an error.
    """
    created_at = _run_row(plan_run, run_id)["created_at"]
    prev = (
        plan_run.lazy()
        .filter((pl.col("status") == COMPLETED) & (pl.col("created_at") < created_at))
        .select("run_id", "created_at")
        .sort(["created_at", "run_id"], descending=True)
        .head(1)
        .collect()
    )
    return prev["run_id"][0] if prev.height else None


def _snapshot(source: Frame, plan_run: Frame, run_id: str, table: OutputTable) -> pl.LazyFrame:
    base_date = completed_run_base_date(plan_run, run_id)
    lf = (
        source.lazy()
        .filter(pl.col("run_id") == run_id)
        .with_columns(pl.lit(base_date, dtype=pl.Date).alias("base_date"))
    )
    return _finish(lf, table)


def aps_plan_production(plan_production: Frame, plan_run: Frame, run_id: str) -> pl.LazyFrame:
    """All plan_production rows of the run, every source column, plus the run's base_date.
    Columns: run_id, base_date, plan_date, product_id, step_id, process_id, planned_qty."""
    return _snapshot(plan_production, plan_run, run_id, APS_PLAN_PRODUCTION)


def aps_plan_equipment(plan_equipment: Frame, plan_run: Frame, run_id: str) -> pl.LazyFrame:
    """All plan_equipment rows of the run, every source column, plus the run's base_date.
    Columns: run_id, base_date, plan_date, equipment_id, planned_qty, planned_load_min."""
    return _snapshot(plan_equipment, plan_run, run_id, APS_PLAN_EQUIPMENT)


def _plan_dates(plan_production: Frame, run_id: str) -> pl.LazyFrame:
    return plan_production.lazy().filter(pl.col("run_id") == run_id).select("plan_date").unique()


def _compared_dates(current: Frame, previous: Frame, run_id: str, prev_run_id: str) -> pl.LazyFrame:
    return _plan_dates(current, run_id).join(
        _plan_dates(previous, prev_run_id), on="plan_date", how="inner"
    )


def compared_plan_dates(
    current: Frame, previous: Frame, run_id: str, prev_run_id: str | None
) -> list[date]:
    """The plan dates the diff compares: those in both runs' plan_production, ascending.
    Empty without a previous run."""
    if prev_run_id is None:
        return []
    dates = _compared_dates(current, previous, run_id, prev_run_id).sort("plan_date").collect()
    return dates["plan_date"].to_list()


def aps_plan_diff(
    current: Frame, previous: Frame, run_id: str, prev_run_id: str | None
) -> pl.LazyFrame:
    """plan_production of `run_id` against that of `prev_run_id`, per (plan_date, product_id,
    step_id), on the plan dates present in both runs only.

    `current` / `previous` are plan_production rows (the source's columns, or the
    aps_plan_production snapshot); each is filtered to its own run, so both may be the whole
    source table. ADDED: key only in this run; REMOVED: only in the previous run; CHANGED:
    in both with a different planned_qty. Unchanged keys give no row. No previous run: no
    rows (an empty frame with the declared schema).
    """
    if prev_run_id is None:
        return APS_PLAN_DIFF.empty().lazy()
    dates = _compared_dates(current, previous, run_id, prev_run_id)

    def side(frame: Frame, rid: str, qty: str, seen: str) -> pl.LazyFrame:
        return (
            frame.lazy()
            .filter(pl.col("run_id") == rid)
            .join(dates, on="plan_date", how="semi")
            .select(*_DIFF_KEY, pl.col("planned_qty").cast(pl.Int64).alias(qty))
            # presence of the key, not a null qty, says on which side a key is
            .with_columns(pl.lit(True).alias(seen))
        )

    new_in, prev_in = pl.col("_in_new"), pl.col("_in_prev")
    lf = (
        side(current, run_id, "new_qty", "_in_new")
        .join(
            side(previous, prev_run_id, "prev_qty", "_in_prev"),
            on=_DIFF_KEY,
            how="full",
            coalesce=True,
        )
        .with_columns(
            change_type=pl.when(prev_in.is_null())
            .then(pl.lit("ADDED"))
            .when(new_in.is_null())
            .then(pl.lit("REMOVED"))
            # ne_missing: a null planned_qty (impossible by contract) against a number is a
            # change, which the diff's validation rule then rejects, never a silent drop
            .when(pl.col("new_qty").ne_missing(pl.col("prev_qty")))
            .then(pl.lit("CHANGED"))
        )
        .filter(pl.col("change_type").is_not_null())
        .with_columns(
            pl.lit(run_id, dtype=pl.String).alias("run_id"),
            pl.lit(prev_run_id, dtype=pl.String).alias("prev_run_id"),
        )
    )
    return _finish(lf, APS_PLAN_DIFF)


def diff_summary(
    diff: pl.DataFrame, compared_dates: Sequence[date] | None = None
) -> dict[str, Any]:
    """An auditor's summary of one run's aps_plan_diff, JSON-ready for asset metadata.

    - rows, ADDED, REMOVED, CHANGED: row count and rows per change_type (0 when none)
    - net_qty_change: sum(new_qty) - sum(prev_qty) over the diff, an absent side counting 0;
      equal to the run's total planned_qty minus the previous run's on the compared dates
    - added_qty / removed_qty: planned_qty of the ADDED / REMOVED keys
    - plan_dates_with_changes: ISO dates that have at least one diff row
    - compared_plan_dates: ISO dates compared (only when `compared_dates` is given, e.g. from
      `compared_plan_dates`; the diff alone cannot tell a compared date without changes)
    """
    counts = dict(diff.group_by("change_type").len().iter_rows())
    # new_qty and prev_qty are Int64: their sums are ints
    new = cast(int, diff["new_qty"].fill_null(0).sum())
    prev = cast(int, diff["prev_qty"].fill_null(0).sum())
    kind = diff["change_type"]
    summary: dict[str, Any] = {
        "rows": diff.height,
        **{t: int(counts.get(t, 0)) for t in CHANGE_TYPES},
        "net_qty_change": int(new - prev),
        "added_qty": int(diff.filter(kind == "ADDED")["new_qty"].sum()),
        "removed_qty": int(diff.filter(kind == "REMOVED")["prev_qty"].sum()),
        "plan_dates_with_changes": [
            d.isoformat() for d in diff["plan_date"].unique().sort().to_list()
        ],
    }
    if compared_dates is not None:
        summary["compared_plan_dates"] = [d.isoformat() for d in sorted(compared_dates)]
    return summary
