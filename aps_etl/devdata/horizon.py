"""The simulated time span and conversions between simulation seconds and timestamps.

The simulation counts whole seconds from ``t0`` (the first warm-up day, 00:00 Asia/Seoul).
Whole seconds keep every derived timestamp exact: a TRACK_IN event and its process_result
row share one integer, and no interval shrinks to zero length by rounding.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

PLANT_TZ = dt.timezone(dt.timedelta(hours=9), "Asia/Seoul")  # no daylight saving in Korea
DAY_S = 86_400
# Lots released during the warm-up days before start_date are the WIP of day 1.
WARMUP_DAYS = 2
TIMESTAMP = pa.timestamp("us", tz="UTC")


@dataclass(frozen=True)
class Horizon:
    start_date: dt.date
    days: int
    warmup_days: int = WARMUP_DAYS

    @property
    def first_date(self) -> dt.date:
        return self.start_date - dt.timedelta(days=self.warmup_days)

    @property
    def t0_epoch(self) -> int:
        """Epoch seconds of the first warm-up day, 00:00 plant time."""
        start = dt.datetime.combine(self.first_date, dt.time(), tzinfo=PLANT_TZ)
        return int(start.timestamp())

    @property
    def total_days(self) -> int:
        return self.warmup_days + self.days

    @property
    def t_end(self) -> int:
        """Snapshot instant (start_date + days, 00:00): nothing happens at or after it."""
        return self.total_days * DAY_S

    def day_start(self, day: dt.date) -> int:
        """Simulation second at which business day ``day`` begins."""
        return (day - self.first_date).days * DAY_S

    def timestamps(self, seconds: np.ndarray, null_mask: np.ndarray | None = None) -> pa.Array:
        micros = (np.asarray(seconds, dtype=np.int64) + self.t0_epoch) * 1_000_000
        return pa.array(micros, type=TIMESTAMP, mask=null_mask)
