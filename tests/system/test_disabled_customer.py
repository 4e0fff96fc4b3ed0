"""A customer (or operator) disabled while its jobs wait in the queue: none of
them runs. Each fails with a 403 `customer-disabled` problem, decided by the
worker (under the booking's lock for a transition), and nothing is written."""

from __future__ import annotations

from core.clock import utcnow
from core.customers import disable_customer
from tests.conftest import bearer, booking_body, new_customer, stored_booking, wait_job


def test_queued_jobs_of_a_customer_disabled_meanwhile_fail_403(isolated_stack, services):
    stack = isolated_stack("disabled")
    client = stack.client()
    shipper, operator = new_customer(services.db), new_customer(services.db, role="operator")
    ship, handle = bearer(shipper["api_key"]), bearer(operator["api_key"])
    creates = [client.post("/api/bookings", json=booking_body(), headers=ship) for _ in range(5)]
    booked = [stored_booking(services) for _ in range(3)]
    departs = [
        client.post(f"/api/bookings/{ref}/depart", json={}, headers=handle) for ref in booked
    ]
    assert {r.status_code for r in creates + departs} == {202}
    for who in (shipper, operator):  # with every job still queued: no worker runs yet
        disable_customer(services.db, services.cache, who["customer_id"], now=utcnow(), ttl=60)

    stack.start_worker("after-disable")
    for r in creates + departs:
        job = wait_job(client, r.headers["Location"])
        assert job["state"] == "failed", job
        assert job["error"]["status"] == 403
        assert job["error"]["type"].endswith("/customer-disabled")
    assert services.db.bookings.count_documents({"customer_id": shipper["customer_id"]}) == 0
    for ref in booked:
        booking = services.db.bookings.find_one({"ref_id": ref})
        assert (booking["status"], booking["version"]) == ("BOOKED", 1)
