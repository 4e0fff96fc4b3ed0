"""Time in RadiantGo: always timezone-aware UTC, always ISO 8601 with `Z` outward."""

from __future__ import annotations

import functools
from datetime import UTC, datetime


def utcnow() -> datetime:
    # MongoDB stores milliseconds; truncating here keeps what we return equal
    # to what we later read back.
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


# Memoized: a route result repeats each flight's times in many options, and
# warming a network formats ~1M of them (a third of its time before this).
# 16K entries are ~4 MB per process and warm as fast as 64K (measured).
@functools.lru_cache(maxsize=16_384)
def to_iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:  # pymongo without tz_aware; never expected, but be exact
        value = value.replace(tzinfo=UTC)
    value = value.astimezone(UTC)
    return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def from_iso(text: str) -> datetime:
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        raise ValueError("timestamp needs a UTC offset")
    return value.astimezone(UTC)
