"""Sending a webhook delivery: claimed, signed, posted, recorded, retried.

A delivery (webhook_deliveries, made by core.notifications.dispatch) is sent
at least once: it stays `pending` until an attempt got a 2xx, and the next
attempt is due at `next_at`. A sender claims it first (a lease in Redis of
the attempt's timeout and a margin), so two senders given the same delivery,
a redelivered message or a sweep racing a sender, make one attempt; a sender
that dies mid-attempt leaves a lease that runs out, and the sweep sends the
delivery again. The receiver de-duplicates by `webhook-id` (the event id, the
same on every attempt).

Retries follow Svix's schedule (Policy.schedule_s), honouring Retry-After on
429 and 503 where it asks for longer. A 410 disables the endpoint; so does
failing for `disable_after_s` (5 days) without a success in between. The
reason is kept on the endpoint, where its owner's deliveries list shows it.

Each endpoint has at most `max_in_flight` attempts at once (slots in Redis,
core.delivery_slots, which also picks what a sweep sends).
"""

from __future__ import annotations

import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import redis
from pymongo.database import Database

from core import delivery_slots, notifications
from core.clock import aware, to_iso
from core.egress import Attempt

log = logging.getLogger(__name__)

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"
GONE = 410
SLOW_DOWN = frozenset({429, 503})
# Retry-After is honoured up to this; a receiver cannot park a delivery for days.
MAX_RETRY_AFTER_S = 6 * 3600
# A lease lasts the attempt's timeout and this much more (posting, recording).
CLAIM_MARGIN_S = 5.0
# A delivery waiting for one of its endpoint's slots is looked at again after this.
SLOT_WAIT_S = 1.0

# post(url, body, headers) -> Attempt (core.egress.post with its settings bound).
Post = Callable[[str, bytes, dict[str, str]], Attempt]
# sign(msg_id, timestamp, body, secrets) -> headers (core.signing.headers).
Sign = Callable[[str, int, bytes, list[str]], dict[str, str]]


@dataclass(frozen=True)
class Policy:
    """How hard a delivery is tried (Svix's schedule: a first attempt at once,
    then 5 s, 5 min, 30 min, 2 h, 5 h, 10 h and 10 h later)."""

    schedule_s: tuple[float, ...] = (0, 5, 300, 1800, 7200, 18000, 36000, 36000)
    timeout_s: float = 15.0
    disable_after_s: float = 5 * 86400
    max_in_flight: int = 4

    @property
    def lease_s(self) -> float:
        return self.timeout_s + CLAIM_MARGIN_S


@dataclass
class Outcome:
    """What one call of send() did, for the caller's counters."""

    delivery_id: str
    endpoint_id: str | None = None
    state: str | None = None  # None: not attempted (not due, taken, or waiting for a slot)
    attempt: Attempt | None = None
    disabled: str | None = None  # the endpoint was disabled, why
    waited: bool = field(default=False)  # its endpoint had no free slot
    lag_ms: float | None = None  # delivered: from its event's commit to the 2xx


class EventCache:
    """The latest `size` events read, by id, for one process's senders: an
    event never changes once dispatched, and a fan-out sends it to many
    endpoints (one read for all of them, not one each)."""

    def __init__(self, size: int = 4096):
        self.size = size
        self._events: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, db: Database, event_id: str) -> dict[str, Any] | None:
        with self._lock:
            event = self._events.get(event_id)
            if event is not None:
                self._events.move_to_end(event_id)
                return event
        event = db.webhook_events.find_one({"_id": event_id})
        if event is not None:
            with self._lock:
                self._events[event_id] = event
                while len(self._events) > self.size:
                    self._events.popitem(last=False)
        return event


def lease_key(delivery_id: str) -> str:
    return f"webhooks:lease:{delivery_id}"


