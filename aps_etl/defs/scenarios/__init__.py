"""The scenarios of the PRD (§10.1 to §10.4), one package each: `schema.py` declares its
output tables, `logic.py` computes them (plain Polars or an in-process DuckDB over the
inputs it is handed: no Dagster, no lake, no database of its own) and `assets.py` wires that
logic into Dagster assets through the shared builders (defs/extract.py, defs/transforms.py,
defs/validation.py, defs/load.py) and declares its `SCENARIO`. The packages never import
each other (an import-linter contract in pyproject.toml); defs/registry.py lists them."""
