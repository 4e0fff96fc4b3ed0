import uuid
from datetime import UTC, datetime, timedelta

from core import deliveries, delivery_slots
from core.clock import utcnow

POLICY = deliveries.Policy(timeout_s=2.0, max_in_flight=2)


def test_a_slot_is_refused_past_max_in_flight_and_free_again_once_given_back(services):
    endpoint, now = "ep_" + uuid.uuid4().hex[:16], utcnow().timestamp()
    try:
        assert delivery_slots.take_slot(services.redis, endpoint, "dlv_a", now, POLICY)
        assert delivery_slots.take_slot(services.redis, endpoint, "dlv_b", now, POLICY)
        assert not delivery_slots.take_slot(services.redis, endpoint, "dlv_c", now, POLICY)
        assert delivery_slots.in_flight(services.redis, [endpoint], now) == {endpoint: 2}
        delivery_slots.give_slot(services.redis, endpoint, "dlv_a")
        assert delivery_slots.take_slot(services.redis, endpoint, "dlv_c", now, POLICY)
        later = now + POLICY.lease_s + 1  # holds run out with the lease
        assert delivery_slots.in_flight(services.redis, [endpoint], later) == {endpoint: 0}
    finally:
        services.redis.delete(delivery_slots.slots_key(endpoint))


def test_only_as_many_of_an_endpoints_deliveries_are_sent_as_it_has_free_slots(services):
    now = utcnow().timestamp()
    busy, idle = "ep_" + uuid.uuid4().hex[:16], "ep_" + uuid.uuid4().hex[:16]
    for holder in ("dlv_a", "dlv_b"):  # max_in_flight=2: busy has none free
        delivery_slots.take_slot(services.redis, busy, holder, now, POLICY)
    todo = [("dlv_1", busy), ("dlv_2", idle), ("dlv_3", idle), ("dlv_4", idle)]
    assert delivery_slots.sendable(services.redis, todo, now=now, policy=POLICY) == [
        "dlv_2",
        "dlv_3",
    ]
    services.redis.delete(delivery_slots.slots_key(busy))


def test_a_sweep_passes_over_a_full_endpoints_backlog_to_the_others_due(services):
    """An endpoint with no free slot and a backlog past the sweep's window must
    not keep every other endpoint's due deliveries waiting."""
    db, long_ago = services.db, datetime(2000, 1, 1, tzinfo=UTC)
    busy, idle = ("ep_" + uuid.uuid4().hex[:16] for _ in range(2))
    stuck = [_pending(db, busy, long_ago + timedelta(seconds=n)) for n in range(6)]
    waiting = [_pending(db, idle, long_ago + timedelta(minutes=1, seconds=n)) for n in range(2)]
    for holder in ("dlv_a", "dlv_b"):  # max_in_flight=2: busy has none free
        delivery_slots.take_slot(services.redis, busy, holder, utcnow().timestamp(), POLICY)
    now = long_ago + timedelta(hours=1)
    try:
        sent = delivery_slots.due_to_send(db, services.redis, now=now, policy=POLICY, limit=4)
        assert sent == waiting
    finally:
        db.webhook_deliveries.delete_many({"_id": {"$in": stuck + waiting}})
        services.redis.delete(delivery_slots.slots_key(busy))


def _pending(db, endpoint_id: str, next_at) -> str:
    delivery_id = "dlv_" + uuid.uuid4().hex[:24]
    db.webhook_deliveries.insert_one(
        {"_id": delivery_id, "endpoint_id": endpoint_id, "state": "pending", "next_at": next_at}
    )
    return delivery_id
