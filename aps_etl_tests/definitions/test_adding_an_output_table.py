"""docs/adding-an-output-table.md, followed with a throwaway table: a declaration and a logic
function are all it takes for the table to be validated, gated, loaded and shown; nothing
else in the project is edited. Runs in a process of its own (the scenario is patched
before the definitions are imported) on the embedded default."""

import textwrap
from pathlib import Path

from aps_etl_tests.pipeline_harness import run_script_on_embedded_default

SCRIPT = textwrap.dedent(
    """
    import datetime as dt, json, pathlib, sys
    import dagster as dg
    import polars as pl

    # 1. the declaration (schema.py) and 2. the logic (logic.py), as the doc writes them
    from aps_etl.defs.scenarios.aps_input import logic, schema
    from aps_etl.lib.output_tables import Column, OutputTable

    WORDS = "the day and the lots' current product and process"
    TABLE = OutputTable(
        name="aps_input_wip_by_process",
        description="WIP per product and process at the end of the business day.",
        docs={
            "base_date": WORDS, "product_id": WORDS, "process_id": WORDS,
            "wip_lots": "number of lots in WAIT or RUN in that process (lots)",
            "wip_qty": "their pieces (pieces)",
        },
        grain=("base_date", "product_id", "process_id"),
        columns=(
            Column("base_date", pl.Date()), Column("product_id", pl.String()),
            Column("process_id", pl.String()), Column("wip_lots", pl.Int64(), min=1),
            Column("wip_qty", pl.Int64(), min=0),
        ),
    )
    schema.OUTPUTS = (*schema.OUTPUTS, TABLE)

    def aps_input_wip_by_process(lot_history, product, route_step, day):
        lf = (
            logic.aps_input_wip(lot_history, product, route_step, day)
            .group_by("product_id", "process_id")
            .agg(wip_lots=pl.col("wip_lots").sum(), wip_qty=pl.col("wip_qty").sum())
        )
        return logic._finish(lf, TABLE, day)

    logic.aps_input_wip_by_process = aps_input_wip_by_process

    # what follows by itself
    from aps_etl.definitions import build_defs
    from aps_etl.devdata import seed_source
    from aps_etl.env.embedded import SOURCE_DB, TARGET_DB, start_embedded_postgres
    from aps_etl.defs.registry import SCENARIOS
    from aps_etl.env.settings import resources_for
    from aps_etl_tests.pipeline_harness import fetch, run_daily

    pg = start_embedded_postgres(pathlib.Path(sys.argv[1]) / "postgres")
    day = dt.date(2026, 11, 20)
    seed_source(pg.uri(SOURCE_DB), start_date=day, days=1, lots=300, progress=False)
    defs = build_defs(resources_for("local"))
    graph = defs.resolve_asset_graph()
    key = dg.AssetKey(["transform", "aps_input", TABLE.name])
    node = graph.get(key)
    in_job = defs.resolve_job_def("aps_daily").asset_layer.asset_graph.get_all_asset_keys()
    result = run_daily(resources_for("local"), day.isoformat(), dg.DagsterInstance.ephemeral())
    target = pg.uri(TARGET_DB)
    loaded = fetch(target, "select product_id, process_id, wip_lots, wip_qty "
                   f"from {TABLE.name} where base_date = $1 order by 1, 2", day)
    by_step = fetch(target, "select product_id, process_id, sum(wip_lots)::bigint as wip_lots, "
                    "sum(wip_qty)::bigint as wip_qty from aps_input_wip where base_date = $1 "
                    "group by 1, 2 order by 1, 2", day)
    print(json.dumps({
        "listed": str(SCENARIOS[0]),
        "parents": sorted(k.path[-1] for k in node.parent_keys),
        "description": node.description,
        "checks": sorted(c.name for c in node.check_keys),
        "schema": [c.name for c in node.metadata["dagster/column_schema"].columns],
        "in_job": key in in_job,
        "load_in_job": dg.AssetKey(["load", "aps_input", TABLE.name]) in in_job,
        "gate_waits": key in graph.get(dg.AssetKey(["validated", "aps_daily"])).parent_keys,
        "success": result.success,
        "loaded": loaded,
        "by_step": by_step,
    }, default=str))
    """
)


def test_a_new_output_table_is_its_declaration_and_its_logic(tmp_path: Path) -> None:
    got = run_script_on_embedded_default(SCRIPT, tmp_path)
    assert "aps_input_wip_by_process" in got["listed"]
    assert got["parents"] == ["lot_history", "product", "route_step"]
    assert got["description"] == "WIP per product and process at the end of the business day."
    assert got["checks"] == ["nulls", "ranges", "types"]
    assert got["schema"] == ["base_date", "product_id", "process_id", "wip_lots", "wip_qty"]
    assert got["in_job"] and got["load_in_job"] and got["gate_waits"]
    assert got["success"]
    # loaded into PostgreSQL (the table created from the declaration), and right
    assert got["loaded"] and got["loaded"] == got["by_step"]
