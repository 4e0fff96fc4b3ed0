"""ingress/admin.py's views over the test client: bulk limits, the cache and
lock views. Customers and their keys: tests/ingress/test_access.py; bulk work
end to end: tests/system/test_bulk.py and test_flights.py."""

import pytest

from core.locks import booking_lock_key
from tests.conftest import ADMIN, booking_body


@pytest.mark.parametrize(
    ("path", "field", "limit"),
    [
        ("/api/admin/flights/bulk", "flights", "BULK_FLIGHT_LIMIT"),
        ("/api/admin/bookings/bulk", "bookings", "BULK_BOOKING_LIMIT"),
        ("/api/admin/bookings/status/bulk", "updates", "BULK_UPDATE_LIMIT"),
    ],
)
def test_one_item_past_the_bulk_limit_is_a_413_problem(
    client, services, settings, path, field, limit
):
    over = getattr(settings, limit) + 1
    r = client.post(path, json={field: [{"x": 1}] * over}, headers=ADMIN)
    assert r.status_code == 413, r.get_json()
    assert r.mimetype == "application/problem+json"
    assert f"At most {over - 1} {field}" in r.get_json()["detail"]


def test_bulk_bookings_for_an_unknown_customer_are_a_404(client, services):
    body = {"bookings": [booking_body()], "customer_id": "cus_0000000000000000"}
    r = client.post("/api/admin/bookings/bulk", json=body, headers=ADMIN)
    assert r.status_code == 404
    assert "cus_0000000000000000" in r.get_json()["detail"]


def test_cache_stats_count_each_kind(client, services):
    services.redis.set("routes:KZA:KZB:2032-01-01", "{}")
    try:
        stats = client.get("/api/admin/cache/stats", headers=ADMIN).get_json()
    finally:
        services.redis.delete("routes:KZA:KZB:2032-01-01")
    assert stats["keys"]["routes"] >= 1
    assert set(stats["kinds"]) >= {"routes", "flights", "booking_details", "booking_pages"}


def test_clearing_the_cache_keeps_locks_and_counters(client, services):
    services.redis.set("routes:KZZ:KYY:2032-01-01", "{}")
    services.redis.set("booking:ref:RGKEEPLOCK1", "x", ex=30)
    services.redis.incr("cache:stats:routes:hits")
    deleted = client.delete("/api/admin/cache/clear", headers=ADMIN).get_json()["deleted"]
    assert deleted >= 1
    assert not services.redis.exists("routes:KZZ:KYY:2032-01-01")
    assert services.redis.exists("booking:ref:RGKEEPLOCK1")
    assert services.redis.exists("cache:stats:routes:hits")
    services.redis.delete("booking:ref:RGKEEPLOCK1")


def test_admin_locks_lists_held_keys_with_ttl(client, services):
    key = booking_lock_key("RGADMINLOCK")
    held = services.locks.acquire(key, ttl_s=30)
    try:
        body = client.get("/api/admin/locks", headers=ADMIN).get_json()
        entry = next(item for item in body["locks"] if item["key"] == key)
        assert 0 < entry["ttl_ms"] <= 30_000
    finally:
        services.locks.release(held)
    listing = client.get("/api/admin/locks", headers=ADMIN).get_json()["locks"]
    assert key not in [item["key"] for item in listing]