def claim(
    db: Database, leases: redis.Redis, delivery_id: str, *, now: datetime, lease_s: float
) -> dict | None:
    """The delivery, now ours for `lease_s`, if it is due and nobody holds it.
    The lease is in Redis and every read and write here goes by `_id` alone:
    a conditional findAndModify is a scan of the collection on the embedded
    server. A lease lost with Redis costs at most one attempt twice (a
    receiver de-duplicates by webhook-id)."""
    if not leases.set(lease_key(delivery_id), 1, nx=True, px=int(lease_s * 1000)):
        return None
    delivery = db.webhook_deliveries.find_one({"_id": delivery_id})
    if delivery is None or delivery["state"] != PENDING or aware(delivery["next_at"]) > now:
        leases.delete(lease_key(delivery_id))
        return None
    return delivery


def release(leases: redis.Redis, delivery_id: str) -> None:
    try:
        leases.delete(lease_key(delivery_id))
    except redis.RedisError as exc:  # it runs out by itself
        log.warning("webhook lease not given back: %s", exc)


def signing_secrets(endpoint: dict[str, Any], now: datetime) -> list[str]:
    """The endpoint's secrets still valid: the newest, and for a day after a
    rotation the one before (a receiver verifies with either)."""
    return [
        s["secret"]
        for s in endpoint.get("secrets") or ()
        if s.get("expires_at") is None or s["expires_at"] > now
    ]


def body_of(event: dict[str, Any]) -> bytes:
    return json.dumps(
        notifications.payload(event), default=_as_json, separators=(",", ":")
    ).encode()


