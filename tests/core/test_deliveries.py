"""A delivery's attempts: claimed once, retried on Svix's schedule, honouring
Retry-After, disabling an endpoint that answers 410 or fails for days, and at
most max_in_flight at once per endpoint. The receiver is outside the system:
here a scripted `post`; tests/system/test_webhooks.py sends to real ones."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import timedelta

import pytest

from core import (
    deliveries,
    delivery_slots,
    endpoint_deliveries,
    notifications,
    signing,
    webhook_endpoints,
)
from core.clock import utcnow
from core.egress import Attempt

POLICY = deliveries.Policy(timeout_s=2.0, max_in_flight=2)


class Clock:
    def __init__(self):
        self.now = utcnow()

    def __call__(self):
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class Receiver:
    """Answers each post with the next of `answers` (the last one again once they run out)."""

    def __init__(self, *answers: Attempt):
        self.answers = list(answers)
        self.posts: list[tuple[str, bytes, dict]] = []

    def __call__(self, url: str, body: bytes, headers: dict) -> Attempt:
        self.posts.append((url, body, headers))
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


def answer(status: int, retry_after: float | None = None) -> Attempt:
    return Attempt(status_code=status, duration_ms=3, error=None, retry_after_s=retry_after)


TIMED_OUT = Attempt(
    status_code=None, duration_ms=2000, error="timeout after 2 s", retry_after_s=None
)


@pytest.fixture
def delivery(services):
    """A pending delivery of a test event to a new endpoint: (delivery id, endpoint id)."""
    db, now = services.db, utcnow()
    nobody = "cus_" + uuid.uuid4().hex[:16]  # no bookings: its test event only
    doc = webhook_endpoints.endpoint_document(
        nobody, "https://receiver.example/hooks", ["*"], now=now
    )
    db.webhook_endpoints.insert_one(doc)
    endpoint_id = doc["_id"]
    endpoint_deliveries.send_test_event(db, endpoint_id, owner=None, now=now)
    notifications.dispatch_all(db, now=now)
    (made,) = [d["_id"] for d in db.webhook_deliveries.find({"endpoint_id": endpoint_id})]
    yield made, endpoint_id
    db.webhook_endpoints.delete_one({"_id": endpoint_id})
    db.webhook_deliveries.delete_many({"endpoint_id": endpoint_id})
    services.redis.delete(delivery_slots.slots_key(endpoint_id))


def send(services, delivery_id, clock, receiver, policy=POLICY):
    return deliveries.send(
        services.db,
        services.redis,
        delivery_id,
        clock=clock,
        post=receiver,
        sign=signing.headers,
        policy=policy,
    )


def stored(services, delivery_id):
    return services.db.webhook_deliveries.find_one({"_id": delivery_id})


def test_a_500_then_a_timeout_are_retried_on_schedule_then_delivered(services, delivery):
    delivery_id, _ = delivery
    clock, receiver = Clock(), Receiver(answer(500), TIMED_OUT, answer(204))
    assert send(services, delivery_id, clock, receiver).state == "pending"
    assert stored(services, delivery_id)["next_at"] == clock.now + timedelta(seconds=5)
    clock.advance(4)
    assert send(services, delivery_id, clock, receiver).attempt is None  # not due yet
    clock.advance(1)
    assert send(services, delivery_id, clock, receiver).state == "pending"
    assert stored(services, delivery_id)["next_at"] == clock.now + timedelta(seconds=300)
    clock.advance(300)
    assert send(services, delivery_id, clock, receiver).state == "delivered"
    attempts = stored(services, delivery_id)["attempts"]
    assert [a["status_code"] for a in attempts] == [500, None, 204]
    assert attempts[1]["error"] == "timeout after 2 s"
    # One event, one id: the receiver's idempotency key on every attempt.
    assert len({headers["webhook-id"] for _, _, headers in receiver.posts}) == 1


def test_a_delivery_failing_every_attempt_ends_failed_after_the_schedule(services, delivery):
    delivery_id, endpoint_id = delivery
    clock, receiver = Clock(), Receiver(answer(500))
    for wait in POLICY.schedule_s:
        clock.advance(wait)
        outcome = send(services, delivery_id, clock, receiver)
    assert outcome.state == "failed" and len(receiver.posts) == len(POLICY.schedule_s)
    endpoint = services.db.webhook_endpoints.find_one({"_id": endpoint_id})
    assert endpoint["enabled"] and endpoint["failing_since"] is not None  # 27 h < 5 days


def test_retry_after_on_429_is_honoured_where_longer_than_the_schedule(services, delivery):
    delivery_id, _ = delivery
    clock = Clock()
    send(services, delivery_id, clock, Receiver(answer(429, retry_after=60)))
    assert stored(services, delivery_id)["next_at"] == clock.now + timedelta(seconds=60)


def test_410_disables_the_endpoint_and_says_why(services, delivery):
    delivery_id, endpoint_id = delivery
    outcome = send(services, delivery_id, Clock(), Receiver(answer(410)))
    assert outcome.state == "failed" and "410" in outcome.disabled
    endpoint = services.db.webhook_endpoints.find_one({"_id": endpoint_id})
    assert not endpoint["enabled"] and "410 Gone" in endpoint["disabled_reason"]


def test_an_endpoint_failing_for_five_days_is_disabled(services, delivery):
    delivery_id, endpoint_id = delivery
    clock = Clock()
    services.db.webhook_endpoints.update_one(
        {"_id": endpoint_id}, {"$set": {"failing_since": clock.now - timedelta(days=5)}}
    )
    outcome = send(services, delivery_id, clock, Receiver(answer(503)))
    assert outcome.state == "failed"
    endpoint = services.db.webhook_endpoints.find_one({"_id": endpoint_id})
    assert not endpoint["enabled"] and "5 days" in endpoint["disabled_reason"]


def test_a_success_clears_the_endpoints_failing_since(services, delivery):
    delivery_id, endpoint_id = delivery
    clock = Clock()
    send(services, delivery_id, clock, Receiver(answer(500)))
    assert services.db.webhook_endpoints.find_one({"_id": endpoint_id})["failing_since"]
    clock.advance(5)
    send(services, delivery_id, clock, Receiver(answer(200)))
    assert services.db.webhook_endpoints.find_one({"_id": endpoint_id})["failing_since"] is None


def test_two_senders_given_one_delivery_make_one_attempt(services, delivery):
    delivery_id, _ = delivery
    clock, release = Clock(), threading.Event()
    holding = threading.Event()

    def slow(url, body, headers):
        holding.set()
        release.wait(10)
        return answer(200)

    first = threading.Thread(target=send, args=(services, delivery_id, clock, slow))
    first.start()
    assert holding.wait(10)
    second = send(services, delivery_id, clock, Receiver(answer(200)))
    release.set()
    first.join(10)
    assert second.attempt is None and second.state is None
    assert len(stored(services, delivery_id)["attempts"]) == 1


def test_a_sender_that_died_mid_attempt_leaves_it_due_once_its_lease_runs_out(services, delivery):
    delivery_id, endpoint_id = delivery
    clock = Clock()
    lease = deliveries.claim(services.db, services.redis, delivery_id, now=clock.now, lease_s=0.5)
    assert lease is not None  # ... and its sender dies: the lease is never given back
    taken = send(services, delivery_id, clock, Receiver(answer(200)))
    assert taken.attempt is None and taken.state is None  # held: nobody else sends it
    due = delivery_slots.due(services.db, now=clock.now)
    assert (delivery_id, endpoint_id) in due  # the sweep still sees it
    wait_until(lambda: not services.redis.exists(deliveries.lease_key(delivery_id)))
    assert send(services, delivery_id, clock, Receiver(answer(200))).state == "delivered"


def wait_until(predicate, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "waited too long"
        time.sleep(0.02)


def test_an_endpoints_attempts_at_once_are_capped(services, delivery):
    delivery_id, endpoint_id = delivery
    clock = Clock()
    now = clock.now.timestamp()
    for holder in ("dlv_a", "dlv_b"):  # max_in_flight=2, both held by other senders
        assert delivery_slots.take_slot(services.redis, endpoint_id, holder, now, POLICY)
    outcome = send(services, delivery_id, clock, Receiver(answer(200)))
    assert outcome.waited and outcome.attempt is None
    assert stored(services, delivery_id)["attempts"] == []  # no attempt counted
    delivery_slots.give_slot(services.redis, endpoint_id, "dlv_a")
    clock.advance(deliveries.SLOT_WAIT_S)
    assert send(services, delivery_id, clock, Receiver(answer(200))).state == "delivered"


def test_a_rotated_secret_signs_beside_the_new_one_until_it_expires(services):
    now = utcnow()
    old, new = signing.new_secret(), signing.new_secret()
    endpoint = {
        "secrets": [
            {"secret": new, "created_at": now, "expires_at": None},
            {"secret": old, "created_at": now, "expires_at": now + timedelta(hours=24)},
        ]
    }
    assert deliveries.signing_secrets(endpoint, now) == [new, old]
    assert deliveries.signing_secrets(endpoint, now + timedelta(hours=24)) == [new]


def test_an_event_is_read_once_for_every_endpoint_it_goes_to(services):
    cache, event_id = deliveries.EventCache(size=2), "msg_" + uuid.uuid4().hex[:24]
    services.db.webhook_events.insert_one({"_id": event_id, "type": "webhook.test"})
    assert cache.get(services.db, event_id)["type"] == "webhook.test"
    services.db.webhook_events.delete_one({"_id": event_id})
    assert cache.get(services.db, event_id)["type"] == "webhook.test"  # not read again
    newer = ["msg_" + uuid.uuid4().hex[:24] for _ in range(2)]
    services.db.webhook_events.insert_many([{"_id": n, "type": "webhook.test"} for n in newer])
    for other in newer:  # push it out
        cache.get(services.db, other)
    assert cache.get(services.db, event_id) is None  # read again: gone
