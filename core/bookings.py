"""Bookings: creation, reads and listing over MongoDB.

Every write here is idempotent under redelivery: the booking's `ref_id` is
unique and each event's `_id` is derived from the job that wrote it, so a
message executed twice leaves one booking and one event.
"""

from __future__ import annotations

import contextlib
import itertools
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import redis
from pymongo import ASCENDING, DESCENDING
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from core import cache as caches
from core import jobs
from core.cache import Cache
from core.clock import EARLIEST, LATEST
from core.db import insert_many_new
from core.errors import Conflict, ValidationFailed
from core.lifecycle import BOOKED

BOOKING_CREATED = "BOOKING_CREATED"
PUBLIC_FIELDS = (
    "ref_id",
    "flight_ids",
    "origin",
    "destination",
    "pieces",
    "weight_kg",
    "customer_id",
    "customer_name",
    "customer_email",
    "status",
    "version",
    "created_at",
    "updated_at",
)
EVENT_FIELDS = ("type", "status", "at_ts", "location", "notes", "flight_number", "reason", "job_id")
# Public tracking: what anyone who knows a ref_id may see. Nothing personal
# (no customer, no notes or reasons, which are free text a person wrote).
TRACKING_FIELDS = (
    "ref_id",
    "origin",
    "destination",
    "flight_ids",
    "pieces",
    "weight_kg",
    "status",
)
TRACKING_EVENT_FIELDS = ("status", "location", "at_ts")


def event_id(job_id: str, event_type: str) -> str:
    """One event per (job, type): the redelivery guard for event inserts."""
    return f"{job_id}:{event_type}"


def new_event(
    ref_id: str, event_type: str, status: str, *, job_id: str, at: datetime, **data: Any
) -> dict[str, Any]:
    event = {
        "_id": event_id(job_id, event_type),
        "booking_id": ref_id,
        "type": event_type,
        "status": status,
        "at_ts": at,
        "job_id": job_id,
    }
    for name in ("location", "notes", "flight_number", "reason"):
        event[name] = data.get(name)
    return event


def insert_event(db: Database, event: dict[str, Any]) -> None:
    # A duplicate was written by an earlier delivery of the same job.
    with contextlib.suppress(DuplicateKeyError):
        db.booking_events.insert_one(event)


def booking_document(
    ref_id: str,
    data: dict[str, Any],
    *,
    job_id: str,
    now: datetime,
    customer_id: str | None = None,
) -> dict[str, Any]:
    """A new BOOKED booking as stored, owned by `customer_id`."""
    return {
        "ref_id": ref_id,
        "customer_id": customer_id,
        "origin": data["origin"],
        "destination": data["destination"],
        "pieces": data["pieces"],
        "weight_kg": data["weight_kg"],
        "customer_name": data.get("customer_name"),
        "customer_email": data.get("customer_email"),
        "flight_ids": data.get("flight_ids"),
        "status": BOOKED,
        "version": 1,
        "created_at": now,
        "updated_at": now,
        "job_id": job_id,
    }


def created_event(booking: dict[str, Any]) -> dict[str, Any]:
    return new_event(
        booking["ref_id"],
        BOOKING_CREATED,
        BOOKED,
        job_id=booking["job_id"],
        at=booking["created_at"],
    )


def create_booking(
    db: Database, ref_id: str, data: dict[str, Any], **stored: Any
) -> dict[str, Any]:
    """Store a new BOOKED booking (booking_document's `stored` arguments: job_id,
    now, customer_id) and its BOOKING_CREATED event; returns the booking."""
    booking = booking_document(ref_id, data, **stored)
    try:
        db.bookings.insert_one(booking)
    except DuplicateKeyError:
        booking = db.bookings.find_one({"ref_id": ref_id})
        if booking is None or booking.get("job_id") != stored["job_id"]:
            # Two jobs drew the same ref_id (1 in 10^14): never merge them.
            raise Conflict(f"Booking {ref_id} already exists.") from None
    insert_event(db, created_event(booking))
    return booking


