"""seed_source: pick the scale, generate every table, load them, report."""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from . import facts
from .factory import build_factory
from .horizon import Horizon
from .load import TABLES, load_tables
from .load_mariadb import MariaDBTarget, load_tables_mariadb
from .plans import plan_tables
from .simulate import release_lots, simulate

LINE_LOTS_PER_DAY = 48  # a line is sized for at most this release rate; more lots, more lines
DEFAULT_LOTS_PER_DAY = 12  # the default small plant: one line, a few thousand rows
PILOT_LINES = 4  # lines of the pilot plants that size a target_rows request


@dataclass(frozen=True)
class Dataset:
    tables: dict[str, pa.Table]
    lots: int
    lines: int

    @property
    def rows(self) -> dict[str, int]:
        return {name: self.tables[name].num_rows for name in TABLES}


@dataclass(frozen=True)
class SeedReport:
    """What seed_source wrote. Holds parameters and counts only, never connection details."""

    rows: dict[str, int]
    seconds: float
    seed: int
    start_date: dt.date
    days: int
    lots: int
    lines: int
    generate_seconds: float = 0.0
    load_seconds: float = 0.0
    target_rows: int | None = None

    @property
    def total_rows(self) -> int:
        return sum(self.rows.values())


def build_dataset(
    start_date: dt.date, days: int, lots: int, seed: int, *, lines: int | None = None
) -> Dataset:
    """All nine contract tables as Arrow tables; a pure function of its arguments.

    ``lines`` defaults to the fewest lines that keep every line within LINE_LOTS_PER_DAY.
    """
    horizon = Horizon(start_date, days)
    if lines is None:
        lines = max(1, math.ceil(lots / (LINE_LOTS_PER_DAY * horizon.total_days)))
    per_line = [len(c) for c in np.array_split(np.arange(lots), lines)]
    lots_per_day = lots / lines / horizon.total_days
    # Independent streams: changing one part (e.g. plans) does not reshuffle the others.
    rng_factory, rng_sim, rng_facts, rng_plans = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(4)
    )
    factory = build_factory(rng_factory, lines, lots_per_day)
    lot_set = release_lots(rng_sim, factory, horizon, per_line)
    trace = simulate(rng_sim, factory, horizon, lot_set)
    ids = facts.lot_ids(trace, horizon)
    tables = factory.master_tables()
    tables["lot_history"] = facts.lot_history(rng_facts, trace, factory, horizon, ids)
    tables["process_result"] = facts.process_result(rng_facts, trace, factory, horizon, ids)
    tables["equipment_event"] = facts.equipment_event(rng_facts, trace, factory, horizon)
    tables.update(plan_tables(rng_plans, factory, horizon, max(lots_per_day, 1.0)))
    return Dataset(tables=tables, lots=lots, lines=lines)


def lots_for_rows(start_date: dt.date, days: int, target_rows: int, seed: int) -> int:
    """Lots that give about ``target_rows`` rows, from two small pilot plants.

    Rows grow by a per-lot part (lot events, passes, RUN/IDLE intervals) and a per-line part
    (master data, plans, downtime). Pilots of PILOT_LINES lines at full and at half release
    rate measure both; several lines average out the differences between lines.
    """
    full = LINE_LOTS_PER_DAY * Horizon(start_date, days).total_days
    rows = [
        sum(build_dataset(start_date, days, n, seed, lines=PILOT_LINES).rows.values())
        for n in (PILOT_LINES * full, PILOT_LINES * full // 2)
    ]
    per_lot = max((rows[0] - rows[1]) / (PILOT_LINES * (full - full // 2)), 1.0)
    per_line = max(rows[0] / PILOT_LINES - per_lot * full, 0.0)
    lines = 1
    while True:
        lots = (target_rows - lines * per_line) / per_lot
        if lots <= lines * full:
            return max(1, round(lots))
        lines += 1


def seed_source(
    uri: str | MariaDBTarget,
    *,
    start_date: dt.date,
    days: int = 3,
    lots: int | None = None,
    target_rows: int | None = None,
    seed: int = 42,
    progress: bool = True,
    replace: bool = True,
) -> SeedReport:
    """Fills the ``mes`` database at ``uri`` with a synthetic plant (see the package doc).

    ``uri``: a PostgreSQL URI, or a MariaDBTarget for the MariaDB form of the source
    (load_mariadb): the same rows either way, from the same generator.

    ``lots`` (lots created over the span, warm-up days included) or ``target_rows``
    (approximate total over all tables) picks the scale; neither gives a small plant.
    """
    if isinstance(start_date, dt.datetime):
        start_date = start_date.date()
    if days < 1:
        raise ValueError("days must be >= 1")
    if lots is not None and target_rows is not None:
        raise ValueError("give lots or target_rows, not both")
    if (lots is not None and lots < 1) or (target_rows is not None and target_rows < 1):
        raise ValueError("lots and target_rows must be positive")
    began = time.perf_counter()
    with _progress(progress) as report:
        if lots is None:
            if target_rows is None:
                lots = DEFAULT_LOTS_PER_DAY * Horizon(start_date, days).total_days
            else:
                report("sizing", f"pilot runs for ~{target_rows:,} rows")
                lots = lots_for_rows(start_date, days, target_rows, seed)
        report("generate", f"{lots:,} lots, {days} days from {start_date}")
        dataset = build_dataset(start_date, days, lots, seed)
        generated = time.perf_counter()
        report("generate", f"{sum(dataset.rows.values()):,} rows in {generated - began:.1f}s")
        comment = (
            f"synthetic MES source (aps_etl.devdata): seed={seed} start_date={start_date} "
            f"days={days} lots={lots} lines={dataset.lines}"
        )
        load = load_tables_mariadb if isinstance(uri, MariaDBTarget) else load_tables
        load(
            uri,  # type: ignore[arg-type]  # each loader gets its own kind of target
            dataset.tables,
            replace=replace,
            comment=comment,
            on_table=lambda name, n: report("load", f"{name}: {n:,}"),
        )
    done = time.perf_counter()
    return SeedReport(
        rows=dataset.rows,
        seconds=done - began,
        seed=seed,
        start_date=start_date,
        days=days,
        lots=lots,
        lines=dataset.lines,
        generate_seconds=generated - began,
        load_seconds=done - generated,
        target_rows=target_rows,
    )


@contextmanager
def _progress(enabled: bool) -> Iterator:
    """Per-stage lines on stderr with elapsed time (rich); a no-op when disabled."""
    if not enabled:
        yield lambda stage, text: None
        return
    from rich.console import Console

    console = Console(stderr=True)
    began = time.perf_counter()

    def report(stage: str, text: str) -> None:
        console.print(f"[dim]{time.perf_counter() - began:6.1f}s[/] [bold]{stage:>8}[/] {text}")

    with console.status("seeding the MES source", spinner="dots"):
        yield report
