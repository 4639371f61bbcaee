"""The code location loads, as `dagster dev` and the webserver load it."""

import datetime
import subprocess
import sys

import dagster as dg

from aps_etl.env.stack import REPO_ROOT


def test_definitions_load() -> None:
    from aps_etl.definitions import defs

    assert isinstance(defs, dg.Definitions)
    defs.get_repository_def().load_all_definitions()


def test_dagster_cli_lists_the_code_location() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-m", "aps_etl.definitions"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_daily_schedule_runs_the_day_that_just_ended() -> None:
    from aps_etl.definitions import defs

    schedule = defs.get_schedule_def("aps_daily_schedule")
    assert schedule.cron_schedule == "0 2 * * *"
    assert schedule.execution_timezone == "Asia/Seoul"
    # 2026-11-26 02:00 KST: the last complete business day is 2026-11-25 (D-1).
    context = dg.build_schedule_context(
        scheduled_execution_time=datetime.datetime.fromisoformat("2026-11-26T02:00:00+09:00")
    )
    (request,) = schedule.evaluate_tick(context).run_requests
    assert request.partition_key == "2026-11-25"


def test_every_job_runs_in_one_process_however_it_is_launched() -> None:
    from aps_etl.definitions import defs

    for name in ("aps_daily", "aps_plan_snapshot"):
        job = defs.resolve_job_def(name)
        assert job.executor_def.name == dg.in_process_executor.name, name
    # and ad hoc materializations (the UI's "Materialize", `dagster asset materialize`)
    implicit = defs.resolve_implicit_global_asset_job_def()
    assert implicit.executor_def.name == dg.in_process_executor.name


def test_plan_snapshots_share_one_lane_of_the_queue() -> None:
    from aps_etl.definitions import defs
    from aps_etl.defs.jobs import PLAN_LANE_TAG

    assert defs.resolve_job_def("aps_plan_snapshot").tags[PLAN_LANE_TAG] == "plan_snapshot"
    assert PLAN_LANE_TAG not in defs.resolve_job_def("aps_daily").tags


def test_scenarios_register_themselves_and_make_the_jobs_gates_and_loads() -> None:
    """Each package under aps_etl/defs/scenarios/ declares its SCENARIO; the jobs' selections, the
    gates and the loads come from that registry, nothing else lists the scenarios."""
    from aps_etl.definitions import defs
    from aps_etl.defs.load import load_key
    from aps_etl.defs.registry import DAILY_RUN, PLAN_RUN, SCENARIOS
    from aps_etl.defs.transforms import transform_key
    from aps_etl.defs.validation import gate_key

    assert [(s.prd, s.namespace, s.run) for s in SCENARIOS] == [
        ("10.1", "aps_input", DAILY_RUN),
        ("10.2", "aps_plan", PLAN_RUN),
        ("10.3", "aps_kpi", DAILY_RUN),
        ("10.4", "aps_balance", DAILY_RUN),
        ("3.4", "aps_master", DAILY_RUN),
    ]
    selected = {
        run: defs.resolve_job_def(run).asset_layer.executable_asset_keys
        for run in (DAILY_RUN, PLAN_RUN)
    }
    for scenario in SCENARIOS:
        other = PLAN_RUN if scenario.run == DAILY_RUN else DAILY_RUN
        for table in scenario.outputs:
            for key in (
                transform_key(scenario.namespace, table.name),
                load_key(scenario.namespace, table.name),
            ):
                assert key in selected[scenario.run] and key not in selected[other]
        for assets_def in scenario.assets:  # its own assets are in its run only
            assert set(assets_def.keys) <= selected[scenario.run]
    gate_deps = {
        run: set(defs.resolve_assets_def(gate_key(run)).asset_deps[gate_key(run)])
        for run in (DAILY_RUN, PLAN_RUN)
    }
    assert gate_deps[DAILY_RUN] == {
        transform_key(s.namespace, t.name)
        for s in SCENARIOS
        if s.run == DAILY_RUN
        for t in s.outputs
    }
    # the one line that lists them (aps_etl/defs/registry.py)
    line = "from aps_etl.defs.registry import SCENARIOS; print(*SCENARIOS, sep='\\n')"
    listing = subprocess.run(
        [sys.executable, "-c", line], capture_output=True, text=True, check=True, timeout=120
    ).stdout.splitlines()
    assert [line.split()[0] for line in listing] == ["§10.1", "§10.2", "§10.3", "§10.4", "§3.4"]
    assert "aps_plan_production, aps_plan_equipment, aps_plan_diff" in listing[1]


