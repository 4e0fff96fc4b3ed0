"""Time in RadiantGo: always timezone-aware UTC, always ISO 8601 with `Z` outward."""

from __future__ import annotations

import functools
from datetime import UTC, date, datetime

# The calendar RadiantGo deals in: flights, searches and cursors outside it are
# refused as bad input (far from datetime's own edges, where arithmetic overflows).
EARLIEST_DAY, LATEST_DAY = date(2000, 1, 1), date(2099, 12, 31)
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)  # exclusive


def in_calendar(moment: datetime) -> bool:
    return EARLIEST <= moment < LATEST


def utcnow() -> datetime:
    # MongoDB stores milliseconds; truncating here keeps what we return equal
    # to what we later read back.
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def aware(moment: datetime) -> datetime:
    """`moment`, in UTC if it came without a zone (a client without tz_aware)."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


# Memoized: a route result repeats each flight's times in many options, and
# warming a network formats ~1M of them (a third of its time before this).
# 16K entries are ~4 MB per process and warm as fast as 64K (measured).
@functools.lru_cache(maxsize=16_384)
def to_iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    value = aware(value).astimezone(UTC)  # naive: pymongo without tz_aware; never expected
    return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")
