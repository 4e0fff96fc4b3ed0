"""Redis caches: their key names, JSON values, hit/miss counters.

The cache is an accelerator, never the source of truth: when Redis cannot be
reached a read falls through to MongoDB and a write is skipped (and logged).

Two invalidation schemes keep stale data out without `KEYS` or `SCAN`:
- versioned entries (booking details): a writer leaves a tombstone holding the
  new version, and a reader's fill is refused when its version is older, so a
  slow reader can never put back what a writer just invalidated;
- generations (list pages): every key embeds a counter that a writer bumps, so
  all older pages become unreachable at once and expire on their own.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

import redis

from core.clock import to_iso

log = logging.getLogger(__name__)

REDIS_ERRORS = (redis.ConnectionError, redis.TimeoutError)

# -- key names (all of them) ---------------------------------------------------


def booking_details_key(ref_id: str) -> str:
    return f"booking:details:{ref_id}"


BOOKING_PAGES_GENERATION = "bookings:page:generation"


def booking_page_key(generation: int, query: dict[str, Any]) -> str:
    digest = hashlib.blake2b(json.dumps(query, sort_keys=True).encode()).hexdigest()[:24]
    return f"bookings:page:{generation}:{digest}"


def stats_key(kind: str, outcome: str) -> str:
    return f"cache:stats:{kind}:{outcome}"


# Cache kinds, for hit/miss counters.
BOOKING_DETAILS = "booking_details"
BOOKING_PAGES = "booking_pages"


# -- values ---------------------------------------------------------------------


def _default(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return to_iso(value)
    raise TypeError(f"cannot cache {type(value).__name__}")


def dumps(value: Any) -> str:
    return json.dumps(value, default=_default, separators=(",", ":"))


# Sets KEYS[1] to "<version>|<payload>" unless it holds a newer version.
# An empty payload is a tombstone: it reads as a miss but fences older fills.
_SET_IF_NOT_OLDER = """
local current = redis.call('GET', KEYS[1])
if current then
  local stored = tonumber(string.match(current, '^(%d+)|'))
  if stored and stored > tonumber(ARGV[1]) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. ARGV[2], 'EX', tonumber(ARGV[3]))
return 1
"""


class Cache:
    """JSON values in Redis, with hit/miss counters per kind."""

    def __init__(self, client: redis.Redis):
        self.redis = client
        self._set_if_not_older = client.register_script(_SET_IF_NOT_OLDER)

    def _count(self, kind: str, hit: bool) -> None:
        self.redis.incr(stats_key(kind, "hits" if hit else "misses"))

    def get(self, key: str, kind: str) -> Any | None:
        try:
            raw = self.redis.get(key)
            if raw is not None and "|" in raw[:24] and raw.split("|", 1)[0].isdigit():
                raw = raw.split("|", 1)[1] or None  # versioned entry or tombstone
            self._count(kind, raw is not None)
        except REDIS_ERRORS as exc:
            log.warning("cache read skipped: %s", exc)
            return None
        return json.loads(raw) if raw is not None else None

    def set(self, key: str, value: Any, ttl: int) -> None:
        try:
            self.redis.set(key, dumps(value), ex=ttl)
        except REDIS_ERRORS as exc:
            log.warning("cache write skipped: %s", exc)

    def set_versioned(self, key: str, version: int, value: Any, ttl: int) -> bool:
        """Fill `key` unless a writer already recorded a newer version."""
        try:
            return bool(self._set_if_not_older(keys=[key], args=[version, dumps(value), ttl]))
        except REDIS_ERRORS as exc:
            log.warning("cache write skipped: %s", exc)
            return False

    def invalidate_versioned(self, key: str, version: int, ttl: int) -> None:
        """Drop `key`'s value and fence out fills older than `version`."""
        self._set_if_not_older(keys=[key], args=[version, "", ttl])

    def generation(self, name: str) -> int:
        try:
            return int(self.redis.get(name) or 0)
        except REDIS_ERRORS as exc:
            log.warning("cache generation unknown: %s", exc)
            return -1

    def bump_generation(self, name: str) -> None:
        self.redis.incr(name)
