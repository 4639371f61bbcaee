"""The Parquet lake: layout, storage, atomic writes and the Dagster IO manager."""

from aps_etl.calendar import PartitionKeyError, parse_partition_key
from aps_etl.lake.atomic import ImmutablePartitionError
from aps_etl.lake.io_manager import LakeIOManager
from aps_etl.lake.layout import LakeTable
from aps_etl.lake.storage import LakeResource

__all__ = [
    "ImmutablePartitionError",
    "LakeIOManager",
    "LakeResource",
    "LakeTable",
    "PartitionKeyError",
    "parse_partition_key",
]
