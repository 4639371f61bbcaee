"""One package per scenario of the PRD (10.1 to 10.4): `schema.py` declares its output
tables, `logic.py` computes them (plain Polars or an in-process DuckDB over the inputs it is
handed: no Dagster, no lake, no database of its own) and `assets.py` wires that logic into
Dagster assets through the shared builders (sources/assets.py, transforms.py,
validation.py, warehouse/assets.py)."""
