"""Discrete-event simulation of lots flowing through the equipment of a factory.

Lots are dispatched in order of the time they become ready (a heap): each pass goes to the
member of the step's group that can start it earliest (ties: the member idle the longest),
after that member's previous lot and outside its DOWN/PM windows. An equipment therefore
runs one lot at a time, and queues form where groups are loaded. All random numbers are
drawn up front with numpy (one row of draws per lot and pass slot), so the Python loop only
does the scheduling arithmetic and the result depends on nothing but the seed.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np

from .factory import MAX_STEPS, Factory
from .horizon import DAY_S, Horizon

# lot_history event types; lot_status follows from the type (see STATUS_OF_EVENT).
EVENT_TYPES = ("CREATE", "TRACK_IN", "TRACK_OUT", "COMPLETE", "HOLD", "RELEASE", "REWORK", "SCRAP")
CREATE, TRACK_IN, TRACK_OUT, COMPLETE, HOLD, RELEASE, REWORK, SCRAP = range(8)
LOT_STATUSES = ("WAIT", "RUN", "HOLD", "SCRAPPED", "COMPLETED")
STATUS_OF_EVENT = np.array([0, 1, 0, 4, 2, 0, 0, 3], dtype=np.int64)
HOLD_REASONS = (
    "QUALITY_CHECK",
    "ENGINEERING",
    "EQUIPMENT_ISSUE",
    "SPC_OOC",
    "CUSTOMER",
    "MATERIAL",
)
# equipment states and the reason codes of DOWN / PM windows
STATES = ("RUN", "IDLE", "DOWN", "PM")
RUN, IDLE, DOWN, PM = range(4)
REASONS = ("ALARM", "PARTS_WAIT", "FACILITY", "SW_FAULT", "REPAIR", "DECOMMISSIONED",
           "PM_DAILY", "PM_WEEKLY", "PM_QUAL")  # fmt: skip
DOWN_REASONS = (0, 1, 2, 3)
PM_REASONS = (6, 7, 8)
REPAIR, DECOMMISSIONED = 4, 5

# Probabilities per decision point (after CREATE or after a TRACK_OUT).
P_PARTIAL_SCRAP = 0.03  # per pass: some units lost, the lot goes on
P_SCRAP = 0.004
P_REWORK = 0.02  # at most one REWORK per lot
P_HOLD = 0.03
P_HOLD_SCRAP = 0.12  # a HOLD that ends in SCRAP instead of RELEASE
MAX_REWORK_BACK = 2  # REWORK returns to the step just done or up to 2 before it
# Rows of pre-drawn numbers per lot: one per pass (route + repeated passes) plus one.
SLOTS = MAX_STEPS + MAX_REWORK_BACK + 1 + 1
# columns of the pre-drawn numbers
NOISE, U_PARTIAL, PARTIAL_FRAC, U_EVENT, TRANSPORT, DELAY, HOLD_DUR, U_OUTCOME, BACK, REASON = (
    range(10)
)


@dataclass(frozen=True)
class Lots:
    product: np.ndarray
    release: np.ndarray  # simulation second of CREATE
    qty: np.ndarray


@dataclass(frozen=True)
class Trace:
    lots: Lots
    # lot events, per lot in time order (global order is not sorted)
    ev_lot: np.ndarray
    ev_type: np.ndarray
    ev_ts: np.ndarray
    ev_step: np.ndarray  # 0-based step index on the lot's route, after the event
    ev_eq: np.ndarray  # -1: null
    ev_qty: np.ndarray
    ev_reason: np.ndarray  # -1: null
    # passes (one per TRACK_IN, whether or not it finished before the snapshot)
    ps_lot: np.ndarray
    ps_step: np.ndarray
    ps_eq: np.ndarray
    ps_in: np.ndarray
    ps_out: np.ndarray
    ps_in_qty: np.ndarray
    ps_out_qty: np.ndarray
    ps_rework: np.ndarray
    # DOWN / PM windows
    win_eq: np.ndarray
    win_start: np.ndarray
    win_end: np.ndarray
    win_state: np.ndarray
    win_reason: np.ndarray


def release_lots(
    rng: np.random.Generator, factory: Factory, horizon: Horizon, lots_per_line: list[int]
) -> Lots:
    """Spreads each line's lots uniformly over the whole span, warm-up days included."""
    product, release = [], []
    for line, n in enumerate(lots_per_line):
        mine = np.flatnonzero(factory.product_line == line)
        shares = factory.product_share[mine] / factory.product_share[mine].sum()
        product.append(rng.choice(mine, size=n, p=shares))
        release.append(rng.integers(0, horizon.t_end, size=n))
    prod = np.concatenate(product).astype(np.int64)
    rel = np.concatenate(release).astype(np.int64)
    order = np.lexsort((prod, rel))  # lot index follows creation time
    prod, rel = prod[order], rel[order]
    size = factory.lot_size[prod]
    # 15% of lots are split lots that start below the product's lot size.
    short = rng.random(len(prod)) < 0.15
    cut = np.floor(rng.random(len(prod)) * np.maximum(size // 3, 1)).astype(np.int64) + 1
    qty = np.where(short & (size > 2), size - cut, size)
    return Lots(product=prod, release=rel, qty=qty)


def downtime_windows(
    rng: np.random.Generator, factory: Factory, horizon: Horizon
) -> list[list[tuple[int, int, int, int]]]:
    """Non-overlapping (start, end, state, reason) DOWN/PM windows per equipment, sorted."""
    span = horizon.t_end + DAY_S
    repair_eq = _long_repair_equipment(factory)
    out: list[list[tuple[int, int, int, int]]] = []
    for e in range(len(factory.equipment_id)):
        if not factory.active[e]:
            out.append([(0, span, DOWN, DECOMMISSIONED)])  # parked for the whole span
            continue
        cand: list[tuple[int, int, int, int]] = []
        t = int(rng.uniform(0.2, 3.0) * DAY_S)
        while t < span:  # preventive maintenance every ~3 days, 2-5 h
            reason = PM_REASONS[int(rng.integers(len(PM_REASONS)))]
            cand.append((t, t + int(rng.uniform(2, 5) * 3600), PM, reason))
            t += int(rng.uniform(2.5, 3.5) * DAY_S)
        n_down = int(rng.poisson(0.4 * span / DAY_S))
        starts = rng.integers(0, span, size=n_down)
        lengths = np.clip(rng.lognormal(np.log(45 * 60), 0.8, size=n_down), 300, 16 * 3600)
        reasons = rng.choice(DOWN_REASONS, size=n_down)
        cand += [
            (int(s), int(s + d), DOWN, int(r))
            for s, d, r in zip(starts, lengths, reasons, strict=True)
        ]
        if e == repair_eq:
            # A repair covering the whole first business day: 0 available hours that day.
            day1 = horizon.day_start(horizon.start_date)
            repair = (day1 - 4 * 3600, day1 + DAY_S + 6 * 3600, DOWN, REPAIR)
            cand = [w for w in cand if w[1] < repair[0] or w[0] > repair[1]] + [repair]
        cand.sort()
        kept: list[tuple[int, int, int, int]] = []
        for w in cand:  # drop windows that would overlap the previous one
            if not kept or w[0] > kept[-1][1]:
                kept.append(w)
        out.append(kept)
    return out


def _long_repair_equipment(factory: Factory) -> int:
    for g, gid in enumerate(factory.group_id):
        if gid == "L01-PHOTO-A":
            return factory.group_members[g][-1]
    return -1


def simulate(rng: np.random.Generator, factory: Factory, horizon: Horizon, lots: Lots) -> Trace:
    windows = downtime_windows(rng, factory, horizon)
    draws = _draws(rng, len(lots.product))
    t_end = horizon.t_end

    # Plain Python containers: scalar access to numpy arrays is several times slower.
    route_offset = factory.route_offset[lots.product].tolist()
    route_len = factory.route_len[lots.product].tolist()
    step_group = factory.step_group.tolist()
    step_std_s = (factory.std_cycle_min * 60.0).tolist()
    members = factory.group_members
    factor = factory.duration_factor.tolist()
    qty = lots.qty.tolist()
    n_eq = len(factory.equipment_id)
    free = [0] * n_eq
    win = [[(w[0], w[1]) for w in ws] for ws in windows]
    win_ptr = [0] * n_eq
    step = [0] * len(qty)
    n_pass = [0] * len(qty)
    rework_until = [-1] * len(qty)

    ev_lot: list[int] = []
    ev_type: list[int] = []
    ev_ts: list[int] = []
    ev_step: list[int] = []
    ev_eq: list[int] = []
    ev_qty: list[int] = []
    ev_reason: list[int] = []

    def emit(lot: int, kind: int, ts: int, k: int, eq: int, q: int, reason: int = -1) -> None:
        ev_lot.append(lot)
        ev_type.append(kind)
        ev_ts.append(ts)
        ev_step.append(k)
        ev_eq.append(eq)
        ev_qty.append(q)
        ev_reason.append(reason)

    ps_lot: list[int] = []
    ps_step: list[int] = []
    ps_eq: list[int] = []
    ps_in: list[int] = []
    ps_out: list[int] = []
    ps_in_qty: list[int] = []
    ps_out_qty: list[int] = []
    ps_rework: list[bool] = []

    def decide(lot: int, t: int, k: int, v: list[float], may_rework: bool) -> int:
        """Events while the lot waits at step k from time t; returns its ready time or -1."""
        u = v[U_EVENT]
        q = qty[lot]
        if u < P_SCRAP and may_rework:  # outright scrap only after a pass
            emit(lot, SCRAP, t + int(v[DELAY]), k, -1, 0)
            return -1
        u -= P_SCRAP
        if u < P_REWORK and may_rework and rework_until[lot] == -1 and k > 0:
            back = min(int(v[BACK] * (MAX_REWORK_BACK + 1)), k - 1)
            t += int(v[DELAY])
            emit(lot, REWORK, t, k - 1 - back, -1, q)
            rework_until[lot] = k - 1  # steps k-1-back .. k-1 are passed again
            step[lot] = k - 1 - back
            return t + int(v[TRANSPORT])
        u -= P_REWORK
        if u < P_HOLD:
            t += int(v[DELAY])
            emit(lot, HOLD, t, k, -1, q, int(v[REASON] * len(HOLD_REASONS)))
            t += int(v[HOLD_DUR])
            if v[U_OUTCOME] < P_HOLD_SCRAP:
                emit(lot, SCRAP, t, k, -1, 0)
                return -1
            emit(lot, RELEASE, t, k, -1, q)
        return t + int(v[TRANSPORT])

    heap: list[tuple[int, int]] = []
    for lot, t in enumerate(lots.release.tolist()):
        emit(lot, CREATE, t, 0, -1, qty[lot])
        ready = decide(lot, t, 0, draws[lot, 0].tolist(), may_rework=False)
        if 0 <= ready < t_end:
            heap.append((ready, lot))
    heapq.heapify(heap)

    pop, push = heapq.heappop, heapq.heappush
    while heap:
        r, lot = pop(heap)
        k = step[lot]
        m = n_pass[lot]
        s_idx = route_offset[lot] + k
        v = draws[lot, m : m + 2].ravel().tolist()  # this pass, then the decision after it
        base_s = step_std_s[s_idx] * v[NOISE]
        best_e = best_s = best_d = best_f = -1
        for e in members[step_group[s_idx]]:
            f = free[e]
            s = r if r > f else f
            d = int(base_s * factor[e])
            if d < 60:
                d = 60
            ws = win[e]
            i = win_ptr[e]
            n = len(ws)
            while i < n and ws[i][1] <= s:  # s never decreases for e: passed for good
                i += 1
            win_ptr[e] = i
            while i < n and ws[i][0] < s + d:  # would run into a window: start after it
                s = ws[i][1]
                i += 1
            if best_e < 0 or s < best_s or (s == best_s and f < best_f):
                best_e, best_s, best_d, best_f = e, s, d, f
        e, s = best_e, best_s
        end = s + best_d
        free[e] = end
        q_in = qty[lot]
        emit(lot, TRACK_IN, s, k, e, q_in)
        scrap = 0
        if v[U_PARTIAL] < P_PARTIAL_SCRAP and q_in > 1:
            scrap = 1 + int(v[PARTIAL_FRAC] * max(q_in // 5, 1))
            scrap = min(scrap, q_in - 1)
        q_out = q_in - scrap
        ps_lot.append(lot)
        ps_step.append(k)
        ps_eq.append(e)
        ps_in.append(s)
        ps_out.append(end)
        ps_in_qty.append(q_in)
        ps_out_qty.append(q_out)
        ps_rework.append(k <= rework_until[lot])
        qty[lot] = q_out
        n_pass[lot] = m + 1
        if k > rework_until[lot] >= 0:
            rework_until[lot] = -2  # rework done; -2 also forbids a second REWORK
        if end >= t_end:
            continue  # still running at the snapshot
        if k == route_len[lot] - 1:
            emit(lot, COMPLETE, end, k, -1, q_out)
            continue
        emit(lot, TRACK_OUT, end, k + 1, e, q_out)
        step[lot] = k + 1
        ready = decide(lot, end, k + 1, v[len(v) // 2 :], may_rework=True)
        if 0 <= ready < t_end:
            push(heap, (ready, lot))

    flat = [w for ws in windows for w in ws]
    win_eq = np.repeat(np.arange(n_eq), [len(ws) for ws in windows])
    wa = np.array(flat, dtype=np.int64).reshape(-1, 4)
    as_i64 = _as_i64
    return Trace(
        lots=lots,
        ev_lot=as_i64(ev_lot),
        ev_type=as_i64(ev_type),
        ev_ts=as_i64(ev_ts),
        ev_step=as_i64(ev_step),
        ev_eq=as_i64(ev_eq),
        ev_qty=as_i64(ev_qty),
        ev_reason=as_i64(ev_reason),
        ps_lot=as_i64(ps_lot),
        ps_step=as_i64(ps_step),
        ps_eq=as_i64(ps_eq),
        ps_in=as_i64(ps_in),
        ps_out=as_i64(ps_out),
        ps_in_qty=as_i64(ps_in_qty),
        ps_out_qty=as_i64(ps_out_qty),
        ps_rework=np.array(ps_rework, dtype=bool),
        win_eq=win_eq.astype(np.int64),
        win_start=wa[:, 0],
        win_end=wa[:, 1],
        win_state=wa[:, 2],
        win_reason=wa[:, 3],
    )


def _as_i64(values: list[int]) -> np.ndarray:
    return np.array(values, dtype=np.int64)


def _draws(rng: np.random.Generator, n_lots: int) -> np.ndarray:
    """(lot, slot, column) random numbers; slot m feeds pass m and the decision before it."""
    shape = (n_lots, SLOTS)
    cols = [
        rng.lognormal(0.0, 0.12, size=shape),  # NOISE: processing time multiplier
        rng.random(shape),  # U_PARTIAL
        rng.random(shape),  # PARTIAL_FRAC
        rng.random(shape),  # U_EVENT
        rng.uniform(120, 900, size=shape),  # TRANSPORT seconds to the next tool
        rng.uniform(60, 1800, size=shape),  # DELAY seconds before HOLD / REWORK / SCRAP
        np.clip(rng.lognormal(np.log(2.5 * 3600), 1.0, size=shape), 600, 40 * 3600),  # HOLD_DUR
        rng.random(shape),  # U_OUTCOME
        rng.random(shape),  # BACK
        rng.random(shape),  # REASON
    ]
    return np.stack(cols, axis=-1)
