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
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from typing import Any

from pymongo.database import Database

from core.flights import day_bounds, public_flight

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


def day_start(day: date) -> datetime:
    """The first instant of `day`, UTC."""
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
    start, end = day_bounds(day_start(day))
    connection = timedelta(minutes=min_connection_minutes)
    # The origin's departures of the day hold the direct flights as well.
    # Whole documents: on the embedded server a projection costs more than it
    # saves. Room is checked in join_legs, not here: that server scans the
    # collection for a filter on a field outside the (origin, departure_ts) index.
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
    start, end = day_bounds(day_start(day))
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

    # Pair cheaply, keep the best KEPT_OPTIONS, and only then build their dicts:
    # a busy route has thousands of pairs, and building an option costs more
    # than pairing it. Plain tuples, compared without a key function (flight
    # ids settle ties).
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
