"""Flights: identity, validation, chunked idempotent import, reads.

A flight number flies every day, so a flight is its number on a UTC date:
`flight_id` = `<flight_number>-<YYYYMMDD>`, stored as `_id` (unique for free,
and the fastest lookup there is). Importing the same flight again updates its
schedule and capacity, never what is booked on it: an import run twice leaves
the same data.

Cargo space is kept in whole grams, so that reservations add and subtract
exactly: `capacity_g`, `booked_g` and `available_g` (capacity - booked, kept
beside it so a reservation is one conditional update; the reservations
themselves are documents of their own, core.reservations). The API speaks
kilograms.

Its volume is kept beside it in whole cubic centimetres, the same way:
`capacity_cm3`, `booked_cm3`, `available_cm3` (the API speaks m3). A flight
imported without `capacity_m3` gets the volume its weight capacity fills at
the IATA standard density (core.measures: 6,000 cm3 per kg, so 6 cm3 per
gram, exactly): a hold that is full by weight is then full by volume for
cargo of that density.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from itertools import islice
from typing import Any

from marshmallow import ValidationError
from pymongo.database import Database

from core import cache as caches
from core import cache_keys, measures
from core.cache import Cache
from core.db import insert_many_new
from core.errors import CapacityBelowBooked, NotFound, NotReady, RadiantError, ValidationFailed
from core.locks import FLIGHT_LOCK_TTL, LockManager, flight_lock_key
from core.measures import grams, kilograms
from core.schemas.flights import FlightSchema
from core.settings import Settings

FENCED_WRITE_TRIES = 3

SCHEDULE_FIELDS = (
    "flight_id",
    "flight_number",
    "airline",
    "origin",
    "destination",
    "departure_ts",
    "arrival_ts",
)
SPACE_FIELDS = ("capacity_kg", "booked_kg", "available_kg")
VOLUME_FIELDS = ("capacity_m3", "booked_m3", "available_m3")
PUBLIC_FIELDS = SCHEDULE_FIELDS + SPACE_FIELDS + VOLUME_FIELDS
_schema = FlightSchema()


def standard_volume_cm3(capacity_g: int) -> int:
    """The volume `capacity_g` fills at the IATA standard density."""
    return capacity_g * measures.CM3_PER_G


def flight_id(flight_number: str, departure: datetime) -> str:
    return f"{flight_number}-{departure.astimezone(UTC):%Y%m%d}"


def flight_document(data: dict[str, Any], default_capacity_kg: float) -> dict[str, Any]:
    """A validated flight (FlightSchema output) as stored, nothing booked yet."""
    departure = data["departure_ts"].astimezone(UTC)
    arrival = data["arrival_ts"].astimezone(UTC)
    fid = flight_id(data["flight_number"], departure)
    capacity_g = grams(data.get("capacity_kg") or default_capacity_kg)
    capacity_m3 = data.get("capacity_m3")
    capacity_cm3 = (
        standard_volume_cm3(capacity_g)
        if capacity_m3 is None
        else measures.cubic_centimetres(capacity_m3)
    )
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
        "capacity_g": capacity_g,
        "booked_g": 0,
        "available_g": capacity_g,
        "capacity_cm3": capacity_cm3,
        "booked_cm3": 0,
        "available_cm3": capacity_cm3,
    }


def validate_flight(item: Any, default_capacity_kg: float) -> dict[str, Any]:
    """The stored document for one raw flight, or ValidationFailed."""
    if not isinstance(item, dict):
        raise ValidationFailed(
            "A flight must be a JSON object.", errors={"_schema": ["Not an object."]}
        )
    try:
        return flight_document(_schema.load(item), default_capacity_kg)
    except ValidationError as exc:
        raise ValidationFailed(
            "The flight has invalid fields; see errors.", errors=exc.messages
        ) from None


def public_flight(doc: dict[str, Any]) -> dict[str, Any]:
    view = {name: doc.get(name) for name in SCHEDULE_FIELDS}
    for name in SPACE_FIELDS:
        g = doc.get(name.removesuffix("_kg") + "_g")
        view[name] = None if g is None else kilograms(g)
    for name in VOLUME_FIELDS:
        cm3 = doc.get(name.removesuffix("_m3") + "_cm3")
        view[name] = None if cm3 is None else measures.cubic_metres(cm3)
    return view


CAPACITY_MIGRATION = "flights-capacity"  # its mark in the `migrations` collection


def give_capacity(db: Database, default_capacity_kg: float) -> int:
    """Flights stored before flights had a capacity get the default, nothing
    booked: once per database (a mark in `migrations`: the update scans every
    flight, ~4 s for 100,000 on the embedded server), by core.migrations.
    Returns how many were given one."""
    if db.migrations.find_one({"_id": CAPACITY_MIGRATION}) is not None:
        return 0
    capacity_g = grams(default_capacity_kg)
    given = db.flights.update_many(
        {"capacity_g": {"$exists": False}},
        {
            "$set": {
                "capacity_g": capacity_g,
                "booked_g": 0,
                "available_g": capacity_g,
            }
        },
    ).modified_count
    db.migrations.update_one({"_id": CAPACITY_MIGRATION}, {"$set": {"done": True}}, upsert=True)
    return given


VOLUME_MIGRATION = "flights-volume"  # its mark in the `migrations` collection


def give_volume(db: Database) -> int:
    """Flights stored before flights had a volume get the one their weight
    capacity fills at the standard density (standard_volume_cm3), nothing
    booked: what they carry was booked without dimensions, so by weight
    alone. Once per database (a mark in `migrations`), by core.migrations
    after give_capacity. Returns how many were given one."""
    if db.migrations.find_one({"_id": VOLUME_MIGRATION}) is not None:
        return 0
    derived = {"$multiply": ["$capacity_g", measures.CM3_PER_G]}
    given = db.flights.update_many(
        {"capacity_cm3": {"$exists": False}, "capacity_g": {"$exists": True}},
        [{"$set": {"capacity_cm3": derived, "booked_cm3": 0, "available_cm3": derived}}],
    ).modified_count
    db.migrations.update_one({"_id": VOLUME_MIGRATION}, {"$set": {"done": True}}, upsert=True)
    return given


def chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


# What an import sets on a flight that exists: all but what is booked on it.
_BOOKED_FIELDS = (
    "_id",
    "booked_g",
    "available_g",
    "booked_cm3",
    "available_cm3",
    "pending",
    "pending_cm3",
)


def write_flights(
    db: Database, locks: LockManager, docs: list[tuple[int, dict[str, Any]]]
) -> list[tuple[int, RadiantError]]:
    """Store a chunk of flights ((item index, document)), each exactly once;
    returns the items refused, with their error.

    New flights go in with one insert_many (the fast path: ~3x single
    inserts). A flight that exists already (a re-import, or a redelivered job
    that had written part of its batch) keeps what is booked on it: it is
    updated under its flight lock, unless unchanged, and refused (409) if its
    new capacity (weight or volume) is below what is booked.
    """
    if not docs:
        return []
    existing = [docs[n] for n in insert_many_new(db.flights, [doc for _, doc in docs])]
    if not existing:
        return []
    stored = {
        d["_id"]: d for d in db.flights.find({"_id": {"$in": [doc["_id"] for _, doc in existing]}})
    }
    refused = []
    for index, doc in existing:
        if _unchanged(stored.get(doc["_id"]), doc):
            continue  # written by an earlier delivery of this import
        try:
            update_flight(db, locks, doc)
        except CapacityBelowBooked as exc:
            refused.append((index, exc))
    return refused


def _unchanged(stored: dict[str, Any] | None, doc: dict[str, Any]) -> bool:
    return stored is not None and all(
        stored.get(name) == value for name, value in doc.items() if name not in _BOOKED_FIELDS
    )


def update_flight(db: Database, locks: LockManager, doc: dict[str, Any]) -> None:
    """Give a stored flight `doc`'s schedule and capacity, under its flight lock,
    keeping its reservations; CapacityBelowBooked if the capacity (weight or
    volume) is below them."""
    fid = doc["_id"]
    with locks.hold(flight_lock_key(fid), FLIGHT_LOCK_TTL):
        for _ in range(FENCED_WRITE_TRIES):
            current = db.flights.find_one({"_id": fid}, {"booked_g": 1, "booked_cm3": 1})
            booked = current.get("booked_g", 0) if current else 0
            booked_cm3 = current.get("booked_cm3", 0) if current else 0
            _check_above_booked(fid, doc, booked, booked_cm3)
            fields = {k: v for k, v in doc.items() if k not in _BOOKED_FIELDS}
            fields["available_g"] = doc["capacity_g"] - booked
            fields["available_cm3"] = doc["capacity_cm3"] - booked_cm3
            if current is None or "booked_g" not in current:  # new, or stored before capacities
                fence = {"_id": fid, "booked_g": {"$exists": False}}
                fields["booked_g"] = 0
            else:  # the fence: nobody reserved meanwhile (our lock may have expired)
                fence = {"_id": fid, "booked_g": booked}
            if current is None or "booked_cm3" not in current:  # stored before volumes
                fields["booked_cm3"] = 0
            else:
                fence["booked_cm3"] = booked_cm3
            if db.flights.update_one(fence, {"$set": fields}, upsert=current is None).matched_count:
                return
            if current is None:
                return  # upserted
    raise NotReady(f"Flight {fid} kept changing under its update.")


def _check_above_booked(fid: str, doc: dict[str, Any], booked_g: int, booked_cm3: int) -> None:
    """CapacityBelowBooked, naming the measure, if `doc`'s capacity is below what is booked."""
    for measure, capacity, booked, shown, unit in (
        ("weight", doc["capacity_g"], booked_g, kilograms, "kg"),
        ("volume", doc["capacity_cm3"], booked_cm3, measures.cubic_metres, "m3"),
    ):
        if capacity < booked:
            raise CapacityBelowBooked(
                f"Flight {fid} has {shown(booked):g} {unit} booked: its capacity cannot"
                f" become {shown(capacity):g} {unit}.",
                flight_id=fid,
                short_of=measure,
            )


