"""Re-extraction as an explicit, logged operator action that keeps the old snapshot.

Extract partitions are write-once. When one must be taken again (a source correction, say),
the operator supersedes it: the current file moves to
`<root>/_superseded/<stage>/job_name=<job>/<dim>=<key>/<table>/<UTC timestamp>.parquet`,
and the next run extracts afresh. Nothing is deleted.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from aps_etl.lake.layout import LakeTable
from aps_etl.lake.storage import LakeResource

log = logging.getLogger("aps_etl.lake")

SUPERSEDED = "_superseded"


@dataclass(frozen=True)
class Superseded:
    partition: str
    moved_from: str
    kept_at: str


def supersede(
    lake: LakeResource, table: LakeTable, key: str, *, now: dt.datetime | None = None
) -> Superseded:
    source = lake.uri(*table.file_parts(key))
    if not lake.fs.exists(source):
        raise FileNotFoundError(f"no lake partition to supersede at {source}")
    stamp = (now or dt.datetime.now(dt.UTC)).strftime("%Y%m%dT%H%M%S%fZ")
    kept = lake.uri(SUPERSEDED, *table.partition_parts(key), f"{stamp}.parquet")
    # Copy first, then remove: a crash in between leaves two copies, never none.
    lake.fs.copy(source, kept)
    lake.fs.rm(source)
    log.warning("superseded lake partition %s; the old snapshot is kept at %s", source, kept)
    return Superseded(key, source, kept)
