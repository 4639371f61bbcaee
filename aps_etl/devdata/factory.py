"""Master data: products with routes, equipment groups and equipment.

The plant is made of independent *lines*; each line owns its equipment groups and its
products, so the plant grows by adding lines while every group keeps 1..5 members.
Standard cycle times are derived from the planned release rate so that each group runs at a
chosen utilisation (one bottleneck group per line runs hot), which keeps queues realistic at
any scale instead of exploding or staying empty.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

# A generic front-end-like flow; routes are ordered subsets of it that always end in TEST.
FLOW = (
    "CLEAN", "DIFF", "PHOTO", "ETCH", "CLEAN", "IMPLANT", "DEPO", "PHOTO",
    "ETCH", "CMP", "DEPO", "PHOTO", "ETCH", "METRO", "CLEAN", "TEST",
)  # fmt: skip
# Groups of a line: (process_id, group suffix). PHOTO and ETCH have two parallel groups.
GROUPS = (
    ("CLEAN", ""), ("DIFF", ""), ("PHOTO", "-A"), ("PHOTO", "-B"), ("ETCH", "-A"),
    ("ETCH", "-B"), ("IMPLANT", ""), ("DEPO", ""), ("CMP", ""), ("METRO", ""), ("TEST", ""),
)  # fmt: skip
DEVICES = ("DRAM-8G", "NAND-256G", "PMIC-5V", "MCU-32", "CIS-12M", "SRAM-4M")
LOT_SIZES = (25, 25, 25, 50, 12)
MIN_STEPS, MAX_STEPS = 6, 12
MAX_MEMBERS = 5
# Release rate the standard cycle times are designed for never goes below this, so a tiny
# plant simply runs at low utilisation instead of getting day-long cycle times.
MIN_DESIGN_LOTS_PER_DAY = 12.0


@dataclass(frozen=True)
class Factory:
    # products (index p)
    product_id: list[str]
    product_name: list[str]
    route_id: list[str]
    lot_size: np.ndarray
    product_line: np.ndarray
    product_share: np.ndarray  # share of its line's releases
    route_offset: np.ndarray  # first flat route-step index of the product
    route_len: np.ndarray
    # route steps, flat over products (index s)
    step_product: np.ndarray
    step_seq: np.ndarray
    step_id: list[str]
    step_process: list[str]
    step_group: np.ndarray
    std_cycle_min: np.ndarray
    # equipment groups (index g)
    group_id: list[str]
    group_process: list[str]
    group_util: np.ndarray  # designed share of calendar time spent running
    group_members: list[list[int]]  # usable members: active with capacity > 0
    # equipment (index e)
    equipment_id: list[str]
    equipment_group: np.ndarray
    capacity: np.ndarray
    active: np.ndarray
    duration_factor: np.ndarray  # processing time multiplier (capacity, plus hidden wear)
    lines: int

    def master_tables(self) -> dict[str, pa.Table]:
        return {
            "product": pa.table(
                {
                    "product_id": pa.array(self.product_id, pa.string()),
                    "product_name": pa.array(self.product_name, pa.string()),
                    "route_id": pa.array(self.route_id, pa.string()),
                    "lot_size": pa.array(self.lot_size, pa.int32()),
                }
            ),
            "route_step": pa.table(
                {
                    "route_id": pa.array([self.route_id[p] for p in self.step_product]),
                    "step_seq": pa.array(self.step_seq, pa.int32()),
                    "step_id": pa.array(self.step_id, pa.string()),
                    "process_id": pa.array(self.step_process, pa.string()),
                    "eqp_group_id": pa.array([self.group_id[g] for g in self.step_group]),
                    "std_cycle_min": decimal(self.std_cycle_min),
                }
            ),
            "equipment": pa.table(
                {
                    "equipment_id": pa.array(self.equipment_id, pa.string()),
                    "eqp_group_id": pa.array([self.group_id[g] for g in self.equipment_group]),
                    "process_id": pa.array(
                        [self.group_process[g] for g in self.equipment_group], pa.string()
                    ),
                    "capacity_per_hour": decimal(self.capacity),
                    "active": pa.array(self.active, pa.bool_()),
                }
            ),
        }


def decimal(values: np.ndarray) -> pa.Array:
    """numeric(10,2): binary COPY needs Arrow decimals, a float64 column is refused."""
    return pa.array(np.round(np.asarray(values, dtype=np.float64), 2)).cast(pa.decimal128(10, 2))


def build_factory(rng: np.random.Generator, lines: int, lots_per_day: float) -> Factory:
    """Builds ``lines`` lines sized for ``lots_per_day`` releases per line."""
    design_rate = max(lots_per_day, MIN_DESIGN_LOTS_PER_DAY)
    prod: dict[str, list] = {k: [] for k in ("id", "name", "route", "size", "line", "share")}
    step: dict[str, list] = {k: [] for k in ("p", "seq", "id", "proc", "g", "factor")}
    grp: dict[str, list] = {k: [] for k in ("id", "proc", "util", "std0", "lo", "hi")}
    for line in range(lines):
        g0 = len(grp["id"])
        _line_groups(rng, line, grp)
        by_process: dict[str, list[int]] = {}
        for g in range(g0, len(grp["id"])):
            by_process.setdefault(grp["proc"][g], []).append(g)
        n_products = int(rng.integers(3, 5))
        shares = rng.dirichlet(np.full(n_products, 3.0))
        for k in range(n_products):
            p = len(prod["id"])
            device = DEVICES[(line * 2 + k) % len(DEVICES)]
            prod["id"].append(f"P{line + 1:02d}{chr(65 + k)}")
            prod["name"].append(f"{device} rev {chr(65 + k)} (line {line + 1})")
            prod["route"].append(f"R{line + 1:02d}{chr(65 + k)}")
            prod["size"].append(int(rng.choice(LOT_SIZES)))
            prod["line"].append(line)
            prod["share"].append(float(shares[k]))
            n_steps = int(rng.integers(MIN_STEPS, MAX_STEPS + 1))
            picks = np.sort(rng.choice(len(FLOW) - 1, size=n_steps - 1, replace=False))
            for seq, process in enumerate([FLOW[i] for i in picks] + ["TEST"], start=1):
                candidates = by_process[process]
                step["p"].append(p)
                step["seq"].append(seq)
                step["id"].append(f"{seq * 10:03d}-{process}")
                step["proc"].append(process)
                step["g"].append(candidates[int(rng.integers(len(candidates)))])
                step["factor"].append(float(rng.uniform(0.85, 1.15)))

    step_product = np.array(step["p"], dtype=np.int64)
    step_group = np.array(step["g"], dtype=np.int64)
    lot_size = np.array(prod["size"], dtype=np.int64)
    share = np.array(prod["share"])
    n_groups = len(grp["id"])
    # Passes per day each group must absorb at the design rate -> group standard cycle time.
    passes = np.bincount(step_group, weights=share[step_product] * design_rate, minlength=n_groups)
    # Members needed to run the group's passes at its utilisation with its natural cycle
    # time, within the group's size limits; then the standard cycle time that hits the
    # utilisation exactly with that many members.
    util = np.array(grp["util"])
    std0 = np.array(grp["std0"])
    need = np.ceil(passes * std0 / (util * 1440.0))
    n_active = np.clip(np.where(passes > 0, need, rng.integers(1, 4, size=n_groups)),
                       grp["lo"], grp["hi"]).astype(np.int64)  # fmt: skip
    group_std = np.where(passes > 0, util * n_active * 1440.0 / np.maximum(passes, 1e-9), std0)
    group_std = np.clip(group_std, 10.0, 300.0)
    grp["n_active"] = n_active.tolist()
    std_cycle = np.round(group_std[step_group] * np.array(step["factor"]), 2)
    qty_sum = np.bincount(step_group, weights=lot_size[step_product], minlength=n_groups)
    n_steps_g = np.bincount(step_group, minlength=n_groups)
    mean_lot = np.where(n_steps_g > 0, qty_sum / np.maximum(n_steps_g, 1), 25.0)

    eq = _equipment(rng, grp, group_std, mean_lot)
    route_len = np.bincount(step_product, minlength=len(prod["id"]))
    return Factory(
        product_id=prod["id"],
        product_name=prod["name"],
        route_id=prod["route"],
        lot_size=lot_size,
        product_line=np.array(prod["line"], dtype=np.int64),
        product_share=share,
        route_offset=np.concatenate([[0], np.cumsum(route_len)[:-1]]).astype(np.int64),
        route_len=route_len,
        step_product=step_product,
        step_seq=np.array(step["seq"], dtype=np.int64),
        step_id=step["id"],
        step_process=step["proc"],
        step_group=step_group,
        std_cycle_min=std_cycle,
        group_id=grp["id"],
        group_process=grp["proc"],
        group_util=util,
        group_members=eq["members"],
        equipment_id=eq["id"],
        equipment_group=np.array(eq["g"], dtype=np.int64),
        capacity=np.array(eq["cap"]),
        active=np.array(eq["active"], dtype=bool),
        duration_factor=np.array(eq["factor"]),
        lines=lines,
    )


def _line_groups(rng: np.random.Generator, line: int, grp: dict[str, list]) -> None:
    n = len(GROUPS)
    util = rng.uniform(0.45, 0.72, size=n)
    util[int(rng.integers(n))] = 0.82  # the line's designed bottleneck
    std0 = rng.uniform(40.0, 150.0, size=n)  # natural minutes per lot of the process
    for (process, suffix), u, c in zip(GROUPS, util, std0, strict=True):
        lo, hi = 1, MAX_MEMBERS
        if process == "METRO":
            hi = 1  # a single-member group on every line
        if process == "PHOTO" and suffix == "-A":
            lo = 3  # always a wide group (hosts the long repair on line 1)
        if line == 0 and process == "CMP":
            hi = 1  # plus an inactive capacity-0 member: excluded from parallel balance
        grp["id"].append(f"L{line + 1:02d}-{process}{suffix}")
        grp["proc"].append(process)
        grp["util"].append(float(u))
        grp["std0"].append(float(c))
        grp["lo"].append(lo)
        grp["hi"].append(hi)


def _equipment(
    rng: np.random.Generator, grp: dict[str, list], group_std: np.ndarray, mean_lot: np.ndarray
) -> dict[str, list]:
    eq: dict[str, list] = {k: [] for k in ("id", "g", "cap", "active", "factor", "members")}
    for g, gid in enumerate(grp["id"]):
        n_active = grp["n_active"][g]
        line0 = gid.startswith("L01-")
        # Inactive extras: on line 1 a CMP tool with capacity 0 (CMP keeps one active member,
        # so its group is excluded from parallel balance) and an ETCH-A spare; elsewhere a few.
        extra = int(gid.endswith(("-CMP", "-ETCH-A"))) if line0 else int(rng.random() < 0.15)
        speed = rng.uniform(0.75, 1.25, size=n_active + extra)
        nominal = mean_lot[g] * 60.0 / group_std[g]  # units per hour at the standard cycle
        worn = int(rng.integers(n_active)) if n_active >= 2 and rng.random() < 0.35 else -1
        if line0 and gid.endswith("-PHOTO-A"):
            worn = 0  # at least one tool that under-delivers against its nameplate capacity
        members: list[int] = []
        for k in range(n_active + extra):
            e = len(eq["id"])
            active = k < n_active
            cap = round(nominal * float(speed[k]), 2)
            if line0 and gid.endswith("-CMP") and not active:
                cap = 0.0
            eq["id"].append(f"{gid}-{k + 1:02d}")
            eq["g"].append(g)
            eq["cap"].append(cap)
            eq["active"].append(active)
            # Faster tools (higher capacity) process faster; a worn tool is 50% slower.
            factor = float(speed[:n_active].mean() / speed[k]) * (1.5 if k == worn else 1.0)
            eq["factor"].append(factor)
            if active and cap > 0:
                members.append(e)
        eq["members"].append(members)
    return eq