def _as_json(value: Any) -> str:
    """Times as the API writes them (core.clock.to_iso)."""
    if isinstance(value, datetime):
        return to_iso(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def send(
    db: Database,
    slots: redis.Redis,
    delivery_id: str,
    *,
    clock: Callable[[], datetime],
    post: Post,
    sign: Sign,
    policy: Policy,
    events: EventCache | None = None,
) -> Outcome:
    """Make the due attempt of one delivery, if nobody else is making it."""
    outcome = Outcome(delivery_id)
    now = clock()
    delivery = claim(db, slots, delivery_id, now=now, lease_s=policy.lease_s)
    if delivery is None:
        return outcome
    try:
        event_id = delivery["event_id"]
        event = (
            events.get(db, event_id) if events else db.webhook_events.find_one({"_id": event_id})
        )
        _attempt(
            db,
            slots,
            delivery,
            event,
            outcome,
            now,
            clock=clock,
            post=post,
            sign=sign,
            policy=policy,
        )
    finally:
        release(slots, delivery_id)
    return outcome


def _attempt(
    db: Database,
    slots: redis.Redis,
    delivery: dict[str, Any],
    event: dict[str, Any] | None,
    outcome: Outcome,
    now: datetime,
    *,
    clock: Callable[[], datetime],
    post: Post,
    sign: Sign,
    policy: Policy,
) -> None:
    delivery_id = delivery["_id"]
    outcome.endpoint_id = delivery["endpoint_id"]
    endpoint = db.webhook_endpoints.find_one({"_id": delivery["endpoint_id"]})
    if endpoint is None or event is None or not endpoint.get("enabled", True):
        why = "its endpoint was deleted" if endpoint is None else "its endpoint is disabled"
        if event is None:
            why = "its event is gone"
        _end(db, delivery_id, FAILED, why, now)
        outcome.state = FAILED
        return
    if not delivery_slots.take_slot(slots, endpoint["_id"], delivery_id, now.timestamp(), policy):
        _wait_for_slot(db, delivery_id, now)
        outcome.waited = True
        return
    try:
        body = body_of(event)
        headers = sign(event["_id"], int(now.timestamp()), body, signing_secrets(endpoint, now))
        attempt = post(endpoint["url"], body, headers)
    finally:
        delivery_slots.give_slot(slots, endpoint["_id"], delivery_id)
    outcome.attempt = attempt
    finished = clock()
    outcome.state, outcome.disabled = record(
        db, delivery, endpoint, attempt, started=now, now=finished, policy=policy
    )
    if outcome.state == DELIVERED:
        committed = aware(event["created_at"])
        outcome.lag_ms = (finished - committed).total_seconds() * 1000


def record(
    db: Database,
    delivery: dict[str, Any],
    endpoint: dict[str, Any],
    attempt: Attempt,
    *,
    started: datetime,
    now: datetime,
    policy: Policy,
) -> tuple[str, str | None]:
    """Store `attempt` on its delivery and decide what follows: delivered,
    another attempt later, or failed for good; the endpoint's health with it.
    Returns (the delivery's state, why its endpoint was disabled or None)."""
    entry = {
        "at": started,
        "status_code": attempt.status_code,
        "duration_ms": attempt.duration_ms,
        "error": attempt.error,
    }
    made = len(delivery.get("attempts") or ()) + 1
    disabled = None
    if attempt.ok:
        state, next_at = DELIVERED, None
        if endpoint.get("failing_since") is not None:
            _set_endpoint(db, endpoint["_id"], failing_since=None)
    else:
        failing_since = aware(endpoint.get("failing_since") or started)
        if attempt.status_code == GONE:
            disabled = "The endpoint answered 410 Gone."
        elif (now - failing_since).total_seconds() >= policy.disable_after_s:
            days = policy.disable_after_s / 86400
            since = f"{failing_since:%Y-%m-%d %H:%M}Z"
            disabled = f"Every attempt failed for {days:g} days (since {since})."
        next_at = _next_attempt(made, attempt, now, policy)
        state = PENDING if next_at is not None and disabled is None else FAILED
        if disabled is not None:
            disable_endpoint(db, endpoint["_id"], disabled, now)
        elif endpoint.get("failing_since") is None:
            _set_endpoint(db, endpoint["_id"], failing_since=started)
    db.webhook_deliveries.update_one(
        {"_id": delivery["_id"]},
        {
            "$push": {"attempts": entry},
            "$set": {"state": state, "next_at": next_at, "updated_at": now},
        },
    )
    return state, disabled


def _next_attempt(made: int, attempt: Attempt, now: datetime, policy: Policy) -> datetime | None:
    """When the attempt after the `made`th is due; None when the schedule is spent."""
    if made >= len(policy.schedule_s):
        return None
    wait = policy.schedule_s[made]
    if attempt.status_code in SLOW_DOWN and attempt.retry_after_s is not None:
        wait = max(wait, min(attempt.retry_after_s, MAX_RETRY_AFTER_S))
    return now + timedelta(seconds=wait)


def disable_endpoint(db: Database, endpoint_id: str, reason: str, now: datetime) -> None:
    _set_endpoint(db, endpoint_id, enabled=False, disabled_reason=reason, disabled_at=now)
    log.warning("webhook endpoint %s disabled: %s", endpoint_id, reason)


def _set_endpoint(db: Database, endpoint_id: str, **fields: Any) -> None:
    """A write of the endpoint's health, by `_id` alone (see claim); its version
    moves, so a PATCH that read it before decides again."""
    db.webhook_endpoints.update_one({"_id": endpoint_id}, {"$set": fields, "$inc": {"version": 1}})


def _end(db: Database, delivery_id: str, state: str, why: str, now: datetime) -> None:
    entry = {"at": now, "status_code": None, "duration_ms": 0, "error": f"Not sent: {why}."}
    db.webhook_deliveries.update_one(
        {"_id": delivery_id},
        {
            "$push": {"attempts": entry},
            "$set": {"state": state, "next_at": None, "updated_at": now},
        },
    )


def _wait_for_slot(db: Database, delivery_id: str, now: datetime) -> None:
    """Due again a little later, no attempt counted (send gives the lease back)."""
    db.webhook_deliveries.update_one(
        {"_id": delivery_id}, {"$set": {"next_at": now + timedelta(seconds=SLOT_WAIT_S)}}
    )
