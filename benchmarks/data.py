"""The benchmark's data sets: the same source tables for our job and for every peer.

Two kinds, each in a PostgreSQL database of its own on the dev stack (never the shared
`mes`, which the test suite reseeds), and, for the embedded-default case, seeded
identically into an embedded PostgreSQL:

- a **day of N source rows**: the synthetic plant of `aps_etl.devdata` seeded for one
  business day (BENCH_DAY, plus the generator's two warm-up days), with its lot count
  calibrated so that the rows the daily job reads from the source for that day are N
  (within a few percent; the exact count is measured and reported). Those reads are the
  seven extracts of scenario 1 for the day (lot history of the lots alive that day,
  the day's process results and equipment intervals, master data, plan runs) plus the
  snapshot of the plan in force that scenario 3 takes;
- a **plan snapshot of N rows**: one COMPLETED APS run whose `plan_production` holds N
  rows (10 plan dates x N/1000 products x 100 steps), and its `plan_equipment`, on a
  small plant with no other plan run (so the snapshot job's diff is empty: a
  pass-through, where the load path dominates).

Each data set also gets a schema `bench_day` of views, one per source read, holding
exactly the rows (and the declared types, the same casts) that our extracts read. The
peers (benchmarks/peers.py) copy those views: the same rows from the same tables.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import adbc_driver_postgresql.dbapi as adbc

from aps_etl.devdata import seed_source
from aps_etl.env.stack import postgres_uri
from aps_etl.lib.business_days import business_day_window
from aps_etl.lib.sources.dialect import SqlDialect
from aps_etl.lib.sources.engines.postgres import DIALECT
from aps_etl.lib.sources.mes import DAILY_SOURCES, PLAN_EQUIPMENT, PLAN_PRODUCTION, PLAN_RUN

# Past business days far from the days the test suite uses (2026-10/11); the smoke scale
# has its own day and plan run, so a smoke run never swaps a partition of a full run.
BENCH_DAY = dt.date(2026, 7, 1)
SMOKE_DAY = dt.date(2026, 6, 1)
SMOKE_ROWS = 100_000  # below this, a data set is a smoke one
SEED = 42
VIEW_SCHEMA = "bench_day"
META_TABLE = "bench_day._dataset"
PLAN_DATES = 10
PLAN_STEPS = 100


@dataclass
class DataSet:
    """One prepared data set: where it is, and what a run of it reads."""

    name: str
    kind: str  # "day" or "plan"
    target_rows: int
    partition: str  # the job's partition key: the business day, or the plan run_id
    lots: int = 0
    seed_rows: int = 0  # rows the seeding wrote over all tables
    reads: dict[str, int] = field(default_factory=dict)  # source read -> rows
    plan_in_force: str | None = None

    @property
    def rows(self) -> int:
        return sum(self.reads.values())

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "rows": self.rows}


def _execute(uri: str, *statements: str, autocommit: bool = False) -> None:
    with adbc.connect(uri, autocommit=autocommit) as conn, conn.cursor() as cur:
        for statement in statements:
            cur.execute(statement)
        if not autocommit:
            conn.commit()


def _fetch(uri: str, sql: str) -> list[tuple]:
    with adbc.connect(uri) as conn, conn.cursor() as cur:
        cur.execute(sql)
        rows = cur.fetchall()
        conn.commit()
        return rows


def ensure_stack_database(settings: dict[str, str], database: str) -> None:
    """A source database like the stack's `mes`: schema `mes` owned by mes_owner,
    read-only mes_reader, same search_path (see infra/dev_stack/config.py, postgres_setup)."""
    admin = postgres_uri(settings, "postgres", "superuser")
    if not _fetch(admin, f"select 1 from pg_database where datname = '{database}'"):
        _execute(admin, f"create database {database}", autocommit=True)
    _execute(
        admin,
        f"revoke all on database {database} from public",
        f"grant connect, temporary on database {database} to mes_owner",
        f"grant connect on database {database} to mes_reader",
        f"alter role mes_owner in database {database} set search_path = mes, public",
        f"alter role mes_reader in database {database} set search_path = mes, public",
        autocommit=True,
    )
    _execute(
        postgres_uri(settings, database, "superuser"),
        "create schema if not exists mes authorization mes_owner",
        "revoke create on schema public from public",
        "grant usage on schema mes to mes_reader",
        "grant select on all tables in schema mes to mes_reader",
        "alter default privileges for role mes_owner in schema mes "
        "grant select on tables to mes_reader",
        f"create schema if not exists {VIEW_SCHEMA} authorization mes_owner",
        f"grant usage on schema {VIEW_SCHEMA} to mes_reader",
        f"alter default privileges for role mes_owner in schema {VIEW_SCHEMA} "
        "grant select on tables to mes_reader",
    )


def bench_day(rows: int) -> dt.date:
    return BENCH_DAY if rows >= SMOKE_ROWS else SMOKE_DAY


def plan_run_id(rows: int) -> str:
    return f"APS-BENCH-{rows}"


def day_reads(
    day: dt.date, plan_in_force: str | None, dialect: SqlDialect = DIALECT
) -> dict[str, str]:
    """Every source read of the daily job for `day`: name -> the job's own SELECT."""
    start, end = business_day_window(day)
    reads = {spec.name: spec.select_sql(start, end, dialect=dialect) for spec in DAILY_SOURCES}
    if plan_in_force:
        for spec in (PLAN_PRODUCTION, PLAN_EQUIPMENT):
            reads[spec.name] = spec.select_sql(key=plan_in_force, dialect=dialect)
    return reads


