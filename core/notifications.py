"""Webhook events: from what was written to one delivery per endpoint that wants it.

Nothing is sent where a change is made, and nothing about webhooks is in a
booking's way. What a webhook announces is written with the change that
causes it, in the same document, marked `dispatched: False` (the outboxes):
- a booking's events (core.bookings.new_event): booking.created, .departed,
  .arrived, .delivered, .cancelled, and .milestone for each milestone
  recorded (RCS, MAN, RCF, NFD); a redelivered job writes a missing one;
- a finished job (core.jobs): booking.failed for a create or a transition
  that failed, bulk.finished for a bulk import of bookings or statuses;
- webhook_events: a `webhook.test` that an endpoint's owner asked for.

dispatch() turns each into an event with its payload (webhook_events, kept
once however many endpoints get it) and a delivery per subscribed endpoint
(webhook_deliveries, sent by core.deliveries), then marks it dispatched. The
event id derives from its source and the delivery id from event and
endpoint, so a dispatch that dies half way and runs again, or two that race,
make each delivery once.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

import redis
from pymongo.database import Database

from core import bookings, customers, jobs, queues
from core.db import insert_many_new
from core.jobs import FAILED, public_job
from core.lifecycle import ARRIVED, BOOKED, CANCELLED, DELIVERED, DEPARTED, MILESTONES, event_code
from core.webhook_endpoints import EVENT_TYPES, TEST_EVENT, subscribes

(
    BOOKING_CREATED,
    BOOKING_DEPARTED,
    BOOKING_ARRIVED,
    BOOKING_DELIVERED,
    BOOKING_CANCELLED,
    BOOKING_MILESTONE,
    BOOKING_FAILED,
    BULK_FINISHED,
) = EVENT_TYPES

# A booking event's webhook event type: a milestone's (by its code), else its status's.
STATUS_EVENTS = {
    BOOKED: BOOKING_CREATED,
    DEPARTED: BOOKING_DEPARTED,
    ARRIVED: BOOKING_ARRIVED,
    DELIVERED: BOOKING_DELIVERED,
    CANCELLED: BOOKING_CANCELLED,
}
# The finished jobs announced: failed creates and transitions, every bulk import.
FAILURES = {queues.job_type(queues.CREATE_BOOKINGS), queues.job_type(queues.TRANSITION_BOOKINGS)}
BULK_IMPORTS = {
    queues.job_type(queues.IMPORT_BOOKINGS),
    queues.job_type(queues.UPDATE_STATUSES),
}
DISPATCH_BATCH = 500
PENDING = {"dispatched": False}
OUTBOXES = ("booking_events", "jobs", "webhook_events")


def event_id(source: str) -> str:
    """The webhook-id of what `source` (a booking event's or a job's id) announces:
    the same on every dispatch and every attempt (the receiver's idempotency key)."""
    return "msg_" + hashlib.sha256(source.encode()).hexdigest()[:24]


def delivery_id(event: str, endpoint: str) -> str:
    return "dlv_" + hashlib.sha256(f"{event} {endpoint}".encode()).hexdigest()[:24]


def payload(event: dict[str, Any]) -> dict[str, Any]:
    """What a receiver gets, as JSON: {"id", "type", "created_at", "data"}."""
    return {
        "id": event["_id"],
        "type": event["type"],
        "created_at": event["created_at"],
        "data": event["data"],
    }


def wants(endpoint: dict[str, Any], event: dict[str, Any], disabled: set[str]) -> bool:
    """Whether `endpoint` is sent `event`: enabled, subscribed to its type, and
    its owner's (or every booking's, for an operator's or the admin's that
    asked); a test goes to its own endpoint only. A disabled customer's
    endpoints get nothing."""
    if not endpoint.get("enabled", True) or endpoint.get("owner") in disabled:
        return False
    if event["type"] == TEST_EVENT:
        return event.get("endpoint_id") == endpoint["_id"]
    if not subscribes(endpoint, event["type"]):
        return False
    return bool(endpoint.get("all_bookings")) or endpoint.get("owner") in event["audience"]


def dispatch(
    db: Database, *, now: datetime, batch: int = DISPATCH_BATCH
) -> tuple[list[tuple[str, str]], bool]:
    """Dispatch what the outboxes hold, up to `batch` of each; returns the
    deliveries it made (to be sent now: (delivery id, endpoint id)), and
    whether more may be left."""
    endpoints = list(db.webhook_endpoints.find({"enabled": True}))
    if not endpoints:
        # Nobody to tell: mark the lot in one write each, reading none. (An
        # endpoint made meanwhile is owed only what is committed after it.)
        for name in OUTBOXES:
            db[name].update_many(PENDING, {"$set": {"dispatched": True}})
        return [], False
    changes = list(db.booking_events.find(PENDING).limit(batch))
    finished = list(db.jobs.find(PENDING).limit(batch))
    asked = list(db.webhook_events.find(PENDING).limit(batch))
    more = max(len(changes), len(finished), len(asked)) >= batch
    if not (changes or finished or asked):
        return [], False
    events = _booking_events(db, changes, now) + _job_events(finished, now)
    events = [e for e in events if e is not None]
    made: list[tuple[str, str]] = []
    if events or asked:
        disabled = customers.disabled_among(db, [e.get("owner") for e in endpoints])
        deliveries = []
        for event in events + asked:
            for endpoint in endpoints:
                if wants(endpoint, event, disabled):
                    deliveries.append(_delivery(event, endpoint, now))
        # The events delivered to nobody are not kept: they would be sent to no one.
        wanted = {d["event_id"] for d in deliveries}
        insert_many_new(db.webhook_events, [e for e in events if e["_id"] in wanted])
        refused = set(insert_many_new(db.webhook_deliveries, deliveries))
        # Those an earlier dispatch made are its to send (or the sweep's).
        made = [(d["_id"], d["endpoint_id"]) for n, d in enumerate(deliveries) if n not in refused]
    for collection, sources in (
        (db.booking_events, changes),
        (db.jobs, finished),
        (db.webhook_events, asked),
    ):
        if sources:
            ids = [s["_id"] for s in sources]
            collection.update_many({"_id": {"$in": ids}}, {"$set": {"dispatched": True}})
    return made, more


def dispatch_all(db: Database, *, now: datetime, rounds: int = 20) -> list[tuple[str, str]]:
    """dispatch() until the outboxes are empty, at most `rounds` batches."""
    made: list[tuple[str, str]] = []
    for _ in range(rounds):
        found, more = dispatch(db, now=now)
        made += found
        if not more:
            break
    return made


def _delivery(event: dict[str, Any], endpoint: dict[str, Any], now: datetime) -> dict[str, Any]:
    return {
        "_id": delivery_id(event["_id"], endpoint["_id"]),
        "event_id": event["_id"],
        "endpoint_id": endpoint["_id"],
        "type": event["type"],
        "created_at": now,
        "state": "pending",
        "next_at": now,
        "attempts": [],
    }


def _booking_events(
    db: Database, changes: list[dict[str, Any]], now: datetime
) -> list[dict[str, Any] | None]:
    """Each booking event's webhook event. Its data is the booking as its owner
    reads it, at the status and version of that event (a later change may be
    stored already: the version lets a receiver order or drop stale ones)."""
    ref_ids = sorted({m["booking_id"] for m in changes})
    found = {b["ref_id"]: b for b in db.bookings.find({"ref_id": {"$in": ref_ids}}, {"_id": 0})}
    events: list[dict[str, Any] | None] = []
    for change in changes:
        booking = found.get(change["booking_id"])
        code = event_code(change)
        kind = BOOKING_MILESTONE if code in MILESTONES else STATUS_EVENTS.get(change["status"])
        if booking is None or kind is None:
            events.append(None)
            continue
        data = {
            **bookings.public_booking(booking),
            "status": change["status"],
            "updated_at": change["at_ts"],
        }
        if change.get("version") is not None:
            data["version"] = change["version"]
        data["event"] = {"code": code}
        for name in (*bookings.EVENT_DETAILS, "occurred_at"):
            if change.get(name) is not None:
                data["event"][name] = change[name]
        events.append(
            _event(change["_id"], kind, change["at_ts"], [booking.get("customer_id")], data)
        )
    return events


def _job_events(finished: list[dict[str, Any]], now: datetime) -> list[dict[str, Any] | None]:
    events: list[dict[str, Any] | None] = []
    for job in finished:
        if job.get("type") in FAILURES and job.get("state") == FAILED:
            kind = BOOKING_FAILED
        elif job.get("type") in BULK_IMPORTS:
            kind = BULK_FINISHED
        else:
            events.append(None)
            continue
        request = _request_of(job)
        data = public_job(job)
        data.pop("links", None)
        if kind == BOOKING_FAILED:
            data["ref_id"] = job.get("ref_id") or (job.get("payload") or {}).get("ref_id")
        # A bulk import's bookings' owner hears of it as well as its submitter.
        audience = [job.get("customer_id"), request.get("customer_id")]
        at = job.get("finished_at") or now
        events.append(_event(f"job:{job['_id']}", kind, at, audience, data))
    return events


def _request_of(job: dict[str, Any]) -> dict[str, Any]:
    try:
        request = jobs.job_request(job.get("payload") or {})
    except (KeyError, TypeError, ValueError):
        return {}
    return request if isinstance(request, dict) else {}


def _event(
    source: str, kind: str, at: datetime, audience: list[str | None], data: dict[str, Any]
) -> dict[str, Any]:
    return {
        "_id": event_id(source),
        "type": kind,
        "created_at": at,
        "audience": [who for who in audience if who is not None],
        "endpoint_id": None,
        "data": data,
        "dispatched": True,  # made here: nothing left to dispatch
    }


# -- asking for a dispatch ---------------------------------------------------------
#
# A worker that committed a write asks for a dispatch at once (the sweep would
# find it within WEBHOOK_SWEEP_INTERVAL_S, which is too slow for a booking's event):
# one message for every write committed until a dispatch starts. The dispatch
# clears the mark before it reads, so a write committed after its reads asks
# again. A mark whose message was never sent runs out: the sweep covers it.
DISPATCH_ASKED = "webhooks:dispatch-asked"
DISPATCH_ASKED_MS = 2_000
# Whether any endpoint is enabled, as a worker last looked (for ask_dispatch).
ENDPOINTS_LOOKED_AT_S = 5.0


def ask_dispatch(client: redis.Redis) -> bool:
    """True if the caller should send a dispatch message: nobody asked since the last one."""
    return bool(client.set(DISPATCH_ASKED, 1, nx=True, px=DISPATCH_ASKED_MS))


def dispatch_asked(client: redis.Redis) -> None:
    client.delete(DISPATCH_ASKED)


def any_endpoint(db: Database) -> bool:
    return db.webhook_endpoints.find_one({"enabled": True}, {"_id": 1}) is not None
