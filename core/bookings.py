"""Bookings: their documents and events as stored, and reads of one booking
(lists of them: core.booking_lists).

Every write here is idempotent under redelivery: the booking's `ref_id` is
unique and each event's `_id` is derived from the job that wrote it, so a
message executed twice leaves one booking and one event.
"""

from __future__ import annotations

import contextlib
import itertools
import re
from datetime import UTC, datetime
from typing import Any

import redis
from pymongo import ASCENDING
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from core import cache_keys, measures, queued_jobs
from core.cache import Cache
from core.clock import EARLIEST, LATEST
from core.db import insert_many_new
from core.errors import ValidationFailed
from core.lifecycle import BKD, BOOKED, event_code

BOOKING_CREATED = "BOOKING_CREATED"
PUBLIC_FIELDS = (
    "ref_id",
    "awb",
    "flight_ids",
    "origin",
    "destination",
    "pieces",
    "weight_kg",
    "dimensions",
    "customer_id",
    "customer_name",
    "customer_email",
    "status",
    "version",
    "created_at",
    "updated_at",
)
# What a transition's request may say about it, kept on its event.
EVENT_DETAILS = ("location", "notes", "flight_number", "reason")
EVENT_FIELDS = ("type", "code", "status", "at_ts", "occurred_at", *EVENT_DETAILS, "job_id")
# Public tracking: what anyone who knows a ref_id may see. Nothing personal
# (no customer, no notes or reasons, which are free text a person wrote).
TRACKING_FIELDS = (
    "ref_id",
    "awb",
    "origin",
    "destination",
    "flight_ids",
    "pieces",
    "weight_kg",
    "volume_m3",
    "chargeable_weight_kg",
    "status",
)
TRACKING_EVENT_FIELDS = ("code", "status", "location", "at_ts", "occurred_at")


def event_id(job_id: str, event_type: str) -> str:
    """One event per (job, type): the redelivery guard for event inserts."""
    return f"{job_id}:{event_type}"


def new_event(
    ref_id: str,
    event_type: str,
    status: str,
    *,
    code: str | None,
    job_id: str,
    at: datetime,
    version: int | None = None,
    occurred_at: datetime | None = None,
    **data: Any,
) -> dict[str, Any]:
    """A booking's event as stored: its timeline entry, and its webhook
    event waiting to be dispatched (core.notifications: the events are the
    outbox, written with the change or again by its redelivery). `at` is when
    it was recorded (the timeline's order); `occurred_at`, a milestone's, when
    it happened as reported."""
    event = {
        "_id": event_id(job_id, event_type),
        "booking_id": ref_id,
        "type": event_type,
        "code": code,  # IATA FSU (core.lifecycle); None for a cancellation
        "status": status,
        "at_ts": at,
        "occurred_at": occurred_at,
        "job_id": job_id,
        "version": version,  # the booking's, once this change was made
        "dispatched": False,
    }
    for name in EVENT_DETAILS:
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
    awb: str | None = None,
) -> dict[str, Any]:
    """A new BOOKED booking as stored, owned by `customer_id`, with air waybill
    number `awb` (core.awb; left out, not null, without one: its unique index is sparse)."""
    booking = {
        "ref_id": ref_id,
        "customer_id": customer_id,
        "origin": data["origin"],
        "destination": data["destination"],
        "pieces": data["pieces"],
        "weight_kg": data["weight_kg"],
        "dimensions": data.get("dimensions"),
        "volume_cm3": measures.volume_cm3(data.get("dimensions")),
        "customer_name": data.get("customer_name"),
        "customer_email": data.get("customer_email"),
        "flight_ids": data.get("flight_ids"),
        "status": BOOKED,
        "version": 1,
        "created_at": now,
        "updated_at": now,
        "job_id": job_id,
    }
    if awb is not None:
        booking["awb"] = awb
    booking["list_keys"] = list_keys(booking)
    return booking


# -- the lists a booking belongs to ---------------------------------------------
#
# A list is one customer's bookings or everyone's, of one origin or any, to one
# destination or any (and of one status or any). Each booking stores the key of
# every list it is in (`list_keys`: the owner, origin and destination never
# change, so they are set once, at creation), and the list indexes lead with
# it, then the status (core.db.INDEXES): every filter the API offers is an
# equality on an index prefix, then the created_at window. One compound index
# per combination of the four filters would hold the same 16 entries per
# booking in 16 indexes, each one more slowing every insert.
LIST_KEY_FIELDS = ("customer_id", "origin", "destination")
ANY = "*"  # in a list key: the list does not filter on this field
LIST_KEY_SEPARATOR = "|"
LIST_KEYS_MIGRATION = "bookings-list-keys"  # its mark in the `migrations` collection


def list_key(
    customer_id: str | None = None, origin: str | None = None, destination: str | None = None
) -> str:
    """The key of the list of `customer_id`'s bookings (None: everyone's) from
    `origin` to `destination` (None: any)."""
    return LIST_KEY_SEPARATOR.join(value or ANY for value in (customer_id, origin, destination))


