"""Webhook endpoints: the URLs a customer (or an operator, or the admin) has
RadiantGo push events to, their subscriptions and signing secrets; the
events' names. What the management API reads of deliveries is
core.endpoint_deliveries's.

The one source of the events' names (EVENT_TYPES, "*"). An endpoint belongs
to an owner: the customer (or operator) whose key made it, or none (the
admin's, a guest's). Whoever manages endpoints by a key sees only its own:
another's is a 404, never a 403, as for bookings. An endpoint receives its
owner's bookings' events, or every booking's with `all_bookings`, which only
an owner that reads every booking may have (an operator; endpoints of no
owner always have it).

Collections (the delivery code reads and writes the same shapes):
- webhook_endpoints: {_id: "ep_...", owner, url, events, description,
  all_bookings, enabled, disabled_reason, disabled_at, failing_since,
  secrets: [{secret, created_at, expires_at}] newest first, created_at,
  updated_at, version};
- webhook_events (the outbox): {_id: "msg_...", type, created_at, audience,
  endpoint_id (a test event's: that endpoint alone), data, dispatched};
- webhook_deliveries: {_id: "dlv_...", event_id, endpoint_id, type,
  created_at, state, next_at, attempts: [{at, status_code,
  duration_ms, error}]}.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pymongo import ASCENDING
from pymongo.database import Database

from core import signing, webhook_targets
from core.access import READ_ALL, ROLE_PERMISSIONS
from core.clock import aware
from core.errors import (
    AllBookingsRequired,
    Conflict,
    EndpointLimitReached,
    Forbidden,
    NotFound,
)
from core.ids import new_endpoint_id

EVENT_TYPES = (
    "booking.created",
    "booking.departed",
    "booking.arrived",
    "booking.delivered",
    "booking.cancelled",
    "booking.milestone",
    "booking.failed",
    "bulk.finished",
)
ALL_EVENTS = "*"  # subscribes to every type, alone: ["*"]
# Sent to one endpoint when its owner asks (POST .../test); never subscribed to.
TEST_EVENT = "webhook.test"
SECRETS_KEPT = 3  # the newest and those rotated away that still sign
DISABLED_BY_REQUEST = "Disabled through the API."
UPDATE_TRIES = 3

PUBLIC_FIELDS = (
    "owner",
    "url",
    "events",
    "description",
    "all_bookings",
    "enabled",
    "disabled_reason",
    "disabled_at",
    "failing_since",
    "created_at",
    "updated_at",
    "version",
)


def events_are_valid(events: list[str]) -> bool:
    """["*"] alone, or distinct names of EVENT_TYPES (at least one)."""
    if events == [ALL_EVENTS]:
        return True
    return bool(events) and len(set(events)) == len(events) and set(events) <= set(EVENT_TYPES)


def subscribes(endpoint: dict[str, Any], event_type: str) -> bool:
    """Whether `endpoint` asked for events of `event_type` (a test event goes
    to its own endpoint, whatever it subscribes to)."""
    return ALL_EVENTS in endpoint["events"] or event_type in endpoint["events"]


# The problem type of core.webhook_targets's WebhookUrlRefused, as the document names it
# (tests/ingress/test_webhooks_api.py checks the two agree).
URL_REFUSED_SLUG = "webhook-url-refused"


# -- views ------------------------------------------------------------------------------------


def public_endpoint(doc: dict[str, Any]) -> dict[str, Any]:
    """An endpoint as its manager reads it: everything but the secrets."""
    return {"endpoint_id": doc["_id"], **{name: doc.get(name) for name in PUBLIC_FIELDS}}


def with_secret(doc: dict[str, Any]) -> dict[str, Any]:
    """The endpoint and its newest secret: shown when it is made, never again."""
    return {**public_endpoint(doc), "secret": doc["secrets"][0]["secret"]}


# -- rules ------------------------------------------------------------------------------------


def owner_reads_all(db: Database, owner: str | None) -> bool:
    """Whether the endpoint's owner may receive every booking's events."""
    if owner is None:
        return True
    doc = db.customers.find_one({"_id": owner}, {"role": 1})
    return doc is not None and READ_ALL in ROLE_PERMISSIONS.get(doc["role"], frozenset())


def check_all_bookings(
    db: Database, all_bookings: bool, *, owner: str | None, may_read_all: bool
) -> None:
    """`all_bookings` only for an owner (and a caller) that reads every booking;
    an endpoint of no owner always has it."""
    if owner is None and not all_bookings:
        raise AllBookingsRequired(
            "An endpoint of no owner (the admin's, a guest's) receives every booking's"
            " events: all_bookings is true for it."
        )
    if all_bookings and not (may_read_all and owner_reads_all(db, owner)):
        raise Forbidden(
            "all_bookings (every booking's events) takes an operator's key or the admin"
            " token, for an endpoint whose owner reads every booking; a customer's"
            " endpoint receives its own bookings' events."
        )


def _owned(owner: str | None) -> dict[str, Any]:
    """The filter of the endpoints a manager may touch (None: every one)."""
    return {} if owner is None else {"owner": owner}


def find_endpoint(db: Database, endpoint_id: str, *, owner: str | None) -> dict[str, Any]:
    """The endpoint, if the manager `owner` may touch it; else a 404."""
    doc = db.webhook_endpoints.find_one({"_id": endpoint_id, **_owned(owner)})
    if doc is None:
        raise NotFound(f"No webhook endpoint {endpoint_id!r}.")
    return doc


# -- endpoints --------------------------------------------------------------------------------


def create_endpoint(
    db: Database,
    *,
    owner: str | None,
    may_read_all: bool,
    url: str,
    events: list[str],
    description: str = "",
    all_bookings: bool | None = None,
    now: datetime,
    max_endpoints: int,
    allow_private: bool,
) -> dict[str, Any]:
    """A new enabled endpoint with a fresh secret; the answer is the secret's
    only showing. At most `max_endpoints` per owner."""
    all_bookings = owner is None if all_bookings is None else all_bookings
    check_all_bookings(db, all_bookings, owner=owner, may_read_all=may_read_all)
    webhook_targets.check_url(url, allow_private=allow_private)
    if _count(db, owner) >= max_endpoints:
        raise _limit_reached(max_endpoints)
    doc = endpoint_document(owner, url, events, now=now, description=description)
    doc["all_bookings"] = all_bookings
    db.webhook_endpoints.insert_one(doc)
    # Two creates racing past the count above: the later one gives way.
    if _count(db, owner) > max_endpoints:
        db.webhook_endpoints.delete_one({"_id": doc["_id"]})
        raise _limit_reached(max_endpoints)
    return with_secret(doc)


def endpoint_document(
    owner: str | None,
    url: str,
    events: list[str],
    *,
    now: datetime,
    description: str = "",
    all_bookings: bool = False,
    enabled: bool = True,
    secrets: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """An endpoint as stored, with a fresh secret unless `secrets` are given."""
    return {
        "_id": new_endpoint_id(),
        "owner": owner,
        "url": url,
        "events": events,
        "description": description,
        "all_bookings": all_bookings,
        "enabled": enabled,
        "disabled_reason": None,
        "disabled_at": None,
        "failing_since": None,
        "secrets": secrets
        or [{"secret": signing.new_secret(), "created_at": now, "expires_at": None}],
        "created_at": now,
        "updated_at": now,
        "version": 1,
    }


def _count(db: Database, owner: str | None) -> int:
    return db.webhook_endpoints.count_documents({"owner": owner})


def _limit_reached(max_endpoints: int) -> EndpointLimitReached:
    return EndpointLimitReached(
        f"At most {max_endpoints} webhook endpoints per owner (WEBHOOK_MAX_ENDPOINTS):"
        " delete one first."
    )


def list_endpoints(
    db: Database, *, owner: str | None, limit: int, cursor: str | None = None
) -> dict[str, Any]:
    """The manager's endpoints (None: every one) by endpoint_id, keyset-paginated."""
    query = {**_owned(owner), **({"_id": {"$gt": cursor}} if cursor else {})}
    docs = list(db.webhook_endpoints.find(query).sort([("_id", ASCENDING)]).limit(limit + 1))
    next_cursor = docs[limit - 1]["_id"] if len(docs) > limit else None
    return {"items": [public_endpoint(d) for d in docs[:limit]], "next_cursor": next_cursor}


