"""Route search: direct flights and one-transit connections, joined in code.

Two indexed range queries, whatever the schedule's size:
  departures   origin = A, departure in the day: the direct flights (to B)
               and the first legs (to any other X)
  second legs  destination = B, departure from the day's start to the end of the next day
then the legs are paired in memory by their common airport X. Never a scan of
the collection, never one query per first leg, never a $lookup.
"""

from __future__ import annotations

import bisect
import heapq
import json
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from typing import Any

from pymongo.database import Database

from core import cache as caches
from core.cache import Cache
from core.errors import Unprocessable
from core.flights import day_bounds, public_flight
from core.measures import cubic_centimetres, grams
from core.settings import Settings

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


def _has_room(leg: dict[str, Any], weight_g: int | None, volume_cm3: int | None) -> bool:
    """The test a reservation makes (core.reservations), of the measures asked
    for; a flight stored before flights had a capacity (or a volume) has no
    room to promise."""
    return (weight_g is None or leg.get("available_g", -1) >= weight_g) and (
        volume_cm3 is None or leg.get("available_cm3", -1) >= volume_cm3
    )


def _day_start(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def search_routes(
    db: Database,
    *,
    origin: str,
    destination: str,
    day: date,
    min_connection_minutes: int,
    weight_g: int | None = None,
    volume_cm3: int | None = None,
) -> dict[str, Any]:
    """All direct and one-transit options from origin to destination leaving on `day` (UTC),
    only those with `weight_g` and `volume_cm3` available on every leg, each if given.

    Returns {"direct": [...], "one_transit": [...], "counts": {...}}, each list
    sorted by arrival time, then total duration, and cut to KEPT_OPTIONS.
    """
    start, end = day_bounds(_day_start(day))
    connection = timedelta(minutes=min_connection_minutes)
    # The origin's departures of the day hold the direct flights as well.
    # Whole documents: on the embedded server a projection costs more than it
    # saves (290 legs: 12.9 ms projected, 10.0 ms whole, measured). Room is
    # checked in join_legs, not here: that server scans the collection for a
    # filter on a field outside the (origin, departure_ts) index.
    departures = list(
        db.flights.find({"origin": origin, "departure_ts": {"$gte": start, "$lt": end}})
    )
    firsts = [leg for leg in departures if leg["destination"] != destination]
    # No second leg can leave before the earliest first leg lands plus the
    # connection: a narrower range is fewer documents to read.
    earliest = min((leg["arrival_ts"] for leg in firsts), default=end) + connection
    seconds = (
        db.flights.find(
            {
                "destination": destination,
                "departure_ts": {"$gte": max(start, earliest), "$lt": end + timedelta(days=1)},
            }
        )
        if firsts
        else []
    )
    return join_legs(
        origin,
        destination,
        day,
        connection,
        direct=departures,
        firsts=firsts,
        seconds=seconds,
        weight_g=weight_g,
        volume_cm3=volume_cm3,
    )


def join_legs(
    origin: str,
    destination: str,
    day: date,
    connection: timedelta,
    *,
    direct: Iterable[dict[str, Any]],
    firsts: Iterable[dict[str, Any]],
    seconds: Iterable[dict[str, Any]],
    weight_g: int | None = None,
    volume_cm3: int | None = None,
) -> dict[str, Any]:
    """The search result from candidate legs, which may be a superset of what
    the two queries return: every condition of the definition is applied here,
    so the search and the warmer (which reads the legs once for all routes)
    build the same result."""
    start, end = day_bounds(_day_start(day))
    end_next = end + timedelta(days=1)
    if weight_g is not None or volume_cm3 is not None:
        direct, firsts, seconds = (
            [leg for leg in legs if _has_room(leg, weight_g, volume_cm3)]
            for legs in (direct, firsts, seconds)
        )
    direct = [
        leg
        for leg in direct
        if leg["origin"] == origin
        and leg["destination"] == destination
        and start <= leg["departure_ts"] < end
    ]
    firsts = [
        leg
        for leg in firsts
        if leg["origin"] == origin
        and start <= leg["departure_ts"] < end
        and leg["destination"] not in (origin, destination)
    ]
    onward: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for leg in seconds:
        if (
            leg["destination"] == destination
            and leg["origin"] not in (origin, destination)
            and start <= leg["departure_ts"] < end_next
        ):
            onward[leg["origin"]].append(leg)
    for legs in onward.values():
        legs.sort(key=lambda leg: leg["departure_ts"])
    departures = {via: [leg["departure_ts"] for leg in legs] for via, legs in onward.items()}

    # Pair cheaply, keep the best KEPT_OPTIONS, and only then build their dicts
    # (building every option was most of the join's time: ~2,700 per search).
    # Plain tuples, compared without a key function (flight ids settle ties).
    pairs = []
    for first in firsts:
        via = first["destination"]
        if via not in onward:
            continue
        ready = first["arrival_ts"] + connection
        departed = first["departure_ts"]
        for second in onward[via][bisect.bisect_left(departures[via], ready) :]:
            arrival = second["arrival_ts"]
            pairs.append((arrival, arrival - departed, first["flight_id"], second["flight_id"]))
    best = heapq.nsmallest(KEPT_OPTIONS, pairs)
    legs = {leg["flight_id"]: leg for leg in firsts}
    legs.update((leg["flight_id"], leg) for group in onward.values() for leg in group)
    transits = [_option([legs[first], legs[second]]) for *_, first, second in best]

    direct_options = sorted((_option([leg]) for leg in direct), key=_order)
    return {
        "direct": direct_options[:KEPT_OPTIONS],
        "one_transit": transits,
        "counts": {"direct": len(direct_options), "one_transit": len(pairs)},
    }


# -- cached search, popularity, warming ---------------------------------------------


SEARCHES = "stats:route_searches"  # sorted set "A-B" -> searches (not a cache key)
# Routes counted at most: any pair of valid codes can be searched, so the set is
# bounded (Cache.count's space-saving replacement). 50x the default
# WARM_TOP_ROUTES (20): a route searched more than 1/1000 of all searches is
# always kept, so the few the warmer reads are the truly popular ones, while a
# flood of one-off pairs only churns the tail. ~1000 x 60 bytes of Redis.
SEARCHES_KEPT = 1000


# -- the answer, as bytes ----------------------------------------------------------
#
# A search is cached as the HTTP answer itself (limit = KEPT_OPTIONS, all that
# is kept) and a hit is served as those bytes, never decoded. A smaller limit
# cuts the lists at byte offsets recorded when the answer was encoded, its
# "cuts": "<end of direct option 1>,<end of 2>,...;<end of transit option 1>,...".
_encoder = json.JSONEncoder(default=caches.json_default, separators=(",", ":"))


def route_answer(
    origin: str, destination: str, day: date, result: dict[str, Any]
) -> tuple[bytes, bytes]:
    """(cuts, body): the JSON body of GET /api/routes for `result`, as Flask
    would encode it (compact, key order kept, a final newline)."""
    encode = _encoder.encode
    parts = [
        f'{{"origin":{encode(origin)},"destination":{encode(destination)},'
        f'"date":{encode(day.isoformat())},"direct":['
    ]
    cuts = []
    for name, next_name in (("direct", "one_transit"), ("one_transit", "counts")):
        at, ends = sum(map(len, parts)), []
        for i, option in enumerate(result[name]):
            encoded = encode(option)
            parts.append("," + encoded if i else encoded)
            at += len(parts[-1])
            ends.append(str(at))
        cuts.append(",".join(ends))
        parts.append(f'],"{next_name}":' + ("[" if next_name == "one_transit" else ""))
    parts.append(encode(result["counts"]) + "}\n")
    # ensure_ascii (the encoder's default, as Flask's): one character is one byte
    return ";".join(cuts).encode(), "".join(parts).encode()


def cut_answer(cuts: bytes, body: bytes, limit: int) -> bytes:
    """The answer with at most `limit` options per list."""
    if limit >= KEPT_OPTIONS:
        return body
    pieces, at = [], 0
    for ends in cuts.split(b";"):
        if ends.count(b",") >= limit:  # more than `limit` options
            ends = ends.split(b",")
            pieces.append(body[at : int(ends[limit - 1])])
            at = int(ends[-1])
    pieces.append(body[at:])
    return b"".join(pieces)


def cached_search(
    db: Database,
    cache: Cache,
    *,
    origin: str,
    destination: str,
    day: date,
    min_connection_minutes: int,
    ttl: int,
    limit: int = KEPT_OPTIONS,
    weight_kg: float | None = None,
    volume_m3: float | None = None,
    count_search: bool = True,
) -> bytes:
    """The route search's JSON answer, from the cache or searched and stored
    under the generation current before the search.

    A search with `weight_kg` or `volume_m3` is cached under a key of its own
    (the weight in grams, the volume in cm3): filtering the plain answer
    instead could not be exact, as it holds only the KEPT_OPTIONS best
    options and `counts` of them all, where a weight needs the best options
    and the counts among those with room. A hit is then served as stored
    bytes alike, and a cached answer is never older than `ttl`, whatever its
    weight and volume.
    """
    if count_search:
        cache.count(SEARCHES, f"{origin}-{destination}", capacity=SEARCHES_KEPT)
    weight_g = None if weight_kg is None else grams(weight_kg)
    volume_cm3 = None if volume_m3 is None else cubic_centimetres(volume_m3)
    key = caches.route_key(origin, destination, day, weight_g, volume_cm3)
    found, generation = cache.get_answer(key, caches.ROUTES, caches.ROUTES_GENERATION)
    if found is None:
        result = search_routes(
            db,
            origin=origin,
            destination=destination,
            day=day,
            min_connection_minutes=min_connection_minutes,
            weight_g=weight_g,
            volume_cm3=volume_cm3,
        )
        found = route_answer(origin, destination, day, result)
        cache.set_answers({key: found}, ttl, generation)
    return cut_answer(*found, limit)


def search_ttl(settings: Settings) -> int:
    """How long a route search's answer stays cached (core.cache.space_ttl)."""
    return caches.space_ttl(settings.CACHE_TTL_ROUTES, settings.CACHE_TTL_BOOKINGS)


def answer_search(
    db: Database,
    cache: Cache,
    settings: Settings,
    *,
    origin: str,
    destination: str,
    day: date,
    limit: int,
    weight_kg: float | None = None,
    volume_m3: float | None = None,
) -> bytes:
    """A client's route search: cached_search with the settings' minimum
    connection and answer TTL."""
    return cached_search(
        db,
        cache,
        origin=origin,
        destination=destination,
        day=day,
        min_connection_minutes=settings.MIN_CONNECTION_MINUTES,
        ttl=search_ttl(settings),
        limit=limit,
        weight_kg=weight_kg,
        volume_m3=volume_m3,
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


WARM_DAYS = 2  # today and tomorrow (UTC)


class DepartureBoard:
    """Legs sorted by departure, sliced by time without a scan."""

    def __init__(self, legs: list[dict[str, Any]]):
        self.legs = legs
        self.departures = [leg["departure_ts"] for leg in legs]

    def between(self, start: datetime, end: datetime) -> list[dict[str, Any]]:
        low = bisect.bisect_left(self.departures, start)
        return self.legs[low : bisect.bisect_left(self.departures, end, lo=low)]


def legs_by_origin(db: Database, start: datetime, end: datetime) -> dict[str, list[dict[str, Any]]]:
    """Every flight departing in [start, end), by origin: one indexed range query
    per airport. (`distinct` scans on the embedded server, 1 s at 100,000
    flights; mongod walks the index.)"""
    found = {}
    for airport in sorted(db.flights.distinct("origin")):
        legs = list(
            db.flights.find({"origin": airport, "departure_ts": {"$gte": start, "$lt": end}})
        )
        if legs:
            found[airport] = legs
    return found


def warm_routes(
    db: Database,
    cache: Cache,
    routes: list[tuple[str, str]],
    *,
    today: date,
    min_connection_minutes: int,
    ttl: int,
    max_routes: int = 0,
) -> dict[str, Any]:
    """Cache today's and tomorrow's results for `routes`, then for the schedule's
    other routes (every origin with departures to every airport served) until
    `max_routes` are warm.

    The legs are read once, over the three days a search for today or tomorrow
    can touch, and each route is joined in memory: a whole network of 30
    airports (870 routes x 2 days) costs ~1 s of database time this way, where
    a search per route would cost ~50 s (measured at 100,000 flights).

    Answers show the legs' available space: `ttl` should be capped by
    core.cache.space_ttl, as a search's is.
    """
    # Read before the legs: values computed from legs that an import replaces
    # meanwhile are stored under the old generation, and read as misses.
    generation = cache.generation(caches.ROUTES_GENERATION)
    start = _day_start(today)
    by_origin = legs_by_origin(db, start, start + timedelta(days=WARM_DAYS + 1))
    by_destination: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for legs in by_origin.values():
        for leg in legs:
            by_destination[leg["destination"]].append(leg)
    for legs in (*by_origin.values(), *by_destination.values()):
        legs.sort(key=lambda leg: leg["departure_ts"])
    origins = {airport: DepartureBoard(legs) for airport, legs in by_origin.items()}
    destinations = {airport: DepartureBoard(legs) for airport, legs in by_destination.items()}
    empty = DepartureBoard([])
    wanted = dict.fromkeys(routes)
    for origin in by_origin:
        for destination in sorted(by_destination):
            if len(wanted) >= max_routes:
                break
            if origin != destination:
                wanted.setdefault((origin, destination))
    connection = timedelta(minutes=min_connection_minutes)
    values = {}
    for origin, destination in wanted:
        for day in (today + timedelta(days=i) for i in range(WARM_DAYS)):
            start = _day_start(day)
            firsts = origins.get(origin, empty).between(start, start + timedelta(days=1))
            result = join_legs(
                origin,
                destination,
                day,
                connection,
                direct=firsts,
                firsts=firsts,
                seconds=destinations.get(destination, empty).between(
                    start, start + timedelta(days=2)
                ),
            )
            values[caches.route_key(origin, destination, day)] = route_answer(
                origin, destination, day, result
            )
    cache.set_answers(values, ttl, generation)
    return {
        "routes": len(wanted),
        "keys": len(values),
        "legs_read": sum(len(legs) for legs in by_origin.values()),
    }


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


def check_booking_flights(
    db: Database, request: dict[str, Any], min_connection_minutes: int
) -> None:
    """A booking request's `flight_ids`, if it names any, chain its route; else 422."""
    if request.get("flight_ids"):
        check_itinerary(
            db,
            origin=request["origin"],
            destination=request["destination"],
            flight_ids=request["flight_ids"],
            min_connection_minutes=min_connection_minutes,
        )
