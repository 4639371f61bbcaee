"""The plant's business day: partition keys and their UTC windows."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta, timezone

PLANT_TZ = "Asia/Seoul"
# The contract fixes W(D) to [D 00:00+09:00, D+1 00:00+09:00): always 1440 minutes. A fixed offset
# rather than ZoneInfo(PLANT_TZ) keeps that true even for dates when Seoul observed DST (1987-88)
# and needs no tz database on the host.
PLANT_UTC_OFFSET = timezone(timedelta(hours=9), PLANT_TZ)

_KEY_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")  # ASCII digits only; \d matches other scripts


def business_day_window(day: date) -> tuple[datetime, datetime]:
    """[D 00:00+09:00, D+1 00:00+09:00) as UTC-aware datetimes."""
    start = datetime(day.year, day.month, day.day, tzinfo=PLANT_UTC_OFFSET)
    return start.astimezone(UTC), (start + timedelta(days=1)).astimezone(UTC)


class PartitionKeyError(ValueError):
    """A partition key that is not a business day (or cannot name a lake folder)."""


def parse_partition_key(key: str) -> date:
    """The business day of a partition key; only a real date written exactly `YYYY-MM-DD`."""
    expected = "expected a real calendar date written YYYY-MM-DD, e.g. 2026-03-10"
    if not isinstance(key, str) or _KEY_RE.fullmatch(key) is None:
        raise PartitionKeyError(f"invalid partition key {key!r}: {expected}")
    try:
        return date.fromisoformat(key)
    except ValueError as exc:  # right shape, impossible date such as 2026-02-30
        raise PartitionKeyError(f"invalid partition key {key!r}: {expected} ({exc})") from None


def business_days(until: date, days: int) -> list[str]:
    """The `days` business days ending with `until`, oldest first."""
    return [(until - timedelta(days=back)).isoformat() for back in range(days - 1, -1, -1)]


def last_complete_day(now: datetime | None = None) -> date:
    """Yesterday in the plant's time zone: the newest day whose window has closed."""
    now = now or datetime.now(UTC)
    return now.astimezone(PLANT_UTC_OFFSET).date() - timedelta(days=1)
