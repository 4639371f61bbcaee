"""The Dagster code location: one place that wires assets, checks, jobs and resources."""

import dagster as dg

defs = dg.Definitions(assets=[])