Progress = Callable[[dict[str, int]], None]


def import_flights(
    db: Database,
    locks: LockManager,
    items: Iterable[Any],
    *,
    chunk_size: int,
    default_capacity_kg: float,
    total: int | None = None,
    on_progress: Progress | None = None,
    first_index: int = 0,
) -> dict[str, Any]:
    """Validate and store flights chunk by chunk; a bad item never stops the batch.

    A flight without `capacity_kg` gets `default_capacity_kg`; one without
    `capacity_m3`, the volume its capacity fills at the standard density.
    Returns {"total", "succeeded", "failed", "errors": [{"index", "problem"}]}.
    `items` may be a generator (files are streamed, never read whole).
    """
    done = succeeded = 0
    errors: list[dict[str, Any]] = []
    for chunk in chunks(items, chunk_size):
        docs = []
        for offset, item in enumerate(chunk):
            index = first_index + done + offset
            try:
                docs.append((index, validate_flight(item, default_capacity_kg)))
            except ValidationFailed as exc:
                errors.append({"index": index, "problem": exc.to_problem()})
        refused = write_flights(db, locks, _last_wins(docs))
        errors += [{"index": index, "problem": exc.to_problem()} for index, exc in refused]
        errors.sort(key=lambda error: error["index"])
        done += len(chunk)
        succeeded += len(docs) - len(refused)
        if on_progress is not None:
            on_progress(
                {"total": total if total is not None else done, "done": done, "failed": len(errors)}
            )
    return {"total": done, "succeeded": succeeded, "failed": len(errors), "errors": errors}


