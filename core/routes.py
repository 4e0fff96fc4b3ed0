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
import time
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
# Sorted set "A-B" -> when it was last searched (epoch seconds): the warmer's
# "searched lately". Bounded the same way, by the latest.
SEARCHED_AT = "stats:route_searched_at"


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
        route = f"{origin}-{destination}"
        cache.count(SEARCHES, route, capacity=SEARCHES_KEPT)
        cache.touch(SEARCHED_AT, route, time.time(), capacity=SEARCHES_KEPT)
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
    return _routes(pairs)


def searched_lately(cache: Cache, since: float, n: int) -> list[tuple[str, str]]:
    """The `n` routes searched last, those searched at `since` (epoch s) or later."""
    return _routes(cache.seen_since(SEARCHED_AT, since, n))


def _routes(pairs: Iterable[str]) -> list[tuple[str, str]]:
    seen: dict[tuple[str, str], None] = {}
    for pair in pairs:
        origin, _, destination = pair.partition("-")
        if len(origin) == 3 and len(destination) == 3 and origin != destination:
            seen[(origin, destination)] = None
    return list(seen)


WARM_DAYS = 2  # today and tomorrow (UTC)
WRITE_BATCH = 100  # answers held before they are written (~60 KB each unencoded)

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
    start = _day_start(today)
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
            day_start = _day_start(day)
            firsts = origins[origin].between(day_start, day_start + timedelta(days=1))
            result = join_legs(
                origin,
                destination,
                day,
                connection,
                direct=firsts,
                firsts=firsts,
                seconds=arrivals.between(day_start, day_start + timedelta(days=2)),
            )
            batch[caches.route_key(origin, destination, day)] = route_answer(
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
    inputs = cache.generations(caches.ROUTES_GENERATION, caches.BOOKING_PAGES_GENERATION)
    if inputs is None:
        return {"routes": len(routes), "keys": 0, "computed": 0, "legs_read": 0}
    generation, bookings = inputs
    days = [today + timedelta(days=i) for i in range(WARM_DAYS)]
    keys = {
        caches.route_key(origin, destination, day): (origin, destination, day)
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
