"""Fingerprints: a cheap summary of the source rows of one partition, computed in the source.

A snapshot in the lake stores the fingerprint of the rows it was taken from; comparing it
with the source's fingerprint now says whether the partition changed since (corrected,
late, deleted or moved rows) without reading the rows.

A fingerprint is (row count, max updated_at, checksum), the checksum an order-independent
sum of a per-row hash that PostgreSQL computes (`hash_record_extended`: the hash it uses
for hash partitioning, stable across sessions, time zones and versions):

- `key+updated_at` (specs with a primary key and updated_at, `composable`): the hash of
  (primary key, updated_at). A row added, removed or moved to another day, or any change
  that moves its updated_at (forwards or backwards), changes it.
- `row` (master data, plans: no updated_at): the hash of the whole row as extracted, so any
  change of any column changes it.

Since the checksum is a sum, a snapshot composed from the previous one plus the changed
rows has the previous checksum, minus the hashes of the rows it replaced, plus those of
the changed rows: `rows_hash_sql` has the source hash given rows, so the composition is
checked against the source's fingerprint without reading the day again.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

import polars as pl

from aps_etl.lib.lake.source_fingerprint import Fingerprint, Kind

if TYPE_CHECKING:
    from aps_etl.lib.sources.specs import ExtractSpec


def kind_of(spec: ExtractSpec) -> Kind:
    return "key+updated_at" if spec.composable else "row"


def iso(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:  # ADBC hands timestamptz aggregates back as UTC
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC).isoformat(timespec="microseconds")


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _row_hash(spec: ExtractSpec) -> str:
    if spec.composable:
        assert spec.watermark_column is not None  # composable: it has updated_at
        columns = ", ".join(f"f.{_q(c)}" for c in (*spec.primary_key, spec.watermark_column))
        return f"hash_record_extended(row({columns}), 0)"
    return "hash_record_extended(f, 0)"


def fingerprint_sql(spec: ExtractSpec, select_sql: str, bucket: str | None = None) -> str:
    """The fingerprint of the rows `select_sql` (the spec's extract query) yields: one row
    (count, max updated_at, checksum as text), or one per `bucket` (a SQL expression over
    the query's columns `f`, e.g. the business day of a timestamp) with the bucket first."""
    wm = spec.watermark_column
    newest = f"max(f.{_q(wm)})" if wm else "null::timestamptz"
    aggregates = f"count(*), {newest}, coalesce(sum({_row_hash(spec)}), 0)::text"
    if bucket is None:
        return f"select {aggregates} from ({select_sql}) f"
    return f"select {bucket} as bucket, {aggregates} from ({select_sql}) f group by 1"


def rows_hash_sql(spec: ExtractSpec, rows: pl.DataFrame) -> str:
    """The sum of the row hashes of `rows` (key and updated_at columns), computed by the
    source from literal values of the declared types: rows the source no longer holds
    (the previous versions of corrected rows) hash exactly as they did."""
    from aps_etl.lib.sources.specs import pg_type

    if not spec.composable:
        raise ValueError(f"extract spec {spec.name} has no primary key and updated_at")
    assert spec.watermark_column is not None  # composable: it has updated_at
    columns = [*spec.primary_key, spec.watermark_column]
    casts = [f"v.c{i}::{pg_type(spec.columns[c])}" for i, c in enumerate(columns)]
    # one SQL literal per value, built column-wise by Polars (thousands of rows)
    literals = rows.select(
        pl.concat_str([_literal(pl.col(c), rows.schema[c]) for c in columns], separator=", ")
    ).to_series()
    values = "(" + "), (".join(literals.to_list()) + ")"
    names = ", ".join(f"c{i}" for i in range(len(columns)))
    return (
        f"select coalesce(sum(hash_record_extended(row({', '.join(casts)}), 0)), 0)::text "
        f"from (values {values}) v({names})"
    )


def _literal(column: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    """A column's values as SQL literals (null as null)."""
    if dtype.is_integer():
        text = column.cast(pl.String)
    elif isinstance(dtype, pl.Datetime):
        # exact microseconds, in UTC (the transaction's time zone)
        utc = column.dt.convert_time_zone("UTC") if dtype.time_zone else column
        text = "'" + utc.dt.strftime("%Y-%m-%d %H:%M:%S%.6f") + "+00'"
    elif dtype == pl.Date:
        text = "'" + column.dt.strftime("%Y-%m-%d") + "'"
    elif dtype == pl.Boolean:
        text = column.cast(pl.String)
    else:
        text = "'" + column.cast(pl.String).str.replace_all("'", "''", literal=True) + "'"
    return text.fill_null("null")


def from_row(spec: ExtractSpec, row: tuple) -> Fingerprint:
    rows, newest, checksum = row
    return Fingerprint(int(rows), iso(newest), str(checksum), kind_of(spec))
