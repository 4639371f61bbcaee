"""Scenario 1 (PRD §10.1) wiring: MES results -> lake -> APS input tables -> PostgreSQL."""

from __future__ import annotations

from aps_etl.defs.extract import build_extract_assets, extract_key
from aps_etl.defs.scenario import DAILY_RUN, Scenario
from aps_etl.defs.scenarios.aps_input import logic
from aps_etl.defs.scenarios.aps_input.schema import OUTPUTS
from aps_etl.defs.transforms import build_transform_asset, logic_inputs
from aps_etl.lib.partitions import DAILY
from aps_etl.lib.sources.mes import DAILY_NAMESPACE, DAILY_SOURCES

NAMESPACE = DAILY_NAMESPACE

# Every daily source table: what the source-change sensor compares with the lake.
DAILY_SPECS = DAILY_SOURCES

extract_assets = build_extract_assets(DAILY_SOURCES, NAMESPACE, DAILY)

# One transform per declared output: `logic.<table name>(**extracts, day)`, its inputs the
# extracts its parameters name. A new output is its declaration (schema.py), its function
# (logic.py) and its test: docs/adding-an-output-table.md.
transform_assets = [
    build_transform_asset(
        output,
        NAMESPACE,
        getattr(logic, output.name),
        {name: extract_key(NAMESPACE, name) for name in logic_inputs(getattr(logic, output.name))},
        DAILY,
        output.description,
        input_columns={spec.name: list(spec.columns) for spec in DAILY_SOURCES},
    )
    for output in OUTPUTS
]


assets = [extract_assets, *transform_assets]

SCENARIO = Scenario(
    prd="10.1",
    title="MES results to APS inputs (WIP, cycle time, lead time)",
    namespace=NAMESPACE,
    run=DAILY_RUN,
    outputs=OUTPUTS,
    assets=tuple(assets),
)
