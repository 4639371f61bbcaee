"""The master-data dimensions (PRD §3.4, Upsert) wiring: the daily run's snapshots of the
master tables (scenario 1's extracts, read, not extracted again) -> lake -> merged by key
into PostgreSQL (load_mode "merge")."""

from __future__ import annotations

from aps_etl.defs.extract import extract_key
from aps_etl.defs.scenario import DAILY_RUN, Scenario
from aps_etl.defs.scenarios.aps_master import logic
from aps_etl.defs.scenarios.aps_master.schema import OUTPUTS
from aps_etl.defs.transforms import build_transform_asset, logic_inputs
from aps_etl.lib.partitions import DAILY
from aps_etl.lib.sources.mes import DAILY_NAMESPACE, DAILY_SOURCES

NAMESPACE = "aps_master"

transform_assets = [
    build_transform_asset(
        output,
        NAMESPACE,
        getattr(logic, output.name),
        {
            name: extract_key(DAILY_NAMESPACE, name)
            for name in logic_inputs(getattr(logic, output.name))
        },
        DAILY,
        output.description,
        input_columns={spec.name: list(spec.columns) for spec in DAILY_SOURCES},
    )
    for output in OUTPUTS
]

SCENARIO = Scenario(
    prd="3.4",
    title="Master-data dimensions, upserted by key (products, route steps, equipment)",
    namespace=NAMESPACE,
    run=DAILY_RUN,
    outputs=OUTPUTS,
    assets=tuple(transform_assets),
)
