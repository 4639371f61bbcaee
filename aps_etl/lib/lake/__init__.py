"""The Parquet lake: layout, storage, atomic writes and the Dagster IO manager."""

from aps_etl.lib.business_days import PartitionKeyError, parse_partition_key
from aps_etl.lib.lake.atomic import ImmutablePartitionError
from aps_etl.lib.lake.io_manager import LakeIOManager
from aps_etl.lib.lake.layout import LakeTable
from aps_etl.lib.lake.storage import LakeResource

__all__ = [
    "ImmutablePartitionError",
    "LakeIOManager",
    "LakeResource",
    "LakeTable",
    "PartitionKeyError",
    "parse_partition_key",
]
