"""Plain code the definitions are built from, building no asset, job or sensor at import: the
business calendar and partitions, table declarations and the one type map, the lake, the
source (specs, extraction, drift, change detection), the warehouse (DDL, loaders, the atomic
swap), the classes the resources and the IO manager are made of, the partitions
definitions, redaction and errors.

May import: nothing of aps_etl outside lib (contracts in pyproject.toml). Kept free of
Dagster at import where infra/stack uses it (trino_session)."""
