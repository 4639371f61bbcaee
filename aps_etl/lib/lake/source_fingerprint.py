"""What a snapshot records of the source rows it was taken from: their count, newest change
and checksum, computed in the source (lib/sources/fingerprint.py computes them; the lake
keeps them in each snapshot's Parquet footer)."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass
from typing import Literal

Kind = Literal["key+updated_at", "row"]


@dataclass(frozen=True)
class Fingerprint:
    rows: int
    max_updated_at: str | None  # ISO 8601, UTC, microseconds; None without updated_at
    checksum: str  # a decimal integer (a sum of 64-bit hashes needs more than 64 bits)
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
