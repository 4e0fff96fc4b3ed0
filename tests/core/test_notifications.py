"""Dispatch: from the outboxes (booking events, finished jobs, test events)
to one delivery per endpoint that wants each event, once however often it runs."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from core import (
    endpoint_deliveries,
    jobs,
    notifications,
    queued_jobs,
    transitions,
    webhook_endpoints,
)
from core.clock import utcnow
from core.ids import new_job_id
from tests.conftest import IDS, moved_booking, stored_booking


def _endpoint(db, *, owner, events=("*",), all_bookings=False, enabled=True) -> str:
    url = "http://127.0.0.1:9/nobody-listens"
    doc = webhook_endpoints.endpoint_document(
        owner, url, list(events), now=utcnow(), all_bookings=all_bookings, enabled=enabled
    )
    db.webhook_endpoints.insert_one(doc)
    return doc["_id"]


@pytest.fixture
def endpoints(services):
    made: list[str] = []

    def make(**kwargs) -> str:
        made.append(_endpoint(services.db, **kwargs))
        return made[-1]

    yield make
    services.db.webhook_endpoints.delete_many({"_id": {"$in": made}})
    services.db.webhook_deliveries.delete_many({"endpoint_id": {"$in": made}})


def _received(db, endpoint_id: str, ref_id: str | None = None) -> list[dict]:
    """The events delivered to `endpoint_id`, oldest first; with `ref_id`, that
    booking's only (other tests leave their bookings' events to dispatch)."""
    ids = [d["event_id"] for d in db.webhook_deliveries.find({"endpoint_id": endpoint_id})]
    events = sorted(db.webhook_events.find({"_id": {"$in": ids}}), key=lambda e: e["created_at"])
    return [e for e in events if ref_id is None or e["data"].get("ref_id") == ref_id]


def test_each_milestone_goes_to_its_owner_and_to_every_booking_endpoints_only(services, endpoints):
    db = services.db
    mine = endpoints(owner=IDS["customer"])
    departures_only = endpoints(owner=IDS["customer"], events=["booking.departed"])
    theirs = endpoints(owner=IDS["other_customer"])
    operator = endpoints(owner=IDS["operator"], all_bookings=True)
    switched_off = endpoints(owner=IDS["customer"], enabled=False)
    ref_id = stored_booking(services, customer_id=IDS["customer"])
    moved_booking(services, ref_id, "DEPARTED", location="DEL")
    notifications.dispatch_all(db, now=utcnow())

    created, departed = _received(db, mine, ref_id)
    assert (created["type"], departed["type"]) == ("booking.created", "booking.departed")
    assert created["data"]["ref_id"] == departed["data"]["ref_id"] == ref_id
    # Each as of its own change, whatever the booking's status by dispatch time.
    assert (created["data"]["status"], created["data"]["version"]) == ("BOOKED", 1)
    assert (departed["data"]["status"], departed["data"]["version"]) == ("DEPARTED", 2)
    assert created["data"]["event"] == {"code": "BKD"}
    assert departed["data"]["event"] == {"code": "DEP", "location": "DEL"}
    assert [e["type"] for e in _received(db, departures_only, ref_id)] == ["booking.departed"]
    assert [e["_id"] for e in _received(db, operator, ref_id)] == [created["_id"], departed["_id"]]
    assert _received(db, theirs, ref_id) == [] and _received(db, switched_off, ref_id) == []


def test_a_milestone_is_a_booking_milestone_event_with_its_code(services, endpoints):
    db = services.db
    milestones_only = endpoints(owner=IDS["customer"], events=["booking.milestone"])
    ref_id = stored_booking(services, customer_id=IDS["customer"])
    transitions.transition_booking(
        db,
        services.locks,
        ref_id=ref_id,
        target=None,
        milestone="RCS",
        job_id=new_job_id(),
        data={"code": "RCS", "location": "DEL", "at": "2026-11-28T03:00:00.000Z"},
        clock=utcnow,
        queued_records=services.redis,
    )
    moved_booking(services, ref_id, "DEPARTED")
    notifications.dispatch_all(db, now=utcnow())
    (received,) = _received(db, milestones_only, ref_id)
    assert received["type"] == "booking.milestone"
    assert (received["data"]["status"], received["data"]["version"]) == ("BOOKED", 2)
    assert received["data"]["event"] == {
        "code": "RCS",
        "location": "DEL",
        "occurred_at": datetime(2026, 11, 28, 3, tzinfo=UTC),
    }


def test_a_second_dispatch_of_the_same_outbox_makes_no_second_delivery(services, endpoints):
    db = services.db
    mine = endpoints(owner=IDS["customer"])
    ref_id = stored_booking(services, customer_id=IDS["customer"])
    first = notifications.dispatch_all(db, now=utcnow())
    assert len([d for d in first if d]) >= 1
    # As if the first dispatch died after making the deliveries, before marking
    # its sources dispatched: they are all read again.
    db.booking_events.update_many({"booking_id": ref_id}, {"$set": {"dispatched": False}})
    notifications.dispatch_all(db, now=utcnow())
    assert db.webhook_deliveries.count_documents({"endpoint_id": mine}) == 1


def test_a_failed_create_job_is_a_booking_failed_event_for_its_submitter(services, endpoints):
    db = services.db
    mine = endpoints(owner=IDS["customer"], events=["booking.failed", "bulk.finished"])
    theirs = endpoints(owner=IDS["other_customer"])
    job_id, now = new_job_id(), utcnow()
    problem = {"type": "about:blank", "title": "Flight full", "status": 409, "detail": "Full."}
    queued = jobs.new_job(
        services.settings,
        job_id=job_id,
        job_type="booking.create",
        payload={"ref_id": "RG000000001"},
        now=now,
        links={},
        ref_id="RG000000001",
        customer_id=IDS["customer"],
    )
    record = queued_jobs.job_record(queued)
    finished = {"_id": job_id, "record": record, "stored": False, "started_at": now}
    finished["error"] = problem
    queued_jobs.finish_many(db, [finished], now)
    notifications.dispatch_all(db, now=utcnow())
    (failed,) = [e for e in _received(db, mine) if e["data"].get("job_id") == job_id]
    assert failed["type"] == "booking.failed"
    assert failed["data"]["job_id"] == job_id and failed["data"]["ref_id"] == "RG000000001"
    assert failed["data"]["error"]["status"] == 409
    assert _received(db, theirs) == []


def test_a_test_event_goes_to_its_endpoint_alone(services, endpoints):
    db = services.db
    asked = endpoints(owner=IDS["customer"], events=["booking.created"])
    other = endpoints(owner=IDS["customer"])
    event = endpoint_deliveries.send_test_event(db, asked, owner=None, now=utcnow())
    notifications.dispatch_all(db, now=utcnow())
    assert [e["_id"] for e in _received(db, asked)] == [event["event_id"]]
    assert _received(db, other) == []


def test_a_disabled_customers_endpoints_get_nothing(services, endpoints):
    from core.customers import disable_customer
    from tests.conftest import new_customer

    customer = new_customer(services.db, name="Soon disabled")
    endpoint = endpoints(owner=customer["customer_id"])
    disable_customer(services.db, services.cache, customer["customer_id"], now=utcnow(), ttl=60)
    stored_booking(services, customer_id=customer["customer_id"])
    notifications.dispatch_all(services.db, now=utcnow())
    assert _received(services.db, endpoint) == []
