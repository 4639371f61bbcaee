"""Fingerprints: a cheap summary of the source rows of one partition, computed in the source.

A snapshot in the lake stores the fingerprint of the rows it was taken from; comparing it
with the source's fingerprint now says whether the partition changed since (corrected,
late, deleted or moved rows) without reading the rows.

A fingerprint is (row count, max updated_at, checksum), the checksum an order-independent
sum of a per-row hash that the source computes (the engine's `fingerprint_sql`: PostgreSQL's
`hash_record_extended`, the hash it partitions by; MD5 on MariaDB; see engines/):

- `key+updated_at` (specs with a primary key and updated_at, `composable`): the hash of
  (primary key, updated_at). A row added, removed or moved to another day, or any change
  that moves its updated_at (forwards or backwards), changes it.
- `row` (master data, plans: no updated_at): the hash of the whole row as extracted, so any
  change of any column changes it.

Since the checksum is a sum, a snapshot composed from the previous one plus the changed
rows has the previous checksum, minus the hashes of the rows it replaced, plus those of
the changed rows: the engine's `rows_hash_sql` has the source hash given rows, so the composition is
checked against the source's fingerprint without reading the day again.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from aps_etl.lib.lake.source_fingerprint import Fingerprint, Kind

if TYPE_CHECKING:
    from aps_etl.lib.sources.engines.base import SourceEngine
    from aps_etl.lib.sources.specs import ExtractSpec


def kind_of(spec: ExtractSpec) -> Kind:
    return "key+updated_at" if spec.composable else "row"


def iso(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:  # ADBC hands timestamptz aggregates back as UTC
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC).isoformat(timespec="microseconds")


def from_row(spec: ExtractSpec, row: tuple, engine: SourceEngine | None = None) -> Fingerprint:
    """A fingerprint query's row; `engine` reads a wall-clock source's newest change as an
    instant (a naive value is UTC otherwise)."""
    rows, newest, checksum = row
    if engine is not None:
        newest = engine.to_utc(newest)
    return Fingerprint(int(rows), iso(newest), str(checksum), kind_of(spec))
