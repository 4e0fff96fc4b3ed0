"""Webhooks end to end: the API and the workers on the real services, real
receivers on 127.0.0.1 (tests/receivers.py), every signature checked with the
independent `standardwebhooks` package (the `hooks` stack: tests/webhooks.py)."""

from __future__ import annotations

import json
from datetime import timedelta

from core import signing
from core.clock import utcnow
from tests.conftest import ADMIN, OPERATOR, booking_body, stored_booking, wait_job
from tests.webhooks import EVERY_TYPE, endpoint_secret, post, verified, wait_for
from tools.processes import kill_worker


def test_every_event_type_reaches_its_owner_signed_and_nobody_elses(hooks):
    client, db = hooks.client(), hooks.services.db
    me, headers = hooks.customer()
    them, _ = hooks.customer()
    mine, theirs = hooks.receiver(), hooks.receiver()
    endpoint = hooks.endpoint(url=mine.url(), owner=me)
    other = hooks.endpoint(url=theirs.url(), owner=them)

    created = post(client, "/api/bookings", booking_body(), headers)
    ref_id = wait_job(client, created["url"])["result"]["booking"]["ref_id"]
    received = {"code": "RCS", "location": "DEL", "at": "2026-11-28T03:00:00Z"}
    for action, body in (("milestones", received), ("depart", {}), ("arrive", {}), ("deliver", {})):
        job = post(client, f"/api/bookings/{ref_id}/{action}", body, OPERATOR)
        assert wait_job(client, job["url"])["state"] == "succeeded"
    cancelled = post(client, "/api/bookings", booking_body(), headers)
    other_ref = wait_job(client, cancelled["url"])["result"]["booking"]["ref_id"]
    post(client, f"/api/bookings/{other_ref}/cancel", {}, headers)
    unbookable = booking_body(flight_ids=["ZZ9999-20300101"])
    failed = post(client, "/api/bookings", unbookable, headers)
    bulk = {"bookings": [booking_body()], "customer_id": me}
    imported = post(client, "/api/admin/bookings/bulk", bulk, ADMIN)
    ours = {ref_id, other_ref, failed["job_id"], imported["job_id"]}

    def events() -> list[dict]:
        """This test's events (the customer's other bookings may still have
        events of earlier tests to dispatch)."""
        every = verified(mine, endpoint_secret(hooks, endpoint))
        return [e for e in every if {e["data"].get("ref_id"), e["data"].get("job_id")} & ours]

    wait_for(lambda: {e["type"] for e in events()} >= EVERY_TYPE, 30, "every event type")
    by_type = {e["type"]: e for e in events()}
    milestone = by_type["booking.milestone"]["data"]
    assert (milestone["ref_id"], milestone["status"], milestone["version"]) == (ref_id, "BOOKED", 2)
    assert milestone["event"] == {
        "code": "RCS",
        "location": "DEL",
        "occurred_at": "2026-11-28T03:00:00.000Z",
    }
    departed = by_type["booking.departed"]["data"]
    assert (departed["ref_id"], departed["status"], departed["version"]) == (ref_id, "DEPARTED", 3)
    assert departed["event"] == {"code": "DEP"}
    assert by_type["booking.delivered"]["data"]["version"] == 5
    assert by_type["booking.cancelled"]["data"]["event"] == {"code": None}
    assert by_type["booking.failed"]["data"]["job_id"] == failed["job_id"]
    assert by_type["booking.failed"]["data"]["error"]["status"] in (404, 409, 422)
    assert by_type["bulk.finished"]["data"]["state"] == "succeeded"
    request = mine.requests[0]
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["webhook-id"] == json.loads(request.body)["id"]
    # Every event of these bookings was dispatched (mine has them all): none to the other.
    assert db.webhook_deliveries.count_documents({"endpoint_id": other}) == 0
    assert theirs.requests == []


def test_a_500_and_a_timeout_are_retried_then_delivered(hooks):
    client, db = hooks.client(), hooks.services.db
    me, headers = hooks.customer()
    failing, hanging = hooks.receiver(), hooks.receiver()
    failing.answer(status=500)
    hanging.answer(delay_s=3)  # past WEBHOOK_TIMEOUT_S
    ids = [
        hooks.endpoint(url=r.url(), owner=me, events=["booking.created"])
        for r in (failing, hanging)
    ]
    post(client, "/api/bookings", booking_body(), headers)

    def delivered():
        found = list(db.webhook_deliveries.find({"endpoint_id": {"$in": ids}}))
        return len(found) == 2 and all(d["state"] == "delivered" for d in found) and found

    for delivery in wait_for(delivered, 30, "both delivered on their second attempt"):
        first, second = delivery["attempts"]
        assert first["status_code"] in (500, None) and second["status_code"] == 200
        assert (second["at"] - first["at"]) >= timedelta(seconds=5)  # Svix's second step
    timed_out = db.webhook_deliveries.find_one({"endpoint_id": ids[1]})["attempts"][0]
    assert timed_out["status_code"] is None and "timeout" in timed_out["error"]
    for receiver in (failing, hanging):
        first, second = receiver.requests
        assert first.headers["webhook-id"] == second.headers["webhook-id"]


