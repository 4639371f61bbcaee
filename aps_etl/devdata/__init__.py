"""Synthetic MES/APS source: fills a PostgreSQL ``mes`` database with a simulated plant.

The same plant also fills the MariaDB/MySQL form of the source: ``seed_source`` given a
``MariaDBTarget`` applies ``mes_source_mariadb.sql`` and loads the same rows over ODBC
(load_mariadb.py: plant-time DATETIME(6), booleans 0/1, an atomic swap of all nine tables).

``seed_source(uri, start_date=..., days=3, lots=None, target_rows=None, seed=42)`` applies
``mes_source.sql`` (a verbatim copy of the customer's contract, shipped in this package) and
COPYs every table in one transaction. ``build_dataset`` returns the same tables as Arrow.

What is simulated
    Lines of equipment groups (CLEAN, DIFF, PHOTO, ETCH, IMPLANT, DEPO, CMP, METRO, TEST)
    with 1..5 parallel members of differing capacity, a few inactive tools (one with
    capacity 0), and 3-4 products per line with routes of 6..12 steps. Lots are released
    uniformly from ``start_date - 2 days`` (warm-up: day 1 starts with WIP) to the snapshot
    at ``start_date + days`` 00:00 Asia/Seoul, and flow step by step through a dispatching
    simulation with queues, DOWN/PM windows (one tool is down for the whole first business
    day), HOLD/RELEASE, partial scrap, SCRAP, and REWORK. Three APS runs a day produce plans.
    The scale grows by adding lines (at most 48 lots a day each): ``lots`` sets the count,
    ``target_rows`` sizes it from pilot runs, neither gives a small plant (~5k rows).

Invariants the generator keeps (each is a SQL check in aps_etl_tests/unit/test_devdata.py)
    Schema: exactly the contract's tables, columns, constraints and indexes, nothing else;
      the seed parameters are only in the table comments.
    Referential integrity: every product, equipment and run referenced exists; every
      (product, step_seq, step_id) of lot_history / process_result and every (product,
      step_id, process_id) of plan_production is on the product's route.
    Master data: one process_id per equipment group; every route step's group has an
      active member with capacity > 0 of the step's process; steps are numbered 1..n.
    Lot events, per lot in (event_ts, event_id) order: exactly one CREATE, first, at step
      1; lot_status follows the event type (CREATE/TRACK_OUT/RELEASE/REWORK -> WAIT,
      TRACK_IN -> RUN, HOLD -> HOLD, COMPLETE -> COMPLETED, SCRAP -> SCRAPPED with qty 0);
      transitions are consistent (TRACK_IN from WAIT at the same step; TRACK_OUT right after
      its TRACK_IN, on the same equipment, to the next step; COMPLETE right after the TRACK_IN
      of the last step; HOLD from WAIT; RELEASE from HOLD; REWORK from WAIT to an earlier
      step; SCRAP from WAIT or HOLD); COMPLETE and SCRAP are terminal; qty never increases
      and never goes below 0 (a partial scrap shows as a smaller qty on the TRACK_OUT);
      equipment_id is set exactly on TRACK_IN/TRACK_OUT, hold_reason exactly on HOLD;
      a TRACK_IN is on an active member of the step's group.
    process_result: one row per TRACK_OUT/COMPLETE event; its track_in_ts/track_out_ts,
      step, equipment and quantities equal those of the TRACK_IN and TRACK_OUT/COMPLETE
      events; in_qty = out_qty + scrap_qty; at most one non-rework pass per (lot, step), and
      is_rework rows repeat an earlier pass after a REWORK event; passes on one equipment
      never overlap (one lot at a time).
    equipment_event: per equipment, intervals start at the window start, are contiguous
      and never overlap, and exactly one, the last, is open (end_ts null); reason_code is
      set exactly for DOWN and PM; RUN intervals are the processing (each starts at a
      TRACK_IN on that tool, and every pass lies inside one).
    Plans: plan keys unique; plan dates inside the run's horizon; plan_equipment only for
      active equipment with planned_load_min in [0, 1440]; FAILED and RUNNING runs carry a
      partial result; consecutive COMPLETED runs differ (added, removed, changed keys).
    Time: every event lies in [start_date - 2 days, start_date + days) plant time;
      updated_at >= the row's event time (the close of an interval) and never after the
      snapshot; a few rows are updated hours later (corrections).
    Determinism: the same parameters give identical rows (numpy Generator from the seed,
      no wall clock anywhere); another seed gives other data.

Choices where the contract is silent: inactive equipment has one open DOWN interval
(reason DECOMMISSIONED) and no plan_equipment rows; a lot running at the snapshot shows its
TRACK_IN and an open RUN interval but no process_result row; one night run before
start_date is re-run with the same created_at (run_id suffix ``-R``) to exercise the tie
rule; ``replace=False`` loads only into absent or empty contract tables.
"""

from .load import SeedError, contract_sql
from .load_mariadb import MariaDBTarget, contract_sql_mariadb
from .seed import Dataset, SeedReport, build_dataset, seed_source

__all__ = [
    "Dataset",
    "MariaDBTarget",
    "SeedError",
    "SeedReport",
    "build_dataset",
    "contract_sql",
    "contract_sql_mariadb",
    "seed_source",
]
