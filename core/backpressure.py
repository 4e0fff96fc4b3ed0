"""Backpressure: how fast the workers drain a queue (from the tasks
core.metrics.record_tasks counts per second), and when a client refused for a
full queue should come back.
"""

from __future__ import annotations

import math

import redis

from core.metrics import DRAIN_WINDOW_S, drained_key

RETRY_AFTER_FULL_MAX_S = 300


def drain_rate(client: redis.Redis, queue: str, now: float) -> float:
    """Tasks per second the workers took off `queue` lately."""
    return sum(_drained_per_second(client, queue, now)) / DRAIN_WINDOW_S


def peak_drain_rate(client: redis.Redis, queue: str, now: float) -> float:
    """The most tasks the workers took off `queue` in one second lately: what
    they can do when busy. The mean over the window is what they were given,
    and after a quiet spell it would call a short burst hours of backlog."""
    return float(max(_drained_per_second(client, queue, now), default=0))


def _drained_per_second(client: redis.Redis, queue: str, now: float) -> list[int]:
    """The tasks taken off `queue` in each of the last DRAIN_WINDOW_S whole seconds."""
    second = int(now)
    keys = [drained_key(queue, second - n) for n in range(1, DRAIN_WINDOW_S + 1)]
    return [int(v) if v else 0 for v in client.mget(keys)]


def retry_after_full(backlog: int, rate: float) -> int:
    """Seconds until the workers have worked off a full queue's `backlog` at `rate`
    (the longest wait when nothing drains): a client that comes back then finds room,
    and clients that all came back sooner would only be refused again."""
    if rate <= 0:
        return RETRY_AFTER_FULL_MAX_S
    return max(1, min(RETRY_AFTER_FULL_MAX_S, math.ceil(backlog / rate)))