def list_keys(booking: dict[str, Any]) -> list[str]:
    """The keys of every list `booking` is in, sorted."""
    choices = [(booking.get(name), None) for name in LIST_KEY_FIELDS]
    return sorted({list_key(*values) for values in itertools.product(*choices)})


def list_keys_expression() -> dict[str, Any]:
    """list_keys as an aggregation expression, for an update pipeline."""
    choices = [({"$ifNull": [f"${name}", ANY]}, ANY) for name in LIST_KEY_FIELDS]
    keys = []
    for values in itertools.product(*choices):
        parts = [LIST_KEY_SEPARATOR] * (2 * len(values) - 1)
        parts[::2] = values
        keys.append({"$concat": parts})
    return {"$setUnion": [keys]}


def give_list_keys(db: Database) -> int:
    """Bookings stored before bookings had list keys get theirs: once per
    database (a mark in `migrations`: the update scans every booking), by
    core.migrations. Returns how many were given keys."""
    if db.migrations.find_one({"_id": LIST_KEYS_MIGRATION}) is not None:
        return 0
    given = db.bookings.update_many(
        {"list_keys": {"$exists": False}}, [{"$set": {"list_keys": list_keys_expression()}}]
    ).modified_count
    db.migrations.update_one({"_id": LIST_KEYS_MIGRATION}, {"$set": {"done": True}}, upsert=True)
    return given


def created_event(booking: dict[str, Any]) -> dict[str, Any]:
    return new_event(
        booking["ref_id"],
        BOOKING_CREATED,
        BOOKED,
        code=BKD,
        job_id=booking["job_id"],
        at=booking["created_at"],
        version=1,
    )


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
    """The owner's view: the stored fields, and the measures shown from them."""
    view = {name: doc.get(name) for name in PUBLIC_FIELDS}
    view.update(measures.shown(doc["weight_kg"], doc.get("volume_cm3")))
    return view


def public_event(doc: dict[str, Any]) -> dict[str, Any]:
    return {name: doc.get(name) for name in EVENT_FIELDS} | {"code": event_code(doc)}


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


def encode_cursor(doc: dict[str, Any], key: str = "ref_id") -> str:
    """A page boundary after `doc`: its created_at (epoch ms) and its `key`
    (webhook deliveries page the same way, by `_id`)."""
    millis = round(doc["created_at"].timestamp() * 1000)
    return f"{millis:013d}-{doc[key]}"


def decode_cursor(cursor: str, pattern: re.Pattern = CURSOR_PATTERN) -> tuple[datetime, str]:
    """(created_at, key) of a page boundary of `pattern`'s shape, clamped to the
    calendar: a boundary past its end pages from the newest, one before its
    start is empty."""
    if not pattern.fullmatch(cursor):
        raise ValidationFailed("Invalid cursor.", errors={"cursor": ["Invalid cursor."]})
    millis, key = cursor.split("-", 1)
    moment = datetime.fromtimestamp(int(millis) / 1000, UTC)
    return min(max(moment, EARLIEST), LATEST), key


# -- cached reads ----------------------------------------------------------------


def read_booking_details(
    db: Database, cache: Cache, ref_id: str, ttl: int
) -> dict[str, Any] | None:
    """Details from the cache, else from MongoDB (then cached unless a writer
    has already fenced this version out, or the timeline is mid-write)."""
    key = cache_keys.booking_details_key(ref_id)
    details = cache.get(key, cache_keys.BOOKING_DETAILS)
    if details is None:
        details = get_booking_details(db, ref_id)
        if details is not None and timeline_is_complete(details):
            cache.set_versioned(key, details["version"], details, ttl)
    else:
        # Cached before events had codes (for a TTL after an upgrade): coded the same way.
        for event in details["events"]:
            event.setdefault("code", event_code(event))
    return details


def booking_summary(
    db: Database, cache: Cache, queued_records: redis.Redis, ref_id: str
) -> dict[str, Any] | None:
    """{"status", "customer_id"} as last known: from cached details if any, else
    MongoDB; {"customer_id"} alone while its create is queued (core.queued_jobs.pending_create).

    Good enough to refuse an impossible transition (or a stranger) at the
    door; the worker decides again under the lock."""
    details = cache.get(cache_keys.booking_details_key(ref_id), cache_keys.BOOKING_DETAILS)
    if details is None:
        details = _summary(db, ref_id)
    if details is None:
        pending = queued_jobs.pending_create(db, queued_records, ref_id)
        if pending is not None:
            return pending
        details = _summary(db, ref_id)  # its create ended between the two reads
    if details is None:
        return None
    return {"status": details["status"], "customer_id": details.get("customer_id")}


def _summary(db: Database, ref_id: str) -> dict[str, Any] | None:
    return db.bookings.find_one({"ref_id": ref_id}, {"status": 1, "customer_id": 1})
