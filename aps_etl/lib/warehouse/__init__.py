"""Target PostgreSQL: DDL, schema checks, and the Trino / ADBC partition loaders."""
