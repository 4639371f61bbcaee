"""APS plan runs and their results (plan_run, plan_production, plan_equipment).

Three runs a day (about 05:00, 13:00 and 21:00 plant time). The morning and afternoon runs
re-plan from today, the night run plans from tomorrow; horizons are 3..7 days. About one
run in ten FAILED, the very last one is still RUNNING, and those two kinds carry only a
partial result (the first plan date), which the pipeline must ignore. The night run before
start_date is re-run with the same created_at (run_id suffix ``-R``) to exercise the
contract's tie rule (greatest run_id wins).

Each run perturbs a shared base plan independently: ~35% of quantities change and ~6% of
keys flip presence, so consecutive runs differ by CHANGED, ADDED and REMOVED keys.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from .factory import Factory, decimal
from .horizon import DAY_S, Horizon

RUN_HOURS = (5, 13, 21)
P_FAILED = 0.1
P_QTY_CHANGE = 0.35
P_KEY_FLIP = 0.06
P_EQUIPMENT_MISSING = 0.04  # no plan_equipment row: planned utilisation 0


def plan_tables(
    rng: np.random.Generator, factory: Factory, horizon: Horizon, lots_per_day: float
) -> dict[str, pa.Table]:
    runs = _runs(rng, horizon)
    return {
        "plan_run": runs.table,
        "plan_production": _production(rng, factory, horizon, runs, lots_per_day),
        "plan_equipment": _equipment(rng, factory, horizon, runs),
    }


@dataclass(frozen=True)
class Runs:
    table: pa.Table
    base: np.ndarray  # base_date as a day offset from horizon.first_date
    length: np.ndarray  # horizon_days
    partial: np.ndarray  # not COMPLETED: only the first plan date was written


def _runs(rng: np.random.Generator, horizon: Horizon) -> Runs:
    ids: list[str] = []
    created: list[int] = []
    base: list[int] = []  # day offset from horizon.first_date
    length: list[int] = []
    for day in range(horizon.total_days):
        date = horizon.first_date + dt.timedelta(days=day)
        for hour in RUN_HOURS:
            minute, second = int(rng.integers(0, 50)), int(rng.integers(0, 60))
            ids.append(f"APS-{date:%Y%m%d}-{hour:02d}{minute:02d}")
            created.append(day * DAY_S + hour * 3600 + minute * 60 + second)
            base.append(day + (1 if hour >= 21 else 0))
            length.append(int(rng.integers(3, 8)))
            if day == horizon.warmup_days - 1 and hour == RUN_HOURS[-1]:
                ids.append(ids[-1] + "-R")  # re-run, same created_at
                created.append(created[-1])
                base.append(base[-1])
                length.append(length[-1])
    n = len(ids)
    status = np.where(rng.random(n) < P_FAILED, "FAILED", "COMPLETED").astype(object)
    tie = [i for i, r in enumerate(ids) if r.endswith("-R")]
    for i in tie:
        status[i - 1 : i + 1] = "COMPLETED"
    if "FAILED" not in status[:-1]:
        status[1] = "FAILED"
    status[-1] = "RUNNING"
    first = horizon.first_date.toordinal() - dt.date(1970, 1, 1).toordinal()
    table = pa.table(
        {
            "run_id": pa.array(ids, pa.string()),
            "base_date": pa.array(np.array(base, dtype=np.int32) + first, pa.date32()),
            "horizon_days": pa.array(length, pa.int32()),
            "created_at": horizon.timestamps(np.array(created)),
            "status": pa.array(status.tolist(), pa.string()),
        }
    )
    partial = status != "COMPLETED"
    return Runs(table, np.array(base), np.array(length), partial)


def _run_dates(runs: Runs) -> tuple[np.ndarray, np.ndarray]:
    """(run index, day offset) per plan date; unfinished runs only wrote their first date."""
    n_dates = np.where(runs.partial, 1, runs.length)
    run = np.repeat(np.arange(len(n_dates)), n_dates)
    within = np.arange(len(run)) - np.repeat(np.cumsum(n_dates) - n_dates, n_dates)
    return run, runs.base[run] + within


def _date_array(horizon: Horizon, day: np.ndarray) -> pa.Array:
    first = horizon.first_date.toordinal() - dt.date(1970, 1, 1).toordinal()
    return pa.array((day + first).astype(np.int32), pa.date32())


def _production(
    rng: np.random.Generator, factory: Factory, horizon: Horizon, runs: Runs, lots_per_day: float
) -> pa.Table:
    run, day = _run_dates(runs)
    n_days = int(day.max()) + 1
    n_steps = len(factory.step_id)
    # Base plan per (date, product): whole lots at the product's release rate; each step
    # expects those lots less a small yield loss along the route.
    rate = lots_per_day * factory.product_share
    lots = rng.poisson(rate, size=(n_days, len(rate)))
    product = factory.step_product
    yield_ = 0.995 ** (factory.step_seq - 1)
    base_qty = np.round(lots[:, product] * factory.lot_size[product] * yield_).astype(np.int64)
    base_present = rng.random((n_days, n_steps)) >= P_KEY_FLIP
    # One row per (run date, step); each run perturbs the base on its own.
    r = np.repeat(run, n_steps)
    d = np.repeat(day, n_steps)
    s = np.tile(np.arange(n_steps), len(run))
    change = rng.random(len(r)) < P_QTY_CHANGE
    factor = np.where(change, rng.uniform(0.7, 1.3, size=len(r)), 1.0)
    qty = np.round(base_qty[d, s] * factor).astype(np.int64)
    present = base_present[d, s] ^ (rng.random(len(r)) < P_KEY_FLIP)
    r, d, s, qty = r[present], d[present], s[present], qty[present]
    return pa.table(
        {
            "run_id": runs.table["run_id"].take(pa.array(r)),
            "plan_date": _date_array(horizon, d),
            "product_id": pa.array(factory.product_id, pa.string()).take(pa.array(product[s])),
            "step_id": pa.array(factory.step_id, pa.string()).take(pa.array(s)),
            "process_id": pa.array(factory.step_process, pa.string()).take(pa.array(s)),
            "planned_qty": pa.array(qty, pa.int32()),
        }
    )


def _equipment(
    rng: np.random.Generator, factory: Factory, horizon: Horizon, runs: Runs
) -> pa.Table:
    run, day = _run_dates(runs)
    eq = np.flatnonzero(factory.active)
    r = np.repeat(run, len(eq))
    d = np.repeat(day, len(eq))
    e = np.tile(eq, len(run))
    # Planned load around the group's designed utilisation; the hot ones reach a full day.
    share = rng.uniform(0.8, 1.25, size=len(factory.equipment_id))
    load = factory.group_util[factory.equipment_group[e]] * share[e] * 1440.0
    load = np.clip(np.round(load * rng.uniform(0.9, 1.1, size=len(e)), 2), 0.0, 1440.0)
    load = np.where(factory.capacity[e] > 0, load, 0.0)
    qty = np.round(load / 60.0 * factory.capacity[e]).astype(np.int64)
    keep = rng.random(len(e)) >= P_EQUIPMENT_MISSING
    return pa.table(
        {
            "run_id": runs.table["run_id"].take(pa.array(r[keep])),
            "plan_date": _date_array(horizon, d[keep]),
            "equipment_id": pa.array(factory.equipment_id, pa.string()).take(pa.array(e[keep])),
            "planned_qty": pa.array(qty[keep], pa.int32()),
            "planned_load_min": decimal(load[keep]),
        }
    )
