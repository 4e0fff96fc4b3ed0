"""Backpressure: each queue holds a bounded backlog. Past it RabbitMQ refuses
the publish and the client gets a 503 with a Retry-After; what was accepted
still completes."""

import time

from core import backpressure, queues
from tests.conftest import CUSTOMER, booking_body, wait_job

BOUND = 5


def test_a_burst_past_the_bound_gets_503s_and_every_202_completes(isolated_stack, services):
    stack = isolated_stack("bounded", QUEUE_MAX_INTERACTIVE=BOUND)
    bounded, client = stack.settings, stack.client()
    # No worker yet: the burst piles up in the queue.
    answers = [
        client.post("/api/bookings", json=booking_body(pieces=n + 1), headers=CUSTOMER)
        for n in range(BOUND + 4)
    ]
    accepted = [r for r in answers if r.status_code == 202]
    refused = [r for r in answers if r.status_code != 202]
    # A quorum queue checks its bound after a publish, not before: it takes
    # one message past it, then refuses (measured on RabbitMQ 3.10).
    overshoot = 1 if bounded.QUEUE_TYPE == "quorum" else 0
    assert BOUND <= len(accepted) <= BOUND + overshoot
    assert {r.status_code for r in refused} == {503}
    for r in refused:
        problem = r.get_json()
        assert r.mimetype == "application/problem+json"
        assert problem["type"].endswith("/queue-full") and str(BOUND) in problem["detail"]
        # Nothing drained lately: the longest wait.
        assert r.headers["Retry-After"] == str(backpressure.RETRY_AFTER_FULL_MAX_S)
    stack.start_worker("bounded")
    for r in accepted:
        job = wait_job(client, r.headers["Location"], timeout=60, headers=CUSTOMER)
        assert job["state"] == "succeeded", job
        ref_id = r.get_json()["ref_id"]
        assert services.db.bookings.count_documents({"ref_id": ref_id}) == 1
    # Now the workers drain: a full queue's Retry-After is its backlog at that rate.
    name = queues.queue_name(queues.BOOKINGS, bounded.QUEUE_NAMESPACE)
    rate = backpressure.drain_rate(services.redis, name, time.time() + 1)
    assert rate > 0
    assert backpressure.retry_after_full(BOUND, rate) < backpressure.RETRY_AFTER_FULL_MAX_S
