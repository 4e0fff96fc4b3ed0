"""Flights: identity, validation, chunked idempotent import, reads.

A flight number flies every day, so a flight is its number on a UTC date:
`flight_id` = `<flight_number>-<YYYYMMDD>`, stored as `_id` (unique for free,
and the fastest lookup there is). Importing the same flight again replaces
it: an import run twice leaves the same data.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from itertools import islice
from typing import Any

from marshmallow import ValidationError
from pymongo import ReplaceOne
from pymongo.database import Database
from pymongo.errors import BulkWriteError

from core.db import DUPLICATE_KEY
from core.errors import ValidationFailed
from core.schemas import FlightSchema

PUBLIC_FIELDS = (
    "flight_id",
    "flight_number",
    "airline",
    "origin",
    "destination",
    "departure_ts",
    "arrival_ts",
)
_schema = FlightSchema()


def flight_id(flight_number: str, departure: datetime) -> str:
    return f"{flight_number}-{departure.astimezone(UTC):%Y%m%d}"


def flight_document(data: dict[str, Any]) -> dict[str, Any]:
    """A validated flight (FlightSchema output) as stored."""
    departure = data["departure_ts"].astimezone(UTC)
    arrival = data["arrival_ts"].astimezone(UTC)
    fid = flight_id(data["flight_number"], departure)
    return {
        "_id": fid,
        "flight_id": fid,
        "flight_number": data["flight_number"],
        "airline": data["airline"],
        "origin": data["origin"],
        "destination": data["destination"],
        "departure_ts": departure,
        "arrival_ts": arrival,
        "duration_minutes": int((arrival - departure).total_seconds() // 60),
    }


def validate_flight(item: Any) -> dict[str, Any]:
    """The stored document for one raw flight, or ValidationFailed."""
    if not isinstance(item, dict):
        raise ValidationFailed(
            "A flight must be a JSON object.", errors={"_schema": ["Not an object."]}
        )
    try:
        return flight_document(_schema.load(item))
    except ValidationError as exc:
        raise ValidationFailed(
            "The flight has invalid fields; see errors.", errors=exc.messages
        ) from None


def public_flight(doc: dict[str, Any]) -> dict[str, Any]:
    return {name: doc.get(name) for name in PUBLIC_FIELDS}


def chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def write_flights(db: Database, docs: list[dict[str, Any]]) -> None:
    """Store a chunk of flights, each exactly once, in bulk.

    New flights go in with one insert_many (the fast path: ~3x single
    inserts); those that exist already (a re-import, or a redelivered job
    that had written part of its batch) are replaced in one bulk_write.
    """
    if not docs:
        return
    try:
        db.flights.insert_many(docs, ordered=False)
        return
    except BulkWriteError as exc:
        errors = exc.details.get("writeErrors", [])
        if any(e.get("code") != DUPLICATE_KEY for e in errors):
            raise
        existing = [docs[e["index"]] for e in errors]
    db.flights.bulk_write(
        [ReplaceOne({"_id": d["_id"]}, d, upsert=True) for d in existing], ordered=False
    )


Progress = Callable[[dict[str, int]], None]


def import_flights(
    db: Database,
    items: Iterable[Any],
    *,
    chunk_size: int,
    total: int | None = None,
    on_progress: Progress | None = None,
    first_index: int = 0,
) -> dict[str, Any]:
    """Validate and store flights chunk by chunk; a bad item never stops the batch.

    Returns {"total", "succeeded", "failed", "errors": [{"index", "problem"}]}.
    `items` may be a generator (files are streamed, never read whole).
    """
    done = succeeded = 0
    errors: list[dict[str, Any]] = []
    for chunk in chunks(items, chunk_size):
        docs = []
        for offset, item in enumerate(chunk):
            try:
                docs.append(validate_flight(item))
            except ValidationFailed as exc:
                errors.append({"index": first_index + done + offset, "problem": exc.to_problem()})
        write_flights(db, _last_wins(docs))
        done += len(chunk)
        succeeded += len(docs)
        if on_progress is not None:
            on_progress(
                {"total": total if total is not None else done, "done": done, "failed": len(errors)}
            )
    return {"total": done, "succeeded": succeeded, "failed": len(errors), "errors": errors}


def _last_wins(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One document per flight_id within a chunk (the last one given)."""
    return list({d["_id"]: d for d in docs}.values())


def get_flight(db: Database, fid: str) -> dict[str, Any] | None:
    doc = db.flights.find_one({"_id": fid})
    return public_flight(doc) if doc else None


def day_bounds(day: datetime) -> tuple[datetime, datetime]:
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return start, start + timedelta(days=1)


def flights_on(db: Database, origin: str, destination: str, day: datetime) -> list[dict[str, Any]]:
    """Flights origin -> destination departing on one UTC day, in departure order."""
    start, end = day_bounds(day)
    # The origin's departures of the day, filtered here: the index is on
    # (origin, departure_ts), and the embedded server scans the collection for
    # a filter on a field outside the index (measured).
    docs = db.flights.find({"origin": origin, "departure_ts": {"$gte": start, "$lt": end}})
    return sorted(
        (public_flight(d) for d in docs if d["destination"] == destination),
        key=lambda f: (f["departure_ts"], f["flight_id"]),
    )
