"""The environments: `settings.resources_for` maps APS_ENV to a complete set of resources;
the embedded default (`local`), the dev stack's settings (`stack`, as infra/stack writes
them) and the container image's start checks (`container_start`).

May import: aps_etl.lib. Never imported by lib or defs (contracts in pyproject.toml)."""