def plan_reads(run_id: str, dialect: SqlDialect = DIALECT) -> dict[str, str]:
    """The snapshot job's source reads for one plan run."""
    return {
        PLAN_RUN.name: PLAN_RUN.select_sql(dialect=dialect),
        PLAN_PRODUCTION.name: PLAN_PRODUCTION.select_sql(key=run_id, dialect=dialect),
        PLAN_EQUIPMENT.name: PLAN_EQUIPMENT.select_sql(key=run_id, dialect=dialect),
    }


def _plan_in_force(uri: str, day: dt.date) -> str | None:
    import polars as pl

    from aps_etl.defs.scenarios.aps_kpi.logic import plan_in_force

    with adbc.connect(uri) as conn, conn.cursor() as cur:
        cur.execute(PLAN_RUN.select_sql(dialect=DIALECT))
        plan_run = pl.from_arrow(cur.fetch_arrow_table())
    return plan_in_force(plan_run, day)


def _count_reads(uri: str, reads: dict[str, str]) -> dict[str, int]:
    return {
        name: _fetch(uri, f"select count(*) from ({sql}) q")[0][0] for name, sql in reads.items()
    }


def _drop_views(owner_uri: str) -> None:
    # seed_source drops the contract tables without CASCADE: the views go first.
    views = _fetch(
        owner_uri,
        f"select table_name from information_schema.views where table_schema = '{VIEW_SCHEMA}'",
    )
    _execute(
        owner_uri,
        *(f"drop view {VIEW_SCHEMA}.{name}" for (name,) in views),
        f"drop table if exists {META_TABLE}",
    )


def _create_views(owner_uri: str, reads: dict[str, str], meta: DataSet) -> None:
    if not _fetch(owner_uri, f"select 1 from pg_namespace where nspname = '{VIEW_SCHEMA}'"):
        _execute(owner_uri, f"create schema {VIEW_SCHEMA}")  # the embedded superuser
    statements = [
        *(f"create view {VIEW_SCHEMA}.{name} as {sql}" for name, sql in reads.items()),
        f"create table {META_TABLE} (meta text)",
        f"insert into {META_TABLE} values ('{json.dumps(meta.as_json())}')",
    ]
    if _fetch(owner_uri, "select 1 from pg_roles where rolname = 'mes_reader'"):  # dev stack
        statements += [
            f"grant usage on schema {VIEW_SCHEMA} to mes_reader",
            f"grant select on all tables in schema {VIEW_SCHEMA} to mes_reader",
        ]
    _execute(owner_uri, *statements)


def _existing(owner_uri: str) -> dict[str, Any] | None:
    try:
        rows = _fetch(owner_uri, f"select meta from {META_TABLE}")
    except Exception:
        return None
    return json.loads(rows[0][0]) if rows else None


def _seed_day(owner_uri: str, day: dt.date, lots: int) -> tuple[int, dict[str, int], str | None]:
    _drop_views(owner_uri)
    report = seed_source(owner_uri, start_date=day, days=1, lots=lots, seed=SEED, progress=False)
    _execute(owner_uri, "analyze")  # a live source has statistics; the job's plans need them
    run_id = _plan_in_force(owner_uri, day)
    return report.total_rows, _count_reads(owner_uri, day_reads(day, run_id)), run_id


