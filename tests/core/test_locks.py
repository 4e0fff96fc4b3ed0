import time

import pytest

from core.errors import ServiceUnavailable
from core.locks import (
    BookingLocked,
    LockManager,
    backoff_ms,
    booking_lock_key,
    bulk_lock_key,
    flight_lock_key,
    held_locks,
    lock_metrics,
)
from core.services import connect_redis
from core.settings import load_settings
from tools.processes import free_port


def test_key_names_are_the_specs():
    assert booking_lock_key("RG123ABC456") == "booking:ref:RG123ABC456"
    assert flight_lock_key("RG001") == "flight:RG001"
    assert bulk_lock_key("flights", 1737370000) == "bulk:operation:flights:1737370000"


def test_backoff_is_100_150_225_337_plus_jitter():
    assert [round(backoff_ms(n, jitter=lambda: 0.0), 1) for n in range(4)] == [100, 150, 225, 337.5]
    assert backoff_ms(0, jitter=lambda: 1.0) == 200
    # 50 attempts wait about the spec's ~30 s in all, not hours.
    assert 20_000 < sum(backoff_ms(n, jitter=lambda: 0.5) for n in range(49)) < 32_000


def test_acquire_and_release(services):
    key = booking_lock_key("RGLOCKTEST1")
    held = services.locks.acquire(key, ttl_s=30)
    assert held.attempts == 1
    ttl = services.redis.pttl(key)
    assert 29_000 < ttl <= 30_000
    assert {"key": key, "ttl_ms": pytest.approx(ttl, abs=1000)} in held_locks(services.redis)
    services.locks.release(held)
    assert not services.redis.exists(key)


def test_contention_retries_with_backoff_then_fails(services):
    sleeps = []
    locks = LockManager(services.redis, services.settings, sleep=sleeps.append)
    key = booking_lock_key("RGLOCKTEST2")
    with locks.hold(key), pytest.raises(BookingLocked) as caught:
        locks.acquire(key, max_attempts=4)
    assert caught.value.to_problem()["title"] == "Booking is locked"
    assert caught.value.status == 409
    assert len(sleeps) == 3  # no sleep after the last attempt
    for attempt, (low, slept) in enumerate(zip((100, 150, 225), sleeps, strict=True)):
        assert low <= slept * 1000 <= low + 100, (attempt, slept)
    assert not services.redis.exists(key)


def test_a_lock_that_expired_does_not_delete_the_new_holders_key(services):
    key = booking_lock_key("RGLOCKTEST3")
    first = services.locks.acquire(key, ttl_s=0.2)
    time.sleep(0.3)
    second = services.locks.acquire(key, ttl_s=30)
    services.locks.release(first)
    assert services.redis.get(key) == second.lock.key.decode()
    services.locks.release(second)


def test_a_dead_redis_is_unavailable_not_contention(services):
    dead = load_settings({}, REDIS_URL=f"redis://127.0.0.1:{free_port()}/0", REDIS_TIMEOUT_S=0.5)
    locks = LockManager(connect_redis(dead), dead, sleep=lambda s: None)
    started = time.monotonic()
    with pytest.raises(ServiceUnavailable):
        locks.acquire(booking_lock_key("RGLOCKTEST4"))
    assert time.monotonic() - started < 3  # one try, not fifty


def test_metrics_count_acquisitions_and_failures(services):
    before = lock_metrics(services.redis)
    key = booking_lock_key("RGLOCKTEST5")
    locks = LockManager(services.redis, services.settings, sleep=lambda s: None)
    with locks.hold(key), pytest.raises(BookingLocked):
        locks.acquire(key, max_attempts=2)
    after = lock_metrics(services.redis)
    assert after["acquired"] == before["acquired"] + 1
    assert after["failed"] == before["failed"] + 1
    assert after["attempts"] == before["attempts"] + 3
    assert after["acquire_ms"]["p95"] is not None
