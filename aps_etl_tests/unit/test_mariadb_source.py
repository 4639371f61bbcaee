"""The MariaDB engine against a real MariaDB (a throwaway mariadbd, no stack): the day's
window in the plant's wall clock, exact values of every declared type, fingerprints that
agree however they are computed (so a delta snapshot is proven, not assumed), drift on
information_schema, and each failure named in one line."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from aps_etl.defs.extract import extract_table
from aps_etl.lib.business_days import business_day_window
from aps_etl.lib.errors import ConfigurationError
from aps_etl.lib.lake import LakeResource
from aps_etl.lib.postgres import DatabaseError
from aps_etl.lib.sources.changes import source_fingerprints
from aps_etl.lib.sources.database import SourceDatabase, SourceError
from aps_etl.lib.sources.drift import SchemaDriftError, check_drift, detect_drift
from aps_etl.lib.sources.engines.registry import UnknownEngine, engine_for
from aps_etl.lib.sources.extraction import snapshot_partition, source_fingerprint
from aps_etl.lib.sources.specs import TS, ExtractSpec
from aps_etl_tests.mariadb_server import ThrowawayMariaDB, throwaway_mariadb

# Debian's mariadbd and MariaDB's ODBC driver (scripts/test-tools installs them): not in the
# fast tier's promise of nothing to install
pytestmark = pytest.mark.tools

DAY = dt.date(2026, 11, 25)
RESULT = ExtractSpec(
    name="result",
    table="result",
    mode="incremental",
    partition_column="track_out_ts",
    columns={
        "result_id": pl.Int64,
        "lot_id": pl.String,
        "note": pl.String,
        "qty": pl.Int32,
        "yield_pct": pl.Float64,
        "is_rework": pl.Boolean,
        "plan_day": pl.Date,
        "track_out_ts": TS,
        "updated_at": TS,
    },
    nullable=frozenset({"note"}),
    primary_key=("result_id",),
)
DDL = """
create table result (
  result_id bigint primary key,
  lot_id varchar(40) character set utf8mb4 collate utf8mb4_nopad_bin not null,
  note varchar(40) character set utf8mb4 collate utf8mb4_nopad_bin,
  qty int not null,
  yield_pct decimal(12,3) not null,
  is_rework tinyint(1) not null,
  plan_day date not null,
  track_out_ts datetime(6) not null,
  updated_at datetime(6) not null
) engine=InnoDB;
"""


class MariaDBServer:
    """The throwaway server's database `mes` and a reader that may only SELECT in it."""

    database, reader, reader_password = "mes", "reader", "reader-pw"

    def __init__(self, server: ThrowawayMariaDB) -> None:
        self.server, self.port = server, server.port
        server.admin(
            f"CREATE DATABASE {self.database};\n"
            f"CREATE USER '{self.reader}'@'127.0.0.1' IDENTIFIED BY '{self.reader_password}';\n"
            f"GRANT SELECT, SHOW VIEW ON {self.database}.* TO '{self.reader}'@'127.0.0.1';\n"
        )

    def sql(self, script: str) -> str:
        return self.server.admin(f"USE {self.database};\n{script}")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MariaDBServer]:
    with throwaway_mariadb(tmp_path_factory.mktemp("mariadb")) as running:
        yield MariaDBServer(running)


@pytest.fixture
def source(server: MariaDBServer) -> SourceDatabase:
    server.sql("drop table if exists result;" + DDL)
    return SourceDatabase(
        engine="mariadb",
        database=server.database,
        host="127.0.0.1",
        port=server.port,
        user=server.reader,
        password=server.reader_password,
    )


def _insert(server: MariaDBServer, rows: list[tuple]) -> None:
    def literal(value: object) -> str:
        if value is None:
            return "NULL"
        if isinstance(value, str):
            return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"
        return str(value)

    values = ", ".join("(" + ", ".join(literal(v) for v in row) + ")" for row in rows)
    server.sql(f"insert into result values {values};")


