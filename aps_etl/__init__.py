"""aps-etl: MES results and APS plans -> S3 Parquet lake -> APS inputs and KPIs -> PostgreSQL."""

import os

# Return freed memory to the system at once instead of keeping it for reuse: a run's steps
# each build large frames one after another, and the allocators' retained pages would
# otherwise add up across steps (a 10M-row day peaked ~2.05 GB with the defaults, ~1.9 GB
# with these; benchmarks/). Set here, before Polars or pyarrow load their allocators; a
# value already in the environment wins.
for _name, _value in (
    ("ARROW_DEFAULT_MEMORY_POOL", "system"),  # pyarrow: glibc malloc, not mimalloc's arenas
    ("_RJEM_MALLOC_CONF", "dirty_decay_ms:0,muzzy_decay_ms:0"),  # Polars' jemalloc
    ("MALLOC_CONF", "dirty_decay_ms:0,muzzy_decay_ms:0"),  # the same, unprefixed builds
):
    os.environ.setdefault(_name, _value)
