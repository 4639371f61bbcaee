"""What the Dagster instance's yaml names (dagster.yaml, infra/dagster-dev.yaml,
infra/docker/dagster.yaml): run launchers with a worker health check, and the storages that
keep their connections.

May import: aps_etl.lib. Never imported by lib or defs (contracts in pyproject.toml)."""
