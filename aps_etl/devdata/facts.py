"""Turns a simulation trace into the MES fact tables as Arrow tables.

Everything at or after the snapshot instant (``horizon.t_end``) is cut: a lot running at the
snapshot has its TRACK_IN but no TRACK_OUT nor process_result row, and the equipment
interval that contains the snapshot is the open one (end_ts null).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from .factory import Factory
from .horizon import DAY_S, Horizon
from .simulate import (
    EVENT_TYPES,
    HOLD_REASONS,
    IDLE,
    LOT_STATUSES,
    REASONS,
    RUN,
    STATES,
    STATUS_OF_EVENT,
    Trace,
)

P_CORRECTION = 0.02  # share of rows updated again later (corrections), not only at insert


def labels(values: Sequence[str], idx: np.ndarray) -> pa.Array:
    """String column from codes; code -1 becomes null."""
    idx = np.asarray(idx, dtype=np.int64)
    return pa.array(values, pa.string()).take(pa.array(idx, mask=idx < 0))


def lot_ids(trace: Trace, horizon: Horizon) -> list[str]:
    """LOT-<yymmdd created, plant time>-<nnnn>; lots are indexed in creation order."""
    day = trace.lots.release // DAY_S
    n_in_day = np.arange(len(day)) - np.searchsorted(day, day) + 1
    text = {
        int(d): (horizon.first_date + dt.timedelta(days=int(d))).strftime("%y%m%d")
        for d in np.unique(day)
    }
    return [f"LOT-{text[d]}-{n:04d}" for d, n in zip(day.tolist(), n_in_day.tolist(), strict=True)]


def _updated_at(
    rng: np.random.Generator, ts: np.ndarray, horizon: Horizon, base_lag: np.ndarray
) -> pa.Array:
    """Row last touched at ``ts + base_lag``; a few are corrected hours later, but never
    after the snapshot."""
    late = rng.random(len(ts)) < P_CORRECTION
    lag = base_lag + np.where(late, rng.integers(3600, 30 * 3600, size=len(ts)), 0)
    return horizon.timestamps(np.maximum(ts, np.minimum(ts + lag, horizon.t_end - 1)))


def lot_history(
    rng: np.random.Generator, trace: Trace, factory: Factory, horizon: Horizon, ids: list[str]
) -> pa.Table:
    keep = trace.ev_ts < horizon.t_end
    n_all = len(trace.ev_ts)
    order = np.lexsort((np.arange(n_all)[keep], trace.ev_lot[keep], trace.ev_ts[keep]))
    sel = np.flatnonzero(keep)[order]  # event_id follows (event_ts, lot, emission order)
    lot = trace.ev_lot[sel]
    kind = trace.ev_type[sel]
    ts = trace.ev_ts[sel]
    product = trace.lots.product[lot]
    flat_step = factory.route_offset[product] + trace.ev_step[sel]
    return pa.table(
        {
            "event_id": pa.array(np.arange(1, len(sel) + 1, dtype=np.int64)),
            "lot_id": labels(ids, lot),
            "product_id": labels(factory.product_id, product),
            "event_type": labels(EVENT_TYPES, kind),
            "event_ts": horizon.timestamps(ts),
            "step_seq": pa.array(trace.ev_step[sel] + 1, pa.int32()),
            "step_id": labels(factory.step_id, flat_step),
            "equipment_id": labels(factory.equipment_id, trace.ev_eq[sel]),
            "lot_status": labels(LOT_STATUSES, STATUS_OF_EVENT[kind]),
            "qty": pa.array(trace.ev_qty[sel], pa.int32()),
            "hold_reason": labels(HOLD_REASONS, trace.ev_reason[sel]),
            "updated_at": _updated_at(rng, ts, horizon, np.zeros(len(sel), dtype=np.int64)),
        }
    )


def process_result(
    rng: np.random.Generator, trace: Trace, factory: Factory, horizon: Horizon, ids: list[str]
) -> pa.Table:
    keep = trace.ps_out < horizon.t_end  # written at TRACK_OUT / COMPLETE
    n_all = len(trace.ps_out)
    order = np.lexsort((np.arange(n_all)[keep], trace.ps_lot[keep], trace.ps_out[keep]))
    sel = np.flatnonzero(keep)[order]
    lot = trace.ps_lot[sel]
    product = trace.lots.product[lot]
    flat_step = factory.route_offset[product] + trace.ps_step[sel]
    in_qty, out_qty = trace.ps_in_qty[sel], trace.ps_out_qty[sel]
    out_ts = trace.ps_out[sel]
    return pa.table(
        {
            "result_id": pa.array(np.arange(1, len(sel) + 1, dtype=np.int64)),
            "lot_id": labels(ids, lot),
            "product_id": labels(factory.product_id, product),
            "step_seq": pa.array(trace.ps_step[sel] + 1, pa.int32()),
            "step_id": labels(factory.step_id, flat_step),
            "process_id": labels(factory.step_process, flat_step),
            "equipment_id": labels(factory.equipment_id, trace.ps_eq[sel]),
            "track_in_ts": horizon.timestamps(trace.ps_in[sel]),
            "track_out_ts": horizon.timestamps(out_ts),
            "in_qty": pa.array(in_qty, pa.int32()),
            "out_qty": pa.array(out_qty, pa.int32()),
            "scrap_qty": pa.array(in_qty - out_qty, pa.int32()),
            "is_rework": pa.array(trace.ps_rework[sel], pa.bool_()),
            "updated_at": _updated_at(rng, out_ts, horizon, rng.integers(0, 6, size=len(sel))),
        }
    )


def equipment_event(
    rng: np.random.Generator, trace: Trace, factory: Factory, horizon: Horizon
) -> pa.Table:
    """Contiguous RUN/IDLE/DOWN/PM intervals per equipment from t0; the last one is open."""
    t_end = horizon.t_end
    n_eq = len(factory.equipment_id)
    # RUN: processing intervals, back-to-back lots merged into one interval.
    busy = trace.ps_in < t_end
    eq, s, e = trace.ps_eq[busy], trace.ps_in[busy], trace.ps_out[busy]
    o = np.lexsort((s, eq))
    eq, s, e = eq[o], s[o], e[o]
    new = np.ones(len(s), dtype=bool)
    new[1:] = (eq[1:] != eq[:-1]) | (s[1:] != e[:-1])
    starts = np.flatnonzero(new)
    run_eq, run_s = eq[starts], s[starts]
    run_e = np.maximum.reduceat(e, starts) if len(starts) else e[:0]
    # DOWN / PM windows that begin before the snapshot.
    w = trace.win_start < t_end
    iv_eq = np.concatenate([run_eq, trace.win_eq[w]])
    iv_s = np.concatenate([run_s, trace.win_start[w]])
    iv_e = np.concatenate([run_e, trace.win_end[w]])
    iv_state = np.concatenate([np.full(len(run_eq), RUN), trace.win_state[w]])
    iv_reason = np.concatenate([np.full(len(run_eq), -1), trace.win_reason[w]])
    o = np.lexsort((iv_s, iv_eq))
    iv_eq, iv_s, iv_e, iv_state, iv_reason = (
        iv_eq[o], iv_s[o], iv_e[o], iv_state[o], iv_reason[o]
    )  # fmt: skip
    # IDLE fills every gap: from t0 to the first interval, between intervals, and after the
    # last interval when it ended before the snapshot.
    first = np.ones(len(iv_eq), dtype=bool)
    first[1:] = iv_eq[1:] != iv_eq[:-1]
    prev_end = np.where(first, 0, np.concatenate([[0], iv_e[:-1]]))
    gap = iv_s > prev_end
    last = np.ones(len(iv_eq), dtype=bool)
    last[:-1] = first[1:]
    tail = last & (iv_e < t_end)
    unused = np.setdiff1d(np.arange(n_eq), iv_eq)  # never ran nor went down: IDLE throughout
    all_eq = np.concatenate([iv_eq, iv_eq[gap], iv_eq[tail], unused])
    all_s = np.concatenate([iv_s, prev_end[gap], iv_e[tail], np.zeros(len(unused), np.int64)])
    all_e = np.concatenate([iv_e, iv_s[gap], np.full(tail.sum() + len(unused), t_end)])
    n_idle = gap.sum() + tail.sum() + len(unused)
    all_state = np.concatenate([iv_state, np.full(n_idle, IDLE)])
    all_reason = np.concatenate([iv_reason, np.full(n_idle, -1)])
    open_ = all_e >= t_end
    o = np.lexsort((all_eq, all_s))  # event_id in start order
    all_eq, all_s, all_e, all_state, all_reason, open_ = (
        all_eq[o], all_s[o], all_e[o], all_state[o], all_reason[o], open_[o]
    )  # fmt: skip
    # The row is rewritten when the interval closes; an open one was last touched at start.
    touched = np.where(open_, all_s, all_e)
    return pa.table(
        {
            "event_id": pa.array(np.arange(1, len(all_s) + 1, dtype=np.int64)),
            "equipment_id": labels(factory.equipment_id, all_eq),
            "state": labels(STATES, all_state),
            "start_ts": horizon.timestamps(all_s),
            "end_ts": horizon.timestamps(all_e, null_mask=open_),
            "reason_code": labels(REASONS, all_reason),
            "updated_at": _updated_at(rng, touched, horizon, rng.integers(0, 60, size=len(all_s))),
        }
    )
