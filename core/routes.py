"""Route search: direct flights and one-transit connections, joined in code.

Three indexed range queries, whatever the schedule's size:
  direct       origin = A, destination = B, departure in the day
  first legs   origin = A, departure in the day
  second legs  destination = B, departure from the day's start to the end of the next day
then the legs are paired in memory by their common airport X. Never a scan of
the collection, never one query per first leg, never a $lookup.
"""

from __future__ import annotations

import bisect
import heapq
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from typing import Any

from pymongo.database import Database

from core import cache as caches
from core.cache import Cache
from core.errors import Unprocessable
from core.flights import day_bounds, public_flight

LEG_FIELDS = {
    "flight_id": 1,
    "flight_number": 1,
    "airline": 1,
    "origin": 1,
    "destination": 1,
    "departure_ts": 1,
    "arrival_ts": 1,
}
# Options kept per list in a cached result; `limit` is applied on top.
KEPT_OPTIONS = 100


def _minutes(delta: timedelta) -> int:
    return int(delta.total_seconds() // 60)


def _option(legs: list[dict[str, Any]]) -> dict[str, Any]:
    departure, arrival = legs[0]["departure_ts"], legs[-1]["arrival_ts"]
    option = {
        "flights": [public_flight(leg) for leg in legs],
        "departure_ts": departure,
        "arrival_ts": arrival,
        "total_duration_minutes": _minutes(arrival - departure),
    }
    if len(legs) == 2:
        option["via"] = legs[0]["destination"]
        option["layover_minutes"] = _minutes(legs[1]["departure_ts"] - legs[0]["arrival_ts"])
    return option


def _order(option: dict[str, Any]) -> tuple:
    return (
        option["arrival_ts"],
        option["total_duration_minutes"],
        [f["flight_id"] for f in option["flights"]],
    )


def search_routes(
    db: Database, *, origin: str, destination: str, day: date, min_connection_minutes: int
) -> dict[str, Any]:
    """All direct and one-transit options from origin to destination leaving on `day` (UTC).

    Returns {"direct": [...], "one_transit": [...], "counts": {...}}, each list
    sorted by arrival time, then total duration, and cut to KEPT_OPTIONS.
    """
    start, end = day_bounds(datetime(day.year, day.month, day.day, tzinfo=UTC))
    connection = timedelta(minutes=min_connection_minutes)
    direct = db.flights.find(
        {"origin": origin, "destination": destination, "departure_ts": {"$gte": start, "$lt": end}},
        LEG_FIELDS,
    )
    firsts = [
        leg
        for leg in db.flights.find(
            {"origin": origin, "departure_ts": {"$gte": start, "$lt": end}}, LEG_FIELDS
        )
        if leg["destination"] not in (origin, destination)
    ]
    # No second leg can leave before the earliest first leg lands plus the
    # connection: a narrower range is fewer documents to read.
    earliest = min((leg["arrival_ts"] for leg in firsts), default=end) + connection
    seconds = (
        db.flights.find(
            {
                "destination": destination,
                "departure_ts": {"$gte": max(start, earliest), "$lt": end + timedelta(days=1)},
            },
            LEG_FIELDS,
        )
        if firsts
        else []
    )

    onward: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for leg in seconds:
        if leg["origin"] != origin:
            onward[leg["origin"]].append(leg)
    for legs in onward.values():
        legs.sort(key=lambda leg: leg["departure_ts"])
    departures = {via: [leg["departure_ts"] for leg in legs] for via, legs in onward.items()}

    # Pair cheaply, keep the best KEPT_OPTIONS, and only then build their dicts
    # (building every option was most of the join's time: ~2,700 per search).
    pairs = []
    for first in firsts:
        via = first["destination"]
        if via not in onward:
            continue
        ready = first["arrival_ts"] + connection
        for second in onward[via][bisect.bisect_left(departures[via], ready) :]:
            pairs.append(
                (
                    second["arrival_ts"],
                    second["arrival_ts"] - first["departure_ts"],
                    first["flight_id"],
                    second["flight_id"],
                    first,
                    second,
                )
            )
    best = heapq.nsmallest(KEPT_OPTIONS, pairs, key=lambda pair: pair[:4])
    transits = [_option([first, second]) for *_, first, second in best]

    direct_options = sorted((_option([leg]) for leg in direct), key=_order)
    return {
        "direct": direct_options[:KEPT_OPTIONS],
        "one_transit": transits,
        "counts": {"direct": len(direct_options), "one_transit": len(pairs)},
    }


# -- cached search, popularity, warming ---------------------------------------------


def route_key(origin: str, destination: str, day: date) -> str:
    return f"routes:{origin}:{destination}:{day.isoformat()}"


SEARCHES = "stats:route_searches"  # sorted set "A-B" -> searches (not a cache key)


def cached_search(
    db: Database,
    cache: Cache,
    *,
    origin: str,
    destination: str,
    day: date,
    min_connection_minutes: int,
    ttl: int,
    count_search: bool = True,
) -> dict[str, Any]:
    if count_search:
        cache.count(SEARCHES, f"{origin}-{destination}")
    return cache.through(
        route_key(origin, destination, day),
        caches.ROUTES,
        caches.ROUTES_GENERATION,
        ttl,
        lambda: search_routes(
            db,
            origin=origin,
            destination=destination,
            day=day,
            min_connection_minutes=min_connection_minutes,
        ),
    )


def popular_routes(cache: Cache, configured: str, top: int) -> list[tuple[str, str]]:
    """POPULAR_ROUTES from settings, then the most searched routes."""
    pairs = [p.strip().upper() for p in configured.split(",") if p.strip()]
    pairs += cache.top(SEARCHES, top)
    seen: dict[tuple[str, str], None] = {}
    for pair in pairs:
        origin, _, destination = pair.partition("-")
        if len(origin) == 3 and len(destination) == 3 and origin != destination:
            seen[(origin, destination)] = None
    return list(seen)


def warm_routes(
    db: Database,
    cache: Cache,
    routes: list[tuple[str, str]],
    *,
    today: date,
    min_connection_minutes: int,
    ttl: int,
) -> dict[str, Any]:
    """Compute and cache today's and tomorrow's results for `routes`."""
    keys = []
    for origin, destination in routes:
        for day in (today, today + timedelta(days=1)):
            generation = cache.generation(caches.ROUTES_GENERATION)
            result = search_routes(
                db,
                origin=origin,
                destination=destination,
                day=day,
                min_connection_minutes=min_connection_minutes,
            )
            cache.set_generational(route_key(origin, destination, day), result, ttl, generation)
            keys.append(route_key(origin, destination, day))
    return {"routes": len(routes), "keys": keys}


# -- itineraries named by a booking ------------------------------------------------


def check_itinerary(
    db: Database,
    *,
    origin: str,
    destination: str,
    flight_ids: list[str],
    min_connection_minutes: int,
) -> list[dict[str, Any]]:
    """The flights a booking names, if they chain origin -> destination; else 422."""
    legs = []
    for fid in flight_ids:
        leg = db.flights.find_one({"_id": fid})
        if leg is None:
            raise Unprocessable(
                f"No flight {fid!r}.", errors={"flight_ids": [f"Unknown flight {fid}."]}
            )
        legs.append(leg)
    reasons = []
    if legs[0]["origin"] != origin:
        reasons.append(f"{legs[0]['flight_id']} departs from {legs[0]['origin']}, not {origin}.")
    if legs[-1]["destination"] != destination:
        reasons.append(
            f"{legs[-1]['flight_id']} arrives at {legs[-1]['destination']}, not {destination}."
        )
    if len(legs) == 2:
        first, second = legs
        _, end = day_bounds(first["departure_ts"])
        if first["destination"] != second["origin"]:
            reasons.append(f"{first['flight_id']} and {second['flight_id']} do not connect.")
        elif first["destination"] in (origin, destination):
            reasons.append("The connection must be at a third airport.")
        if second["departure_ts"] < first["arrival_ts"] + timedelta(minutes=min_connection_minutes):
            reasons.append(f"The connection is shorter than {min_connection_minutes} minutes.")
        if second["departure_ts"] >= end + timedelta(days=1):
            reasons.append("The second flight leaves after the end of the next day.")
    if reasons:
        raise Unprocessable(" ".join(reasons), errors={"flight_ids": reasons})
    return legs