def test_the_business_day_is_the_plants_wall_clock_to_the_microsecond(server, source) -> None:
    """DATETIME(6) holds the plant's wall clock (+09:00): 23:59:59.999999 is still D,
    00:00:00 is D+1; every value arrives as its declared type, the instants in UTC."""
    _insert(
        server,
        [
            (
                1,
                "LOT-1",
                None,
                5,
                "97.125",
                0,
                "2026-11-25",
                "2026-11-25 00:00:00.000000",
                "2026-11-25 08:00:00.000001",
            ),
            (
                2,
                "LOT-1 ",
                "",
                0,
                "0.001",
                1,
                "2026-11-25",
                "2026-11-25 23:59:59.999999",
                "2026-11-26 00:00:00",
            ),
            (
                3,
                "lot-1",
                "it's a \\ note",
                7,
                "100",
                0,
                "2026-11-26",
                "2026-11-26 00:00:00.000000",
                "2026-11-26 00:00:01",
            ),
            (
                4,
                "LOT-2",
                None,
                1,
                "50.5",
                1,
                "2026-11-24",
                "2026-11-24 23:59:59.999999",
                "2026-11-25 00:00:00",
            ),
        ],  # fmt: skip
    )
    start, end = business_day_window(DAY)
    frame = source.extract(RESULT, start, end).sort("result_id")
    assert frame.schema == RESULT.polars_schema()
    assert frame["result_id"].to_list() == [1, 2]
    assert frame["track_out_ts"].to_list() == [
        dt.datetime(2026, 11, 24, 15, 0, tzinfo=dt.UTC),
        dt.datetime(2026, 11, 25, 14, 59, 59, 999999, tzinfo=dt.UTC),
    ]
    # trailing spaces kept, NULL is not '', DECIMAL exact as a double, TINYINT(1) a Boolean
    assert frame["lot_id"].to_list() == ["LOT-1", "LOT-1 "]
    assert frame["note"].to_list() == [None, ""]
    assert frame["yield_pct"].to_list() == [97.125, 0.001]
    assert frame["is_rework"].to_list() == [False, True]
    assert frame["plan_day"].to_list() == [DAY, DAY]
    next_day = source.extract(RESULT, *business_day_window(DAY + dt.timedelta(days=1)))
    assert next_day["note"].to_list() == ["it's a \\ note"]
    assert next_day["lot_id"].to_list() == ["lot-1"]


def _random_rows(rng: random.Random, ids: range) -> list[tuple]:
    rows = []
    for i in ids:
        out = dt.datetime(2026, 11, 24) + dt.timedelta(
            microseconds=rng.randrange(0, 3 * 86400 * 10**6)
        )
        updated = dt.datetime(1990, 1, 1) + dt.timedelta(microseconds=rng.randrange(0, 10**15))
        rows.append(
            (i, f"LOT-{rng.randrange(100)}", rng.choice([None, "", "x'y", "a\\b"]),
             rng.randrange(1000), f"{rng.randrange(10**6) / 1000:.3f}", rng.randrange(2),
             "2026-11-25", out.isoformat(sep=" "), updated.isoformat(sep=" "))
        )  # fmt: skip
    return rows


def test_fingerprints_agree_however_they_are_computed(server, source) -> None:
    """A day's fingerprint, the grouped scan of several days, and the hashes of the day's
    rows given back to the source as literals agree (a delta is checked that way)."""
    rng = random.Random(7)
    _insert(server, _random_rows(rng, range(1, 1500)))
    days = ["2026-11-24", "2026-11-25", "2026-11-26"]
    grouped = source_fingerprints(source, RESULT, days)
    for day in days:
        window = business_day_window(dt.date.fromisoformat(day))
        with source.consistent_reads(RESULT) as read:
            alone = source_fingerprint(read, RESULT, {"start": window[0], "end": window[1]})
            rows = read.rows(read.select_sql(RESULT, *window))
            given = read.arrow(read.engine.rows_hash_sql(RESULT, rows)).column(0)[0].as_py()
        assert alone == grouped[day], day
        assert (alone.rows, alone.checksum) == (rows.height, given), day
        assert alone.rows > 0


def test_a_corrected_source_gets_a_delta_snapshot_that_equals_a_full_read(
    server, source, tmp_path: Path
) -> None:
    rng = random.Random(11)
    _insert(server, _random_rows(rng, range(1, 400)))
    lake = LakeResource(root=str(tmp_path))
    table = extract_table(RESULT, "aps_input")
    key = "2026-11-25"
    first = snapshot_partition(source, lake, RESULT, table, key)
    assert first.action == "new" and first.snapshot.rows > 0
    assert snapshot_partition(source, lake, RESULT, table, key).action == "current"
    # a correction that moves updated_at forward: taken as a delta, proven by the checksum
    server.sql(
        "update result set qty = qty + 1, note = 'fixed', updated_at = '2027-01-01 00:00:00' "
        "where result_id in (select result_id from (select result_id from result "
        "where track_out_ts >= '2026-11-25' and track_out_ts < '2026-11-26' "
        "order by result_id limit 3) t);"
    )
    second = snapshot_partition(source, lake, RESULT, table, key)
    assert second.action == "new" and second.snapshot.method == "incremental"
    # a deleted row cannot be a delta: read whole again
    server.sql(
        "delete from result where track_out_ts >= '2026-11-25' and track_out_ts < "
        "'2026-11-26' order by result_id limit 1;"
    )
    third = snapshot_partition(source, lake, RESULT, table, key)
    assert third.snapshot.method == "full"
    from aps_etl.lib.lake import snapshots

    composed = snapshots.scan(lake, table, second.snapshot).collect().sort("result_id")
    start, end = business_day_window(DAY)
    assert third.snapshot.rows == second.snapshot.rows - 1
    full_now = source.extract(RESULT, start, end).sort("result_id")
    lake_now = snapshots.scan(lake, table, third.snapshot).collect().sort("result_id")
    assert lake_now.equals(full_now.select(lake_now.columns))
    assert composed.height == second.snapshot.rows