def prepare_day(owner_uri: str, name: str, rows: int, *, lots: int | None = None) -> DataSet:
    """A day of `rows` source rows at `owner_uri` (mes_owner); reused when already there.
    `lots` skips the calibration (to seed a second server identically)."""
    day = bench_day(rows)
    existing = _existing(owner_uri)
    if (
        existing
        and existing["kind"] == "day"
        and existing["target_rows"] == rows
        and existing["partition"] == day.isoformat()
        and (lots is None or existing["lots"] == lots)
    ):
        existing.pop("rows", None)
        return DataSet(**existing)
    if lots is None:
        # Rows read grow linearly with lots (lines are added with lots): one small pilot
        # gives the slope, a second seeding at full size corrects the rest.
        pilot = max(60, rows // 400)
        _, counts, _ = _seed_day(owner_uri, day, pilot)
        lots = max(1, round(pilot * rows / sum(counts.values())))
        total, counts, run_id = _seed_day(owner_uri, day, lots)
        for _ in range(3):
            if abs(sum(counts.values()) - rows) <= 0.02 * rows:
                break
            lots = max(1, round(lots * rows / sum(counts.values())))
            total, counts, run_id = _seed_day(owner_uri, day, lots)
    else:
        total, counts, run_id = _seed_day(owner_uri, day, lots)
    data = DataSet(
        name=name,
        kind="day",
        target_rows=rows,
        partition=day.isoformat(),
        lots=lots,
        seed_rows=total,
        reads=counts,
        plan_in_force=run_id,
    )
    _create_views(owner_uri, day_reads(day, run_id), data)
    return data


def prepare_plan(owner_uri: str, name: str, rows: int) -> DataSet:
    """A small plant whose only plan run is plan_run_id(rows), of `rows` plan_production
    rows."""
    day, run_id = bench_day(rows), plan_run_id(rows)
    existing = _existing(owner_uri)
    if (
        existing
        and existing["kind"] == "plan"
        and existing["target_rows"] == rows
        and existing["partition"] == run_id
    ):
        existing.pop("rows", None)
        return DataSet(**existing)
    _drop_views(owner_uri)
    report = seed_source(owner_uri, start_date=day, days=1, seed=SEED, progress=False)
    products = math.ceil(rows / (PLAN_DATES * PLAN_STEPS))
    base = day + dt.timedelta(days=1)
    _execute(
        owner_uri,
        "delete from plan_equipment",
        "delete from plan_production",
        "delete from plan_run",
        f"""insert into plan_run (run_id, base_date, horizon_days, created_at, status)
            values ('{run_id}', date '{base}', {PLAN_DATES},
                    timestamptz '{day} 21:00+09', 'COMPLETED')""",
        f"""insert into product (product_id, product_name, route_id, lot_size)
            select 'BENCH-P' || lpad(p::text, 5, '0'), 'bench product ' || p,
                   (select min(route_id) from route_step), 25
            from generate_series(1, {products}) p""",
        # N rows exactly: the first N of dates x products x steps
        f"""insert into plan_production
              (run_id, plan_date, product_id, step_id, process_id, planned_qty)
            select '{run_id}', date '{base}' + (i / ({products} * {PLAN_STEPS}))::int,
                   'BENCH-P' || lpad((1 + (i / {PLAN_STEPS}) % {products})::text, 5, '0'),
                   'S' || lpad((1 + i % {PLAN_STEPS})::text, 3, '0'),
                   'PROC-' || lpad((i % 17)::text, 2, '0'),
                   (i::bigint * 7919) % 500
            from generate_series(0, {rows - 1}) i""",
        f"""insert into plan_equipment
              (run_id, plan_date, equipment_id, planned_qty, planned_load_min)
            select '{run_id}', date '{base}' + d, equipment_id,
                   (d * 31 + length(equipment_id) * 7) % 200,
                   ((d * 97 + length(equipment_id) * 13) % 1440)::numeric(10, 2)
            from equipment, generate_series(0, {PLAN_DATES - 1}) d
            where active and capacity_per_hour > 0""",
        "analyze",
    )
    reads = _count_reads(owner_uri, plan_reads(run_id))
    data = DataSet(
        name=name,
        kind="plan",
        target_rows=rows,
        partition=run_id,
        seed_rows=report.total_rows,
        reads=reads,
    )
    _create_views(owner_uri, plan_reads(run_id), data)
    return data