def test_410_disables_the_endpoint_and_its_deliveries_say_why(hooks):
    client, db = hooks.client(), hooks.services.db
    me, headers = hooks.customer()
    gone = hooks.receiver()
    gone.answer(status=410)
    endpoint = hooks.endpoint(url=gone.url(), owner=me)
    post(client, "/api/bookings", booking_body(), headers)

    def disabled():
        found = db.webhook_endpoints.find_one({"_id": endpoint})
        return not found["enabled"] and found

    assert "410" in wait_for(disabled, 20, "the endpoint disabled")["disabled_reason"]
    (delivery,) = db.webhook_deliveries.find({"endpoint_id": endpoint})
    assert delivery["state"] == "failed" and delivery["attempts"][-1]["status_code"] == 410


def test_rotation_signs_with_the_old_and_the_new_secret(hooks):
    now = utcnow()
    me, headers = hooks.customer()
    old, new = signing.new_secret(), signing.new_secret()
    receiver = hooks.receiver()
    secrets = [
        {"secret": new, "created_at": now, "expires_at": None},
        {"secret": old, "created_at": now, "expires_at": now + timedelta(hours=24)},
    ]
    hooks.endpoint(url=receiver.url(), owner=me, secrets=secrets)
    post(hooks.client(), "/api/bookings", booking_body(), headers)
    wait_for(lambda: receiver.requests, 20, "a delivery")
    signatures = receiver.requests[0].headers["webhook-signature"].split(" ")
    assert len(signatures) == 2 and all(s.startswith("v1,") for s in signatures)
    assert verified(receiver, old) == verified(receiver, new)  # either secret verifies


def test_a_worker_killed_mid_delivery_loses_no_event(hooks):
    client, db = hooks.client(), hooks.services.db
    me, headers = hooks.customer()
    receiver = hooks.receiver()
    receiver.answer(delay_s=10)  # the first attempt hangs: the worker dies in it
    endpoint = hooks.endpoint(url=receiver.url(), owner=me)
    post(client, "/api/bookings", booking_body(), headers)
    wait_for(lambda: receiver.requests, 20, "the first attempt")
    kill_worker(hooks.processes[0])
    hooks.start_worker("after")

    def delivered():
        found = db.webhook_deliveries.find_one({"endpoint_id": endpoint})
        return found and found["state"] == "delivered" and found

    delivery = wait_for(delivered, 40, "the delivery, by the next worker")
    # The dead worker's attempt was never recorded; the next one was.
    assert [a["status_code"] for a in delivery["attempts"]] == [200]
    first, second = receiver.requests
    assert first.headers["webhook-id"] == second.headers["webhook-id"]


def test_a_receiver_that_hangs_never_holds_up_another_customers_deliveries(webhook_stack, services):
    hooks = webhook_stack(WEBHOOK_TIMEOUT_S=15.0)  # no hanging attempt ends during the test
    me, _ = hooks.customer()
    them, _ = hooks.customer()
    hanging, fast = hooks.receiver(), hooks.receiver()
    for _ in range(20):
        hanging.answer(delay_s=30)
    slow_one = hooks.endpoint(url=hanging.url(), owner=me, events=["booking.created"])
    hooks.endpoint(url=fast.url(), owner=them, events=["booking.created"])
    theirs = []
    for _ in range(20):
        stored_booking(services, customer_id=me)
        theirs.append(stored_booking(services, customer_id=them))

    def arrived() -> set[str]:
        return {json.loads(r.body)["data"]["ref_id"] for r in fast.requests} & set(theirs)

    wait_for(lambda: arrived() == set(theirs), 14, "the other customer's 20 events")
    db = services.db
    # Meanwhile the hanging endpoint had its in-flight cap of attempts, no more
    # (none of them has ended yet), and nothing of it was delivered.
    assert len(hanging.requests) <= hooks.settings.WEBHOOK_MAX_IN_FLIGHT
    hung = list(db.webhook_deliveries.find({"endpoint_id": slow_one}))
    assert len(hung) >= 20 and not any(d["state"] == "delivered" for d in hung)