def insert_new(db: Database, docs: list[dict[str, Any]]) -> list[dict[str, Any] | None]:
    """Insert new bookings and their BOOKING_CREATED events, two bulk writes for
    all; returns, in order, each booking as stored: the doc, or the one an earlier
    delivery of the same job stored (its event written if missing), or None where
    another job's booking holds the ref_id (1 in 10^14)."""
    stored: list[dict[str, Any] | None] = list(docs)
    if not docs:
        return stored
    for index in insert_many_new(db.bookings, docs):
        existing = db.bookings.find_one({"ref_id": docs[index]["ref_id"]})
        mine = existing is not None and existing.get("job_id") == docs[index]["job_id"]
        stored[index] = existing if mine else None
    # Duplicates are events an earlier run already wrote.
    insert_many_new(db.booking_events, [created_event(doc) for doc in stored if doc is not None])
    return stored


def public_booking(doc: dict[str, Any]) -> dict[str, Any]:
    return {name: doc.get(name) for name in PUBLIC_FIELDS}


def public_event(doc: dict[str, Any]) -> dict[str, Any]:
    return {name: doc.get(name) for name in EVENT_FIELDS}


def tracking_view(details: dict[str, Any]) -> dict[str, Any]:
    """A booking's details as anyone may see them (see TRACKING_FIELDS)."""
    view = {name: details.get(name) for name in TRACKING_FIELDS}
    view["events"] = [
        {name: event.get(name) for name in TRACKING_EVENT_FIELDS} for event in details["events"]
    ]
    return view


def get_booking_details(db: Database, ref_id: str) -> dict[str, Any] | None:
    """The booking with its timeline, oldest event first; None if unknown."""
    booking = db.bookings.find_one({"ref_id": ref_id}, {"_id": 0})
    if booking is None:
        return None
    events = db.booking_events.find({"booking_id": ref_id}).sort("at_ts", ASCENDING)
    details = public_booking(booking)
    details["events"] = [public_event(e) for e in events]
    return details


def timeline_is_complete(details: dict[str, Any]) -> bool:
    """True when the last event matches the booking's status.

    A reader can land between a booking write and its event insert; such a
    view is correct to return but must not be cached.
    """
    events = details.get("events") or []
    return bool(events) and events[-1]["status"] == details["status"]


# A page boundary: the last item's created_at (epoch milliseconds, 13 digits)
# and ref_id. Every string of this shape is a cursor the list can start from,
# so the OpenAPI pattern says exactly what is accepted.
CURSOR_PATTERN = re.compile(r"^[0-9]{13}-RG[0-9A-Z]{9}$")


def encode_cursor(doc: dict[str, Any]) -> str:
    millis = round(doc["created_at"].timestamp() * 1000)
    return f"{millis:013d}-{doc['ref_id']}"


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """(created_at, ref_id) of a page boundary, clamped to the calendar: a
    boundary past its end pages from the newest, one before its start is empty."""
    if not CURSOR_PATTERN.fullmatch(cursor):
        raise ValidationFailed("Invalid cursor.", errors={"cursor": ["Invalid cursor."]})
    millis, ref_id = cursor.split("-", 1)
    moment = datetime.fromtimestamp(int(millis) / 1000, UTC)
    return min(max(moment, EARLIEST), LATEST), ref_id


# Pages are read in windows of created_at, newest first. A sorted, limited
# query over an open range is fine on mongod but materializes the whole range
# on the embedded server (1.1 s at 30K bookings, measured); a bounded window
# reads about what the page needs. Windows grow 4x until the page is full.
# (No index hint: a hinted find scans the whole index there, measured 3 s.)
FIRST_WINDOW = timedelta(minutes=10)
OLDEST_WINDOW_END = timedelta(days=365 * 30)
NEWEST_SORT = [("created_at", DESCENDING), ("ref_id", DESCENDING)]