def get_endpoint(db: Database, endpoint_id: str, *, owner: str | None) -> dict[str, Any]:
    return public_endpoint(find_endpoint(db, endpoint_id, owner=owner))


def _changed(doc: dict[str, Any], change: dict[str, Any], now: datetime) -> dict[str, Any]:
    """The fields a PATCH sets: enabling a disabled endpoint clears why it was
    disabled and how long it had been failing; disabling one says it was asked."""
    fields = {**change, "updated_at": now}
    if change.get("enabled") is True and not doc["enabled"]:
        fields.update(disabled_reason=None, disabled_at=None, failing_since=None)
    elif change.get("enabled") is False and doc["enabled"]:
        fields.update(disabled_reason=DISABLED_BY_REQUEST, disabled_at=now)
    return fields


def update_endpoint(
    db: Database,
    endpoint_id: str,
    change: dict[str, Any],
    *,
    owner: str | None,
    may_read_all: bool,
    now: datetime,
    allow_private: bool,
) -> dict[str, Any]:
    """Change url, events, description, enabled or all_bookings (each checked
    as at creation); a write conditional on the version read."""
    for _ in range(UPDATE_TRIES):
        doc = find_endpoint(db, endpoint_id, owner=owner)
        if not change:
            return public_endpoint(doc)
        if "all_bookings" in change:
            check_all_bookings(
                db, change["all_bookings"], owner=doc["owner"], may_read_all=may_read_all
            )
        if "url" in change:
            webhook_targets.check_url(change["url"], allow_private=allow_private)
        fields = _changed(doc, change, now)
        if _written(db, doc, fields):
            return public_endpoint({**doc, **fields, "version": doc["version"] + 1})
    raise Conflict(f"Webhook endpoint {endpoint_id} kept changing; try again.")


