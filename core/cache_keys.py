"""The names of Redis cache entries, of their generations and of their counters.

Every key a cache entry is stored under is made here, so what `Cache.clear`
may delete (CACHE_PREFIXES) and what the callers write cannot drift apart.
"""

from __future__ import annotations

import hashlib
import json
from datetime import date
from typing import Any


def booking_details_key(ref_id: str) -> str:
    return f"booking:details:{ref_id}"


BOOKING_PAGES_GENERATION = "bookings:page:generation"


def booking_page_key(generation: int, query: dict[str, Any]) -> str:
    digest = hashlib.blake2b(json.dumps(query, sort_keys=True).encode()).hexdigest()[:24]
    return f"bookings:page:{generation}:{digest}"


def api_key_key(key_hash: str) -> str:
    """A customer's API key lookup, by the key's hash (the key itself is never stored)."""
    return f"users:key:{key_hash}"


LOOKUPS, MISSES = "lookups", "misses"


def stats_key(kind: str, counter: str) -> str:
    return f"cache:stats:{kind}:{counter}"


# Cache kinds, for hit/miss counters.
BOOKING_DETAILS = "booking_details"
BOOKING_PAGES = "booking_pages"
ROUTES = "routes"
FLIGHTS = "flights"
USERS = "users"
KINDS = (BOOKING_DETAILS, BOOKING_PAGES, ROUTES, FLIGHTS, USERS)

# Generations for caches whose keys must keep the spec's names
# (routes:<origin>:<destination>:<date>, flights:...): the value records the
# generation it was computed under, and a bump (a flight import) makes every
# older value a miss at once.
ROUTES_GENERATION = "cache:generation:routes"
FLIGHTS_GENERATION = "cache:generation:flights"

# What `Cache.clear` may delete: cache entries only, never locks (booking:ref:,
# flight:, bulk:operation:), jobs, counters or rate limits. Versioned entries
# (booking details, API keys) keep their version as a tombstone, and the
# generations stay: both are fences, not data (see Cache.clear).
CACHE_PREFIXES = ("booking:details:", "bookings:page:", "routes:", "flights:", "users:")


def flight_key(flight_id: str) -> str:
    return f"flights:{flight_id}"


def flight_list_key(origin: str, destination: str, day: str) -> str:
    return f"flights:{origin}:{destination}:{day}"


def route_key(
    origin: str,
    destination: str,
    day: date,
    weight_g: int | None = None,
    volume_cm3: int | None = None,
) -> str:
    """A route search's answer; one with a cargo weight (grams) or volume (cm3)
    has a key of its own."""
    key = f"routes:{origin}:{destination}:{day.isoformat()}"
    if weight_g is not None:
        key += f":{weight_g}g"
    if volume_cm3 is not None:
        key += f":{volume_cm3}cm3"
    return key
