"""Itineraries a booking names: the flights, if they chain its route.

The booking path (core.group_commit) checks a request's `flight_ids` with these
rules before any space is reserved (core.reservations); a search (core.routes)
only ever offers itineraries that pass them.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pymongo.database import Database

from core.errors import Unprocessable
from core.flights import day_bounds


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