def _written(db: Database, doc: dict[str, Any], fields: dict[str, Any]) -> bool:
    written = db.webhook_endpoints.update_one(
        {"_id": doc["_id"], "version": doc["version"]},
        {"$set": {**fields, "version": doc["version"] + 1}},
    )
    return written.modified_count == 1


def delete_endpoint(db: Database, endpoint_id: str, *, owner: str | None) -> None:
    """The endpoint and its deliveries."""
    deleted = db.webhook_endpoints.delete_one({"_id": endpoint_id, **_owned(owner)})
    if deleted.deleted_count == 0:
        raise NotFound(f"No webhook endpoint {endpoint_id!r}.")
    db.webhook_deliveries.delete_many({"endpoint_id": endpoint_id})


def rotated(secrets: list[dict[str, Any]], new: str, *, now: datetime, overlap: timedelta):
    """`secrets` after a rotation: the new one first; the one it replaces signs
    for `overlap` more; expired ones dropped; SECRETS_KEPT at most."""
    kept = [
        {**s, "expires_at": now + overlap if s.get("expires_at") is None else s["expires_at"]}
        for s in secrets
    ]
    live = [s for s in kept if aware(s["expires_at"]) > now]
    return [{"secret": new, "created_at": now, "expires_at": None}, *live][:SECRETS_KEPT]


def rotate_secret(
    db: Database, endpoint_id: str, *, owner: str | None, now: datetime, overlap_h: int
) -> dict[str, Any]:
    """A new signing secret, shown this once; the old one signs for `overlap_h` more hours."""
    secret = signing.new_secret()
    for _ in range(UPDATE_TRIES):
        doc = find_endpoint(db, endpoint_id, owner=owner)
        secrets = rotated(doc["secrets"], secret, now=now, overlap=timedelta(hours=overlap_h))
        fields = {"secrets": secrets, "updated_at": now}
        if _written(db, doc, fields):
            return with_secret({**doc, **fields, "version": doc["version"] + 1})
    raise Conflict(f"Webhook endpoint {endpoint_id} kept changing; try again.")