def list_bookings(
    db: Database,
    *,
    limit: int,
    customer_id: str | None = None,
    status: str | None = None,
    origin: str | None = None,
    destination: str | None = None,
    cursor: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Newest first, keyset-paginated on (created_at, ref_id): stable while
    bookings are inserted, because a page boundary is a value, not an offset.

    With `customer_id`, that customer's bookings only. Its other filters are
    applied in code: the embedded server scans the whole collection when a
    filter names a field outside the index it would use (measured), and one
    index per combination would slow every booking insert."""
    filters = {
        k: v
        for k, v in (("status", status), ("origin", origin), ("destination", destination))
        if v is not None
    }
    in_code: dict[str, Any] = {}
    if customer_id is not None:
        filters, in_code = {"customer_id": customer_id}, filters

    def fetch(condition: dict[str, Any], want: int) -> list[dict[str, Any]]:
        found = db.bookings.find({**filters, **condition}, {"_id": 0}).sort(NEWEST_SORT)
        if not in_code:
            return list(found.limit(want))
        wanted = (d for d in found if all(d.get(k) == v for k, v in in_code.items()))
        return list(itertools.islice(wanted, want))

    docs: list[dict[str, Any]] = []
    if cursor:
        upper, ref_id = decode_cursor(cursor)
        docs += fetch({"created_at": upper, "ref_id": {"$lt": ref_id}}, limit + 1)
    else:
        upper = (now or datetime.now(UTC)) + timedelta(minutes=5)  # clock skew between hosts
    floor = upper - OLDEST_WINDOW_END
    window = FIRST_WINDOW
    while len(docs) <= limit and upper > floor:
        lower = max(upper - window, floor)
        docs += fetch({"created_at": {"$gte": lower, "$lt": upper}}, limit + 1 - len(docs))
        upper, window = lower, window * 4
    next_cursor = encode_cursor(docs[limit - 1]) if len(docs) > limit else None
    return {"items": [public_booking(d) for d in docs[:limit]], "next_cursor": next_cursor}


# -- cached reads ----------------------------------------------------------------


def read_booking_details(
    db: Database, cache: Cache, ref_id: str, ttl: int
) -> dict[str, Any] | None:
    """Details from the cache, else from MongoDB (then cached unless a writer
    has already fenced this version out, or the timeline is mid-write)."""
    key = caches.booking_details_key(ref_id)
    details = cache.get(key, caches.BOOKING_DETAILS)
    if details is None:
        details = get_booking_details(db, ref_id)
        if details is not None and timeline_is_complete(details):
            cache.set_versioned(key, details["version"], details, ttl)
    return details


def read_booking_page(
    db: Database, cache: Cache, ttl: int, *, limit: int, **filters: Any
) -> dict[str, Any]:
    generation = cache.generation(caches.BOOKING_PAGES_GENERATION)
    key = caches.booking_page_key(generation, {"limit": limit, **filters})
    page = cache.get(key, caches.BOOKING_PAGES)
    if page is None:
        page = list_bookings(db, limit=limit, **filters)
        cache.set(key, page, ttl)
    return page


def booking_summary(
    db: Database, cache: Cache, queued_records: redis.Redis, ref_id: str
) -> dict[str, Any] | None:
    """{"status", "customer_id"} as last known: from cached details if any, else
    MongoDB; {"customer_id"} alone while its create is queued (core.jobs.pending_create).

    Good enough to refuse an impossible transition (or a stranger) at the
    door; the worker decides again under the lock."""
    details = cache.get(caches.booking_details_key(ref_id), caches.BOOKING_DETAILS)
    if details is None:
        details = _summary(db, ref_id)
    if details is None:
        pending = jobs.pending_create(db, queued_records, ref_id)
        if pending is not None:
            return pending
        details = _summary(db, ref_id)  # its create ended between the two reads
    if details is None:
        return None
    return {"status": details["status"], "customer_id": details.get("customer_id")}


def _summary(db: Database, ref_id: str) -> dict[str, Any] | None:
    return db.bookings.find_one({"ref_id": ref_id}, {"status": 1, "customer_id": 1})
