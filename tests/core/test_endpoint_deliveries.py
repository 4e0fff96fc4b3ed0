import uuid
from datetime import timedelta

import pytest

from core import endpoint_deliveries, webhook_endpoints
from core.clock import utcnow
from core.errors import EndpointDisabled, NotFound


@pytest.fixture
def endpoint(services):
    """A new endpoint of an owner with no bookings, and its deliveries' cleanup."""
    owner = "cus_" + uuid.uuid4().hex[:16]
    doc = webhook_endpoints.endpoint_document(
        owner, "https://receiver.example/hooks", ["*"], now=utcnow()
    )
    services.db.webhook_endpoints.insert_one(doc)
    yield doc
    services.db.webhook_endpoints.delete_one({"_id": doc["_id"]})
    services.db.webhook_deliveries.delete_many({"endpoint_id": doc["_id"]})


def _deliveries(db, endpoint_id: str, n: int) -> list[str]:
    """n failed deliveries, one a millisecond apart, two sharing the first's time."""
    start, made = utcnow().replace(microsecond=0), []
    for i in range(n):
        delivery_id = "dlv_" + uuid.uuid4().hex[:24]
        at = start + timedelta(milliseconds=max(i - 1, 0))
        db.webhook_deliveries.insert_one(
            {
                "_id": delivery_id,
                "event_id": "msg_" + uuid.uuid4().hex[:24],
                "endpoint_id": endpoint_id,
                "type": "booking.created",
                "created_at": at,
                "state": "failed",
                "next_at": None,
                "attempts": [],
            }
        )
        made.append(delivery_id)
    return made


def test_deliveries_are_paged_newest_first_without_gaps_or_repeats(services, endpoint):
    made = _deliveries(services.db, endpoint["_id"], 5)
    seen, cursor = [], None
    while True:
        page = endpoint_deliveries.list_deliveries(
            services.db, endpoint["_id"], owner=endpoint["owner"], limit=2, cursor=cursor
        )
        seen += [d["delivery_id"] for d in page["deliveries"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(made) and len(seen) == len(set(seen))
    assert page["endpoint"] == {"enabled": True, "disabled_reason": None}


def test_a_retry_makes_the_delivery_due_now_unless_its_endpoint_is_disabled(services, endpoint):
    (delivery_id,) = _deliveries(services.db, endpoint["_id"], 1)
    now, owner = utcnow(), endpoint["owner"]
    again = endpoint_deliveries.retry_delivery(
        services.db, endpoint["_id"], delivery_id, owner=owner, now=now
    )
    assert again["state"] == "pending" and again["next_attempt_at"] == now
    with pytest.raises(NotFound):
        endpoint_deliveries.retry_delivery(
            services.db, endpoint["_id"], "dlv_" + "0" * 24, owner=owner, now=now
        )
    services.db.webhook_endpoints.update_one({"_id": endpoint["_id"]}, {"$set": {"enabled": False}})
    with pytest.raises(EndpointDisabled):
        endpoint_deliveries.retry_delivery(
            services.db, endpoint["_id"], delivery_id, owner=owner, now=now
        )