def _metrics_doc() -> dict[str, dict[str, str]]:
    """docs/metrics.md's column tables: table -> column -> "meaning (unit)"."""
    import re

    found: dict[str, dict[str, str]] = {}
    table, in_columns = None, False
    for line in (REPO_ROOT / "docs" / "metrics.md").read_text().splitlines():
        heading = re.match(r"^### `(\w+)`", line)
        if heading or line.startswith("## "):
            table, in_columns = (heading.group(1) if heading else None), False
        elif table and line.startswith("| column | unit | meaning"):
            in_columns = True
        elif in_columns and line.startswith("|") and not line.startswith("|---"):
            names, unit, *meaning = (cell.strip() for cell in line.strip().strip("|").split("|"))
            text = "|".join(meaning) + (f" ({unit})" if unit else "")
            for name in names.split(","):
                found.setdefault(table, {})[name.strip().strip("`")] = text
        elif in_columns and not line.strip():
            in_columns = False
    return found


def test_every_output_shows_its_column_schema_with_the_planners_words_before_any_run() -> None:
    """Transforms and loads carry `dagster/column_schema` from their declaration: PostgreSQL
    types, a description for every column, nullability, ranges and the grain; the
    descriptions are docs/metrics.md's, word for word (neither can drift from the other)."""
    from aps_etl.definitions import defs
    from aps_etl.defs.load import load_key
    from aps_etl.defs.registry import SCENARIOS
    from aps_etl.defs.transforms import transform_key

    doc = _metrics_doc()
    graph = defs.resolve_asset_graph()
    for scenario in SCENARIOS:
        for table in scenario.outputs:
            assert dict(table.docs) == doc[table.name], table.name
            for key in (
                transform_key(scenario.namespace, table.name),
                load_key(scenario.namespace, table.name),
            ):
                schema = graph.get(key).metadata["dagster/column_schema"]
                assert [c.name for c in schema.columns] == table.column_names, key
                assert all(c.description for c in schema.columns), key
                assert f"primary key ({', '.join(table.grain)})" in schema.constraints.other
                by_name = {c.name: c for c in schema.columns}
                for column in table.columns:
                    assert by_name[column.name].type == column.pg_type
                    assert by_name[column.name].constraints.nullable is column.nullable
    wip = graph.get(transform_key("aps_input", "aps_input_wip")).metadata["dagster/column_schema"]
    wip_lots = next(c for c in wip.columns if c.name == "wip_lots")
    assert wip_lots.constraints.other == [">= 1"]
    assert wip_lots.description.startswith("number of lots in WAIT or RUN")


