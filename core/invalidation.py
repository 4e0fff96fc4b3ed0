"""Cache invalidation after a committed write: best-effort, on purpose.

The write decides the job's outcome. Once it committed, a cache that cannot be
told (Redis down, or answering MISCONF, OOM or READONLY) must not turn done
work into a failed job: a client that retries a "failed" create books twice.
So each step here is tried once, and a Redis error is logged and skipped.

What a skip costs: a cached entry that Redis still holds may outlive the write
until its TTL (CACHE_TTL_BOOKINGS, CACHE_TTL_BOOKING_PAGES, the flight and
route TTLs). A Redis that could not be reached serves no stale reads meanwhile,
and one restarted without persistence holds none.

The route answers beat keeps warm (core.warming.warm_routes) are computed again
only when one of two generations moved: the routes one (an import) or the
bookings one, which every write that moves a flight's space bumps (a booking
written, bulk bookings, space given back by an abandoned create). An answer
whose generations stay put only gets its TTL again, so a bump Redis skipped
leaves it behind by up to WARM_REFRESH_S plus its TTL, not its TTL alone.
"""

from __future__ import annotations

import logging
from typing import Any

import redis

from core import cache_keys
from core.cache import Cache

log = logging.getLogger(__name__)


def booking_written(cache: Cache, booking: dict[str, Any], ttl: int) -> None:
    """A booking was created or moved: its details and every cached list page are stale."""
    key = cache_keys.booking_details_key(booking["ref_id"])
    try:
        cache.invalidate_versioned(key, booking["version"], ttl)
    except redis.RedisError as exc:
        log.warning(
            "booking %s written, its cache entry not invalidated: %s", booking["ref_id"], exc
        )
    bookings_written(cache)


def bookings_written(cache: Cache) -> None:
    """Bookings were created: every cached list page, and every warmed route
    answer (their flights' space), is stale."""
    _bump(cache, cache_keys.BOOKING_PAGES_GENERATION)


def space_changed(cache: Cache) -> None:
    """Flights' booked space moved without a booking written (space given back):
    the route answers beat keeps warm are stale. They follow the bookings
    generation, so the list pages are filled again too (rare: a give-back)."""
    _bump(cache, cache_keys.BOOKING_PAGES_GENERATION)


def flights_imported(cache: Cache) -> None:
    """Every cached flight and route result predates the import."""
    _bump(cache, cache_keys.FLIGHTS_GENERATION)
    _bump(cache, cache_keys.ROUTES_GENERATION)


def _bump(cache: Cache, generation: str) -> None:
    try:
        cache.bump_generation(generation)
    except redis.RedisError as exc:
        log.warning("cache generation %s not bumped after a write: %s", generation, exc)
