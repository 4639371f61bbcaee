"""docs/adding-a-source-table.md, followed with a throwaway source table (PRD §11: a new
source in one day): a spec appended to the daily sources is extracted, snapshotted,
checked (source rules, completeness), shown with its schema and drift-checked, with
nothing else edited. Runs in a process of its own on the embedded default."""

import textwrap
from pathlib import Path

from aps_etl_tests.pipeline_harness import run_script_on_embedded_default

SCRIPT = textwrap.dedent(
    """
    import datetime as dt, json, pathlib, sys
    import dagster as dg
    import polars as pl
    import pyarrow.parquet as pq

    from aps_etl.devdata import seed_source
    from aps_etl.env.embedded import SOURCE_DB, start_embedded_postgres
    # the new table in the source: shifts, one of them outside the day, one bad on D+1
    pg = start_embedded_postgres(pathlib.Path(sys.argv[1]) / "postgres")
    day = dt.date(2026, 11, 20)
    seed_source(pg.uri(SOURCE_DB), start_date=day, days=2, lots=200, progress=False)
    import adbc_driver_postgresql.dbapi as adbc
    with adbc.connect(pg.uri(SOURCE_DB), autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(
            "create table shift_calendar (shift_id text primary key, "
            "shift_start timestamptz not null, hours numeric(4, 1) not null, "
            "updated_at timestamptz not null default now())"
        )
        cur.execute(
            "insert into shift_calendar (shift_id, shift_start, hours) values "
            "('D-20', '2026-11-20 06:00+09', 12), ('N-20', '2026-11-20 18:00+09', 12), "
            "('N-19', '2026-11-19 18:00+09', 12), ('D-21', '2026-11-21 06:00+09', -1)"
        )

    # 1. the spec (aps_etl/lib/sources/mes.py), appended to the daily sources
    from aps_etl.lib.sources import mes
    from aps_etl.lib.sources.specs import TS, ExtractSpec

    SHIFT_CALENDAR = ExtractSpec(
        name="shift_calendar",
        table="shift_calendar",
        mode="incremental",
        partition_column="shift_start",
        columns={"shift_id": pl.String, "shift_start": TS, "hours": pl.Float64,
                 "updated_at": TS},
        primary_key=("shift_id",),
        rules={"hours > 0": pl.col("hours") > 0},
        drift_policy="fail",
        description="Shifts starting in D.",
    )
    mes.DAILY_SOURCES = (*mes.DAILY_SOURCES, SHIFT_CALENDAR)

    # what follows by itself
    from aps_etl.definitions import build_defs
    from aps_etl.env.settings import resources_for
    from aps_etl.lib.sources.drift import detect_drift
    from aps_etl_tests.pipeline_harness import run_daily

    defs = build_defs(resources_for("local"))
    key = dg.AssetKey(["extract", "aps_input", "shift_calendar"])
    node = defs.resolve_asset_graph().get(key)
    instance = dg.DagsterInstance.ephemeral()
    good = run_daily(resources_for("local"), "2026-11-20", instance)
    bad = run_daily(resources_for("local"), "2026-11-21", instance)
    (event,) = [e for e in good.get_asset_materialization_events() if e.asset_key == key]
    path = event.materialization.metadata["parquet_path"].value
    frame = pl.read_parquet(path)
    source = resources_for("local")["source"].process_config_and_initialize()
    print(json.dumps({
        "schema": [(c.name, c.type) for c in node.metadata["dagster/column_schema"].columns],
        "description": node.description,
        "checks": sorted(c.name for c in node.check_keys),
        "good": good.success,
        "good_checks": {e.check_name: e.passed for e in good.get_asset_check_evaluations()
                        if e.asset_key == key},
        "rows": sorted(frame["shift_id"].to_list()),
        "dtypes": [str(t) for t in frame.dtypes],
        "bad": bad.success,
        "bad_checks": {e.check_name: e.passed for e in bad.get_asset_check_evaluations()
                       if e.asset_key == key},
        "drift": bool(detect_drift(source, SHIFT_CALENDAR)),
    }, default=str))
    """
)


def test_a_new_source_table_is_its_spec(tmp_path: Path) -> None:
    got = run_script_on_embedded_default(SCRIPT, tmp_path)
    assert got["schema"] == [
        ["shift_id", "text"],
        ["shift_start", "timestamptz"],
        ["hours", "double precision"],
        ["updated_at", "timestamptz"],
    ]
    assert got["description"] == "Shifts starting in D."
    assert got["checks"] == ["completeness", "source_rules"]
    assert got["good"] and got["good_checks"] == {"source_rules": True, "completeness": True}
    assert got["rows"] == ["D-20", "N-20"]  # the day's window only
    assert got["dtypes"] == ["String", "Datetime(time_unit='us', time_zone='UTC')", "Float64",
                             "Datetime(time_unit='us', time_zone='UTC')"]  # fmt: skip
    # a row breaking the spec's rule refuses the day's snapshot, by the check
    assert not got["bad"] and got["bad_checks"]["source_rules"] is False
    assert not got["drift"]
