"""core.backpressure: when a client refused for a full queue should come back."""

from core import backpressure


def test_retry_after_is_the_backlog_over_the_drain_rate():
    assert backpressure.retry_after_full(100_000, 400.0) == 250
    assert backpressure.retry_after_full(10, 400.0) == 1
    assert backpressure.retry_after_full(10**9, 1.0) == backpressure.RETRY_AFTER_FULL_MAX_S
    assert backpressure.retry_after_full(5, 0.0) == backpressure.RETRY_AFTER_FULL_MAX_S
