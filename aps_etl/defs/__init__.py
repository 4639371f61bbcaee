"""Dagster objects only: the extract, transform, gate, load and report assets and their
checks, the jobs and schedules, the sensors and their alerts, one package per scenario under
scenarios/ (assets.py thin, logic.py pure, schema.py declared), and the registry listing them.
aps_etl/definitions.py merges them with the environment's resources.

May import: aps_etl.lib (and each other). Never: aps_etl.env, .instance, .cli. The scenario
packages never import each other (contracts in pyproject.toml)."""