def test_every_extract_shows_its_column_schema_before_any_run() -> None:
    """Extract snapshots carry their declared columns, PostgreSQL types, origin (with the
    contract's comment where it has one), nullability and primary key."""
    from aps_etl.definitions import defs
    from aps_etl.lib.sources.mes import DAILY_SOURCES, PLAN_SOURCES, ROUTE_STEP
    from aps_etl.lib.type_map import sql_type

    graph = defs.resolve_asset_graph()
    extracts = [k for k in graph.get_all_asset_keys() if k.path[0] == "extract"]
    assert len(extracts) == len(DAILY_SOURCES) + len(PLAN_SOURCES)
    by_namespace = [("aps_input", s) for s in DAILY_SOURCES] + [
        ("aps_plan", s) for s in PLAN_SOURCES
    ]
    for namespace, spec in by_namespace:
        key = dg.AssetKey(["extract", namespace, spec.name])
        assert key in extracts
        schema = graph.get(key).metadata["dagster/column_schema"]
        assert [c.name for c in schema.columns] == list(spec.columns), key
        for column in schema.columns:
            assert column.type == sql_type(spec.columns[column.name]).postgres
            assert column.constraints.nullable is (column.name in spec.nullable)
            assert column.description
        if spec.primary_key:
            assert f"primary key ({', '.join(spec.primary_key)})" in schema.constraints.other
    process = {c.name: c for c in ROUTE_STEP.table_schema().columns}["process_id"]
    assert process.description == "route_step.process_id: the kind of operation (PHOTO, ETCH, ...)"


def test_every_asset_says_what_it_is_who_owns_it_and_where_its_code_is() -> None:
    from aps_etl.definitions import defs

    graph = defs.resolve_asset_graph()
    descriptions = {}
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.description, key
        descriptions[key.to_user_string()] = node.description
        assert node.owners == ["team:aps-data-engineering"], key
        assert node.tags["aps_etl/stage"] == key.path[0], key
        assert node.metadata["dagster/code_references"].code_references, key
        if key.path[0] in ("extract", "transform", "load"):
            assert node.tags["aps_etl/scenario"] in {"10_1", "10_2", "10_3", "10_4", "3_4"}, key
            assert node.kinds, key
    kpis = [d for k, d in descriptions.items() if k.startswith("transform/aps_kpi/")]
    assert len(set(kpis)) == 3  # each KPI table its own words
    assert (
        "Which equipment group is the bottleneck"
        in descriptions["transform/aps_kpi/aps_kpi_bottleneck"]
    )


def test_asset_owners_are_a_setting(monkeypatch) -> None:
    from aps_etl.defs.attributes import owners
    from aps_etl.env.settings import ConfigurationError

    monkeypatch.setenv("APS_ASSET_OWNERS", "ops@fab.example, team:planning")
    assert owners() == ["ops@fab.example", "team:planning"]
    monkeypatch.setenv("APS_ASSET_OWNERS", "bob")
    import pytest

    with pytest.raises(ConfigurationError, match="APS_ASSET_OWNERS: bob: an owner is"):
        owners()


def test_transforms_show_where_their_carried_columns_come_from() -> None:
    from aps_etl.definitions import defs

    node = defs.resolve_asset_graph().get(dg.AssetKey(["transform", "aps_input", "aps_input_wip"]))
    lineage = node.metadata["dagster/column_lineage"].deps_by_column
    found = {
        column: sorted((d.asset_key.to_user_string(), d.column_name) for d in deps)
        for column, deps in lineage.items()
    }
    assert found == {
        "product_id": [
            ("extract/aps_input/lot_history", "product_id"),
            ("extract/aps_input/product", "product_id"),
        ],
        "step_id": [
            ("extract/aps_input/lot_history", "step_id"),
            ("extract/aps_input/route_step", "step_id"),
        ],
        "process_id": [("extract/aps_input/route_step", "process_id")],
    }


def test_each_load_maps_its_columns_to_its_transform_and_says_what_it_holds() -> None:
    from aps_etl.definitions import defs
    from aps_etl.defs.scenarios.aps_kpi.schema import APS_KPI_BOTTLENECK

    node = defs.resolve_asset_graph().get(dg.AssetKey(["load", "aps_kpi", "aps_kpi_bottleneck"]))
    assert node.description.startswith(APS_KPI_BOTTLENECK.description)
    lineage = node.metadata["dagster/column_lineage"].deps_by_column
    assert list(lineage) == APS_KPI_BOTTLENECK.column_names
    for column, (dep,) in lineage.items():
        assert dep.asset_key == dg.AssetKey(["transform", "aps_kpi", "aps_kpi_bottleneck"])
        assert dep.column_name == column