def _last_wins(docs: list[tuple[int, dict[str, Any]]]) -> list[tuple[int, dict[str, Any]]]:
    """One document per flight_id within a chunk (the last one given)."""
    return list({doc["_id"]: (index, doc) for index, doc in docs}.values())


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


def _through_cache(cache: Cache, settings: Settings, key: str, load: Callable[[], Any]) -> Any:
    """A flight read through the flights cache: its space shows for at most
    the booking TTL (core.cache.space_ttl)."""
    ttl = caches.space_ttl(settings.CACHE_TTL_FLIGHTS, settings.CACHE_TTL_BOOKINGS)
    return cache.through(key, cache_keys.FLIGHTS, cache_keys.FLIGHTS_GENERATION, ttl, load)


def read_flight(db: Database, cache: Cache, settings: Settings, flight_id: str) -> dict[str, Any]:
    """A client's read of one flight, through the flights cache (NotFound if there is none)."""
    flight = _through_cache(
        cache, settings, cache_keys.flight_key(flight_id), lambda: get_flight(db, flight_id)
    )
    if flight is None:
        raise NotFound(f"No flight {flight_id!r}.")
    return flight


def read_flights_on(
    db: Database,
    cache: Cache,
    settings: Settings,
    *,
    origin: str,
    destination: str,
    day: datetime,
    limit: int,
) -> dict[str, Any]:
    """A client's list of the flights on a route and UTC day, through the flights
    cache: the first `limit`, and how many there are."""
    key = cache_keys.flight_list_key(origin, destination, day.isoformat())
    items = _through_cache(cache, settings, key, lambda: flights_on(db, origin, destination, day))
    return {"items": items[:limit], "count": len(items)}
