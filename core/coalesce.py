"""One job of a kind at a time: while it is queued or running, asking for
another gets that one (cache warming: ten requests are one warm, not ten).

The job holds a Redis key (core.locks.singleton_key) from before it is recorded
until it ends, with a TTL as a bound on a holder that died. Coalescing saves
work; it guards no data: with Redis unreachable every request gets a job of its
own, as before.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import redis

from core.locks import singleton_key

log = logging.getLogger(__name__)

# Replaces the holder only if it is still the one we found to be stale.
_TAKE_OVER = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'EX', tonumber(ARGV[3]))
  return 1
end
return 0
"""
# Releases only our own claim (an expired one may belong to a newer job now).
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def holder_or_claim(
    client: redis.Redis,
    job_type: str,
    job_id: str,
    ttl: int,
    is_live: Callable[[str], dict[str, Any] | None],
) -> dict[str, Any] | None:
    """The live job of `job_type` if there is one (`is_live(id)` returns it while it
    is queued or running); otherwise `job_id` now holds the claim and None is returned."""
    key = singleton_key(job_type)
    try:
        for _ in range(3):
            if client.set(key, job_id, nx=True, ex=ttl):
                return None
            holder = client.get(key)
            if holder is None:
                continue  # released in between: claim again
            job = is_live(holder)
            if job is not None:
                return job
            if client.eval(_TAKE_OVER, 1, key, holder, job_id, ttl):
                return None  # the holder had ended without releasing (or died)
    except redis.RedisError as exc:
        log.warning("%s not coalesced (Redis): %s", job_type, exc)
    return None


def holder(client: redis.Redis, job_type: str) -> str | None:
    """The job of `job_type` holding the claim now, if any (None too if Redis is out)."""
    try:
        return client.get(singleton_key(job_type))
    except redis.RedisError as exc:
        log.warning("%s claim not read (Redis): %s", job_type, exc)
        return None


def release(client: redis.Redis, job_type: str, job_id: str) -> None:
    """The job ended: the next request starts a new one. Best-effort (the TTL bounds it)."""
    try:
        client.eval(_RELEASE, 1, singleton_key(job_type), job_id)
    except redis.RedisError as exc:
        log.warning("%s claim not released (Redis): %s", job_type, exc)
