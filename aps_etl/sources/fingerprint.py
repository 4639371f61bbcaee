"""Fingerprints: a cheap summary of the source rows of one partition, computed in the source.

A snapshot in the lake stores the fingerprint of the rows it was taken from; comparing it
with the source's fingerprint now says whether the partition changed since (corrected,
late, deleted or moved rows) without reading the rows.

A fingerprint is (row count, max updated_at, checksum), the checksum an order-independent
sum of a per-row hash:

- `key+updated_at` (specs that are `composable`: a single integer key and updated_at): the
  hash mixes the key and updated_at in microseconds with integer arithmetic that
  PostgreSQL and Polars compute exactly alike, so the fingerprint of a snapshot composed
  in the pipeline (previous snapshot + delta) can be compared with the source's. A change
  of any row's updated_at, a row added, removed or moved to another day changes it.
- `row` (every other spec: master data, plans): a hash of the whole row's text, in the
  source only (UTC session time zone, so timestamps render the same in every session).
  Catches any change of any column.

Per row, with P = 2^31 - 1 (every intermediate fits in a bigint):
    a = key mod P, b = updated_at_us mod P (both made non-negative)
    x = (a * 48271 + b) mod P
    h = (x * x + a) mod P
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Literal

import polars as pl

if TYPE_CHECKING:
    from aps_etl.sources.specs import ExtractSpec

P = 2_147_483_647
M = 48_271
Kind = Literal["key+updated_at", "row"]


@dataclass(frozen=True)
class Fingerprint:
    rows: int
    max_updated_at: str | None  # ISO 8601, UTC, microseconds; None without updated_at
    checksum: str  # a decimal integer (sums exceed 64 bits on large tables)
    kind: Kind

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict) -> Fingerprint:
        return cls(
            rows=int(data["rows"]),
            max_updated_at=data.get("max_updated_at"),
            checksum=str(data["checksum"]),
            kind=data["kind"],
        )

    def describe(self) -> str:
        newest = f", newest change {self.max_updated_at}" if self.max_updated_at else ""
        return f"{self.rows:,} rows{newest}, checksum {self.checksum}"

    def watermark(self) -> dt.datetime | None:
        return dt.datetime.fromisoformat(self.max_updated_at) if self.max_updated_at else None


def kind_of(spec: ExtractSpec) -> Kind:
    return "key+updated_at" if spec.composable else "row"


def _iso(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:  # ADBC hands timestamptz aggregates back as UTC
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC).isoformat(timespec="microseconds")


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def fingerprint_sql(spec: ExtractSpec, select_sql: str, bucket: str | None = None) -> str:
    """The fingerprint of the rows `select_sql` (the spec's extract query) yields: one row
    (count, max updated_at, checksum as text), or one per `bucket` (a SQL expression over
    the query's columns, e.g. the business day of a timestamp) with the bucket first."""
    wm = spec.watermark_column
    bucket_col = f"{bucket} as bucket, " if bucket else ""
    newest = f"f.{_q(wm)}" if wm else "null::timestamptz"
    if spec.composable:
        key = f"f.{_q(spec.primary_key[0])}::bigint"
        us = f"(extract(epoch from f.{_q(wm)}) * 1000000)::bigint"  # type: ignore[arg-type]
        inner = (
            f"select {bucket_col}(({key} % {P}) + {P}) % {P} as a, "
            f"(({us} % {P}) + {P}) % {P} as b, {newest} as newest from ({select_sql}) f"
        )
        rows = f"select *, (a * {M} + b) % {P} as x from ({inner}) ab"
        checksum = f"sum((x * x % {P} + a) % {P})"
    else:
        rows = (
            f"select {bucket_col}hashtextextended(f::text, 0) as h, {newest} as newest "
            f"from ({select_sql}) f"
        )
        checksum = "sum(h)"
    head, tail = ("bucket, ", " group by bucket") if bucket else ("", "")
    return (
        f"select {head}count(*), max(newest), coalesce({checksum}, 0)::text from ({rows}) r{tail}"
    )


def from_row(spec: ExtractSpec, row: tuple) -> Fingerprint:
    rows, newest, checksum = row
    return Fingerprint(int(rows), _iso(newest), str(checksum), kind_of(spec))


def frame_fingerprint(spec: ExtractSpec, frame: pl.DataFrame | pl.LazyFrame) -> Fingerprint:
    """The same fingerprint computed in Polars, for `composable` specs only."""
    if not spec.composable:
        raise ValueError(f"extract spec {spec.name}: its fingerprint is computed in the source")
    wm, key = spec.watermark_column, spec.primary_key[0]
    a = ((pl.col(key).cast(pl.Int64) % P) + P) % P
    b = ((pl.col(wm).dt.epoch("us") % P) + P) % P
    x = (a * M + b) % P
    h = (x * x % P + a) % P
    out = (
        frame.lazy()
        .select(
            pl.len().alias("rows"),
            pl.col(wm).max().alias("newest"),
            # each h < 2^31: an Int64 sum overflows only past 4 billion rows
            h.sum().alias("checksum"),
        )
        .collect()
    )
    newest = out["newest"][0]
    return Fingerprint(
        int(out["rows"][0]), _iso(newest), str(int(out["checksum"][0])), "key+updated_at"
    )