def test_drift_reads_information_schema(server, source) -> None:
    assert not detect_drift(source, RESULT)
    server.sql(
        "alter table result modify qty decimal(12,3) not null, drop column note, "
        "add column extra int;"
    )
    drift = detect_drift(source, RESULT)
    assert [c.name for c in drift.removed] == ["note"]
    assert [c.name for c in drift.added] == ["extra"]
    (change,) = drift.changed
    assert (change.name, change.found, change.reason) == (
        "qty", "decimal(12,3)", "fractions would be rounded"
    )  # fmt: skip
    with pytest.raises(SchemaDriftError, match="removed note"):
        check_drift(source, RESULT, "fail")


def test_a_query_spec_is_transpiled_and_its_columns_described(server, source) -> None:
    _insert(server, _random_rows(random.Random(3), range(1, 50)))
    spec = ExtractSpec(
        name="late_results",
        mode="query",
        query="select r.* from result r where r.track_out_ts >= {start} "
        "and r.track_out_ts < {end} and r.lot_id like 'LOT-%'",
        columns=RESULT.columns,
        nullable=RESULT.nullable,
        primary_key=RESULT.primary_key,
    )
    assert not detect_drift(source, spec)
    start, end = business_day_window(DAY)
    frame = source.extract(spec, start, end)
    same = source.extract(RESULT, start, end)
    assert frame.sort("result_id").equals(same.sort("result_id"))


def test_failures_are_named_in_one_line(server, source) -> None:
    wrong = source.model_copy(update={"password": "not-the-password"})
    with pytest.raises(DatabaseError) as refused:
        wrong.fetch_arrow("select 1")
    message = str(refused.value)
    assert "MariaDB database 'mes' at 127.0.0.1" in message and "Access denied" in message
    assert "not-the-password" not in message and not refused.value.transient
    closed = source.model_copy(update={"port": 1})
    with pytest.raises(DatabaseError, match="cannot connect to MariaDB") as unreachable:
        closed.fetch_arrow("select 1")
    assert unreachable.value.transient
    server.sql("alter table result drop column note;")
    with pytest.raises(SourceError, match="column note declared by the spec does not exist"):
        source.extract(RESULT, *business_day_window(DAY))
    server.sql("drop table result;")
    with pytest.raises(SourceError, match="source table 'result' does not exist"):
        detect_drift(source, RESULT)
    with pytest.raises(SourceError, match="source table 'result' does not exist"):
        source.extract(RESULT, *business_day_window(DAY))
    server.sql(
        DDL + "create database if not exists hr; create table if not exists hr.pay (id int);"
    )
    with pytest.raises(DatabaseError, match="denied") as denied:
        source.fetch_arrow("select * from hr.pay")
    assert "\n" not in str(denied.value) and "SELECT command denied" in str(denied.value)
    secret = ExtractSpec(name="pay", table="hr.pay", mode="full", columns={"id": pl.Int64})
    with pytest.raises(SourceError, match="extract pay failed on MariaDB.*denied"):
        source.extract(secret)


def test_unknown_engines_and_zones_are_refused_by_name(monkeypatch) -> None:
    with pytest.raises(UnknownEngine, match="unknown source engine 'db2'.*postgresql, mariadb"):
        engine_for("db2")
    with pytest.raises(ValueError, match="source time zone 'Mars/Base'"):
        engine_for("mariadb", "Mars/Base")
    from aps_etl.env.settings import resources_for, source_database

    monkeypatch.setenv("APS_SOURCE_ENGINE", "informix")
    with pytest.raises(ConfigurationError, match="unknown source engine 'informix'"):
        source_database("prod")
    monkeypatch.setenv("APS_SOURCE_ENGINE", "mariadb")
    monkeypatch.delenv("APS_SOURCE_HOST", raising=False)
    with pytest.raises(ConfigurationError, match="APS_SOURCE_HOST is not set"):
        source_database("prod")
    monkeypatch.setenv("APS_SOURCE_ENGINE", "mariadb")
    with pytest.raises(ConfigurationError, match="APS_ENV=local reads its embedded"):
        resources_for("local")
