"""Warming: today's and tomorrow's answers of the routes clients search most,
kept cached by beat so that their searches are hits.

An answer is computed again only when its inputs changed (see warm_routes);
the others only get their TTL again.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from datetime import date, datetime, timedelta
from typing import Any

from pymongo.database import Database

from core import cache_keys
from core.cache import Cache
from core.route_answers import route_answer
from core.routes import day_start, join_legs

WARM_DAYS = 2  # today and tomorrow (UTC)
# Answers held before they are written: fewer round trips to Redis, with a
# bound on what the warmer holds in memory.
WRITE_BATCH = 100

# What each warmed answer was computed from, by its key: "<routes generation>|
# <bookings generation>|<epoch s computed>". Not under routes: so that
# Cache.clear, which drops the answers, leaves it (it only ever describes them).
WARMED = "cache:warmed:routes"


class DepartureBoard:
    """Legs sorted by departure, sliced by time without a scan."""

    def __init__(self, legs: list[dict[str, Any]]):
        self.legs = legs
        self.departures = [leg["departure_ts"] for leg in legs]

    def between(self, start: datetime, end: datetime) -> list[dict[str, Any]]:
        low = bisect.bisect_left(self.departures, start)
        return self.legs[low : bisect.bisect_left(self.departures, end, lo=low)]


def _board(db: Database, field: str, airport: str, start: datetime, end: datetime):
    """`airport`'s flights (as `field`: origin or destination) departing in
    [start, end): one indexed range query."""
    legs = list(db.flights.find({field: airport, "departure_ts": {"$gte": start, "$lt": end}}))
    legs.sort(key=lambda leg: leg["departure_ts"])
    return DepartureBoard(legs)


def _compute(
    db: Database,
    cache: Cache,
    wanted: list[tuple[str, str, date]],
    today: date,
    generation: int,
    *,
    min_connection_minutes: int,
    ttl: int,
) -> int:
    """Compute and store the answers of `wanted` (origin, destination, day),
    destination by destination: each destination's arrivals are read, used and
    dropped, so only the origins' departures (two days) are held throughout.
    Returns how many legs were read."""
    start = day_start(today)
    connection = timedelta(minutes=min_connection_minutes)
    by_destination: dict[str, list[tuple[str, str, date]]] = defaultdict(list)
    for route in wanted:
        by_destination[route[1]].append(route)
    origins: dict[str, DepartureBoard] = {}
    legs_read, batch = 0, {}
    for destination, arriving in by_destination.items():
        arrivals = _board(db, "destination", destination, start, start + timedelta(WARM_DAYS + 1))
        legs_read += len(arrivals.legs)
        for origin, _, day in arriving:
            if origin not in origins:
                origins[origin] = _board(db, "origin", origin, start, start + timedelta(WARM_DAYS))
                legs_read += len(origins[origin].legs)
            midnight = day_start(day)
            firsts = origins[origin].between(midnight, midnight + timedelta(days=1))
            result = join_legs(
                origin,
                destination,
                day,
                connection,
                direct=firsts,
                firsts=firsts,
                seconds=arrivals.between(midnight, midnight + timedelta(days=2)),
            )
            batch[cache_keys.route_key(origin, destination, day)] = route_answer(
                origin, destination, day, result
            )
            if len(batch) >= WRITE_BATCH:
                cache.set_answers(batch, ttl, generation)
                batch = {}
    cache.set_answers(batch, ttl, generation)
    return legs_read


def warm_routes(
    db: Database,
    cache: Cache,
    routes: list[tuple[str, str]],
    *,
    today: date,
    min_connection_minutes: int,
    ttl: int,
    refresh_s: float,
    now: float,
) -> dict[str, Any]:
    """Keep today's and tomorrow's answers for `routes` cached: compute those
    whose inputs changed, and only extend the others' TTL.

    An answer computed by an earlier warm is current while neither the routes
    generation (a flight import, a capacity change) nor the bookings
    generation (every write of a booking, which moves flights' space: see
    core.invalidation) moved since, and it is younger than `refresh_s`, the
    bound on the lag of a change that no generation recorded (a bump lost to
    a Redis error). Such an answer still in Redis gets `ttl` again; every
    other one (changed, too old, expired, filled by a search, new) is computed.

    Computed answers are joined in memory from legs read once per airport (a
    query per origin and per destination of the routes to compute: see
    _compute), and written WRITE_BATCH at a time. `ttl` should be capped by
    core.cache.space_ttl, as a search's is.
    """
    # Read before the legs: values computed from legs that a write changes
    # meanwhile carry the generations from before it, and are computed again.
    inputs = cache.generations(cache_keys.ROUTES_GENERATION, cache_keys.BOOKING_PAGES_GENERATION)
    if inputs is None:
        return {"routes": len(routes), "keys": 0, "computed": 0, "legs_read": 0}
    generation, bookings = inputs
    days = [today + timedelta(days=i) for i in range(WARM_DAYS)]
    keys = {
        cache_keys.route_key(origin, destination, day): (origin, destination, day)
        for origin, destination in routes
        for day in days
    }
    current = f"{generation}|{bookings}|"
    records = cache.records(WARMED, list(keys))
    unchanged = [
        key
        for key, record in records.items()
        if record and record.startswith(current) and now - float(record[len(current) :]) < refresh_s
    ]
    kept = set(cache.extend(unchanged, ttl))
    todo = [key for key in keys if key not in kept]
    legs_read = _compute(
        db,
        cache,
        [keys[key] for key in todo],
        today,
        generation,
        min_connection_minutes=min_connection_minutes,
        ttl=ttl,
    )
    computed = {key: f"{current}{now:.0f}" for key in todo}
    cache.set_records(WARMED, {**{k: records[k] for k in kept}, **computed})
    return {
        "routes": len(routes),
        "keys": len(keys),
        "computed": len(todo),
        "legs_read": legs_read,
    }
