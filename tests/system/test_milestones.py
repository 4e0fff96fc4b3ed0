"""IATA milestones end to end: HTTP -> RabbitMQ (status queue) -> a real
worker, under the booking's lock; the timeline and the tracking view."""

import requests

from core import transitions
from core.clock import utcnow
from core.ids import new_job_id
from core.locks import booking_lock_key
from tests.conftest import ADMIN, OPERATOR, post_booking, wait_job


def create(base) -> str:
    r = post_booking(base, Prefer="wait=10")
    assert r.status_code == 201, r.text
    return r.json()["result"]["booking"]["ref_id"]


def act(base, ref_id, path, body=None, wait=10):
    """A transition (`path`: its action) or a milestone ("milestones"), as the operator."""
    headers = {**OPERATOR, "Prefer": f"wait={wait}"} if wait else OPERATOR
    return requests.post(
        f"{base}/api/bookings/{ref_id}/{path}", json=body or {}, headers=headers, timeout=15
    )


def details(base, ref_id, headers=ADMIN):
    return requests.get(f"{base}/api/bookings/{ref_id}", headers=headers, timeout=5).json()


def test_milestones_in_order_join_the_timeline_with_their_codes(live_server):
    ref_id = create(live_server)
    assert details(live_server, ref_id)["version"] == 1  # now cached
    steps = [
        ("milestones", {"code": "RCS", "location": "DEL", "at": "2026-11-28T08:30:00+05:30"}),
        ("milestones", {"code": "MAN", "location": "DEL"}),
        ("depart", {}),
        ("arrive", {}),
        ("milestones", {"code": "RCF", "location": "BLR"}),
        ("milestones", {"code": "NFD", "location": "BLR"}),
        ("deliver", {}),
    ]
    for path, body in steps:
        r = act(live_server, ref_id, path, body)
        assert (r.status_code, r.json()["state"]) == (200, "succeeded"), r.text
    received = r.json()
    booking = details(live_server, ref_id)  # the write fenced the cached details out
    assert (booking["status"], booking["version"]) == ("DELIVERED", 8)
    timeline = booking["events"]
    codes = ["BKD", "RCS", "MAN", "DEP", "ARR", "RCF", "NFD", "DLV"]
    assert [e["code"] for e in timeline] == codes
    assert [e["status"] for e in timeline[:3]] == ["BOOKED"] * 3
    assert timeline[1]["location"] == "DEL"
    assert timeline[1]["occurred_at"] == "2026-11-28T03:00:00.000Z"
    assert timeline[2]["occurred_at"] == timeline[2]["at_ts"]
    assert [e["at_ts"] for e in timeline] == sorted(e["at_ts"] for e in timeline)
    assert received["result"]["booking"]["version"] == 8
    tracking = details(live_server, ref_id, headers={})  # anyone's view
    assert [e["code"] for e in tracking["events"]] == codes
    assert tracking["events"][1] == {
        "code": "RCS",
        "status": "BOOKED",
        "location": "DEL",
        "at_ts": timeline[1]["at_ts"],
        "occurred_at": "2026-11-28T03:00:00.000Z",
    }
    cancelled = create(live_server)
    assert act(live_server, cancelled, "cancel").status_code == 200
    assert [e["code"] for e in details(live_server, cancelled)["events"]] == ["BKD", None]


def test_a_milestone_accepted_before_a_departure_fails_409_under_the_lock(live_server, services):
    """The door saw BOOKED and took RCS; the booking departed before the worker
    got its lock: the worker decides again, and the job fails."""
    ref_id = create(live_server)
    held = services.locks.acquire(booking_lock_key(ref_id))
    try:
        r = act(live_server, ref_id, "milestones", {"code": "RCS", "location": "DEL"}, wait=0)
        assert r.status_code == 202, r.text
        booking = transitions.read_booking(services.db, ref_id)  # a departure, holding the lock
        transitions.apply_transition(
            services.db, booking, "DEPARTED", job_id=new_job_id(), data={}, now=utcnow()
        )
    finally:
        services.locks.release(held)
    job = wait_job(live_server, r.headers["Location"], timeout=30)
    assert job["state"] == "failed"
    assert job["error"]["status"] == 409
    assert job["error"]["type"].endswith("/milestone-out-of-order")
    booking = details(live_server, ref_id)
    assert (booking["status"], booking["version"]) == ("DEPARTED", 2)
    assert [e["code"] for e in booking["events"]] == ["BKD", "DEP"]
