"""Scenario 1 (PRD §10.1) wiring: MES results -> lake -> APS input tables -> PostgreSQL."""

from __future__ import annotations

from aps_etl.domains.aps_input import logic
from aps_etl.domains.aps_input.schema import (
    APS_INPUT_CYCLE_TIME,
    APS_INPUT_LEAD_TIME,
    APS_INPUT_WIP,
)
from aps_etl.partitions import DAILY
from aps_etl.scenarios import DAILY_RUN, Scenario
from aps_etl.sources.assets import build_extract_assets, extract_key
from aps_etl.sources.mes import DAILY_SOURCES
from aps_etl.transforms import build_transform_asset

NAMESPACE = "aps_input"
OUTPUTS = (APS_INPUT_WIP, APS_INPUT_CYCLE_TIME, APS_INPUT_LEAD_TIME)


def _inputs(*names: str) -> dict:
    return {name: extract_key(NAMESPACE, name) for name in names}


# Every daily source table: what the source-change sensor compares with the lake.
DAILY_SPECS = DAILY_SOURCES

extract_assets = build_extract_assets(DAILY_SOURCES, NAMESPACE, DAILY)

transform_assets = [
    build_transform_asset(
        APS_INPUT_WIP,
        NAMESPACE,
        logic.aps_input_wip,
        _inputs("lot_history", "product", "route_step"),
        DAILY,
        "WIP per product and step at the end of the business day (WAIT and RUN lots).",
    ),
    build_transform_asset(
        APS_INPUT_CYCLE_TIME,
        NAMESPACE,
        logic.aps_input_cycle_time,
        _inputs("process_result", "lot_history", "product", "route_step"),
        DAILY,
        "Cycle time per product and step from the day's first passes of normal lots.",
    ),
    build_transform_asset(
        APS_INPUT_LEAD_TIME,
        NAMESPACE,
        logic.aps_input_lead_time,
        _inputs("lot_history"),
        DAILY,
        "Lead time (create to complete) per product of the lots completed that day.",
    ),
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
