"""The Parquet lake: layout, storage, atomic writes and the Dagster IO manager (built by
io_manager_factory.py when a step runs; io_manager.py is imported by it, not here)."""

from aps_etl.lib.business_days import PartitionKeyError, parse_partition_key
from aps_etl.lib.lake.atomic import ImmutablePartitionError
from aps_etl.lib.lake.io_manager_factory import LakeIOManagerFactory
from aps_etl.lib.lake.layout import LakeTable
from aps_etl.lib.lake.storage import LakeResource

__all__ = [
    "ImmutablePartitionError",
    "LakeIOManagerFactory",
    "LakeResource",
    "LakeTable",
    "PartitionKeyError",
    "parse_partition_key",
]
