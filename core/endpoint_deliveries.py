"""An endpoint's deliveries as its manager sees them: listed newest first,
one sent again, and a test event sent to the endpoint alone.

The deliveries themselves are made by core.notifications and sent by
core.deliveries; the endpoints are core.webhook_endpoints's.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from pymongo import DESCENDING
from pymongo.database import Database

from core import bookings, webhook_endpoints
from core.errors import EndpointDisabled, NotFound
from core.ids import new_event_id

TEST_MESSAGE = "A test event from RadiantGo."
# A deliveries page boundary: the last one's created_at (epoch ms) and id.
DELIVERY_CURSOR = re.compile(r"^[0-9]{13}-dlv_[0-9a-f]{24}$")
NEWEST_FIRST = [("created_at", DESCENDING), ("_id", DESCENDING)]


def public_delivery(doc: dict[str, Any]) -> dict[str, Any]:
    return {
        "delivery_id": doc["_id"],
        "event_id": doc["event_id"],
        "event_type": doc["type"],
        "state": doc["state"],
        "created_at": doc["created_at"],
        "next_attempt_at": doc.get("next_at"),
        "attempts": [
            {name: attempt.get(name) for name in ("at", "status_code", "duration_ms", "error")}
            for attempt in doc.get("attempts", [])
        ],
    }


def _enabled(db: Database, endpoint_id: str, owner: str | None) -> dict[str, Any]:
    doc = webhook_endpoints.find_endpoint(db, endpoint_id, owner=owner)
    if not doc["enabled"]:
        raise EndpointDisabled(
            f"Webhook endpoint {endpoint_id} is disabled ({doc.get('disabled_reason')}):"
            " enable it first (PATCH enabled: true)."
        )
    return doc


def send_test_event(
    db: Database, endpoint_id: str, *, owner: str | None, now: datetime
) -> dict[str, Any]:
    """Record a webhook.test event for this endpoint alone (the outbox the
    delivery code sweeps); the answer names it."""
    doc = _enabled(db, endpoint_id, owner)
    event = {
        "_id": new_event_id(),
        "type": webhook_endpoints.TEST_EVENT,
        "created_at": now,
        "audience": [doc["owner"]] if doc["owner"] is not None else [],
        "endpoint_id": endpoint_id,
        "data": {"endpoint_id": endpoint_id, "message": TEST_MESSAGE},
        "dispatched": False,
    }
    db.webhook_events.insert_one(event)
    return {
        "event_id": event["_id"],
        "type": webhook_endpoints.TEST_EVENT,
        "created_at": now,
        "endpoint_id": endpoint_id,
        "data": event["data"],
    }


def list_deliveries(
    db: Database, endpoint_id: str, *, owner: str | None, limit: int, cursor: str | None = None
) -> dict[str, Any]:
    """The endpoint's deliveries, newest first, keyset-paginated on
    (created_at, delivery_id), with whether the endpoint is enabled and why not."""
    endpoint = webhook_endpoints.find_endpoint(db, endpoint_id, owner=owner)
    docs = _newest_deliveries(db, endpoint_id, limit + 1, cursor)
    return {
        "deliveries": [public_delivery(d) for d in docs[:limit]],
        "next_cursor": bookings.encode_cursor(docs[limit - 1], key="_id")
        if len(docs) > limit
        else None,
        "endpoint": {
            "enabled": endpoint["enabled"],
            "disabled_reason": endpoint.get("disabled_reason"),
        },
    }


def _newest_deliveries(db: Database, endpoint_id: str, want: int, cursor: str | None) -> list:
    def fetch(condition: dict[str, Any]) -> list[dict[str, Any]]:
        query = {"endpoint_id": endpoint_id, **condition}
        return list(db.webhook_deliveries.find(query).sort(NEWEST_FIRST).limit(want - len(docs)))

    docs: list[dict[str, Any]] = []
    if cursor is None:
        return fetch({})
    moment, delivery_id = bookings.decode_cursor(cursor, DELIVERY_CURSOR)
    docs += fetch({"created_at": moment, "_id": {"$lt": delivery_id}})
    if len(docs) < want:
        docs += fetch({"created_at": {"$lt": moment}})
    return docs


def retry_delivery(
    db: Database, endpoint_id: str, delivery_id: str, *, owner: str | None, now: datetime
) -> dict[str, Any]:
    """Send a delivery again now, whatever became of it (the delivery sweep
    takes it within seconds)."""
    _enabled(db, endpoint_id, owner)
    # By `_id` alone: a conditional read is a scan on the embedded server.
    doc = db.webhook_deliveries.find_one({"_id": delivery_id})
    if doc is None or doc["endpoint_id"] != endpoint_id:
        raise NotFound(f"No delivery {delivery_id!r} of webhook endpoint {endpoint_id!r}.")
    again = {"state": "pending", "next_at": now}
    db.webhook_deliveries.update_one({"_id": delivery_id}, {"$set": again})
    return public_delivery({**doc, **again})
