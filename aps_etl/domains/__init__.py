"""Pure business logic of the APS ETL: plain Polars, no Dagster, no I/O."""
