"""Sliding-window counters (core.ratelimit), with the clock passed in."""

import json
import uuid

from core.ratelimit import Budget, RateLimiter

BUDGET = Budget("test", limit=5, window_s=60)
START = 1_800_000_000.0  # a window boundary (a multiple of 60 s)


def caller() -> str:
    return f"c-{uuid.uuid4().hex[:8]}"


def test_the_hit_past_the_limit_is_refused_with_when_to_come_back(services):
    limiter, who = RateLimiter(services.redis), caller()
    verdicts = [limiter.check(BUDGET, who, START + 10 + n) for n in range(6)]
    assert [v.allowed for v in verdicts] == [True] * 5 + [False]
    assert [v.remaining for v in verdicts] == [4, 3, 2, 1, 0, 0]
    refused = verdicts[-1]
    assert 0 < refused.retry_after_s <= 60 - 15  # by the end of this window at the latest
    assert refused.reset_s == 60 - 15


def test_the_last_windows_hits_count_as_much_as_they_still_overlap(services):
    limiter, who = RateLimiter(services.redis), caller()
    for n in range(5):
        assert limiter.check(BUDGET, who, START + 50 + n).allowed
    # Just past the boundary the last window still counts fully (rounded up): refused.
    assert not limiter.check(BUDGET, who, START + 60.5).allowed
    # A third into the new window, 2/3 of 5 hits still count (4, rounded up): one more.
    assert limiter.check(BUDGET, who, START + 80).allowed
    assert not limiter.check(BUDGET, who, START + 80.1).allowed


def test_asking_does_not_count(services):
    limiter, who = RateLimiter(services.redis), caller()
    for _ in range(10):
        assert limiter.check(BUDGET, who, START + 1, count=False).allowed
    assert limiter.check(BUDGET, who, START + 2).remaining == 4


def test_callers_and_scopes_have_budgets_of_their_own(services):
    limiter, first, second = RateLimiter(services.redis), caller(), caller()
    for _ in range(5):
        limiter.check(BUDGET, first, START + 1)
    assert not limiter.check(BUDGET, first, START + 2).allowed
    assert limiter.check(BUDGET, second, START + 2).allowed
    assert limiter.check(Budget("other", 5, 60), first, START + 2).allowed


def test_a_cached_keys_check_reads_its_entry_and_counts_as_check_does(services):
    limiter, who = RateLimiter(services.redis), caller()
    entry = f"users:key:test-{who}"
    services.cache.set_versioned(entry, 1, {"role": "customer", "customer_id": who}, 60)
    verdict, cached = limiter.check_cached_key(BUDGET, entry, who, START + 1)
    assert verdict.allowed and verdict.remaining == 4 and verdict.reset_s == 59
    assert json.loads(cached) == {"role": "customer", "customer_id": who}
    assert limiter.check(BUDGET, who, START + 2).remaining == 3  # the same counters
    for _ in range(3):
        limiter.check_cached_key(BUDGET, entry, who, START + 3)
    refused, _ = limiter.check_cached_key(BUDGET, entry, who, START + 4)
    assert not refused.allowed and refused.retry_after_s > 0


def test_a_missing_or_revoked_entry_is_a_miss_that_counts_nothing(services):
    limiter, who = RateLimiter(services.redis), caller()
    entry = f"users:key:test-{who}"
    assert limiter.check_cached_key(BUDGET, entry, who, START + 1) is None
    services.cache.set_versioned(entry, 1, {"role": "customer", "customer_id": who}, 60)
    services.cache.invalidate_versioned(entry, 2, 60)  # a rotation's tombstone
    assert limiter.check_cached_key(BUDGET, entry, who, START + 2) is None
    assert limiter.check(BUDGET, who, START + 3).remaining == 4
