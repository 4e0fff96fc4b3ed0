"""The checks core.settings.load_settings applies: each value's range, and
the invariants that tie settings to each other, which the code relies on.

A deployment whose values each look fine but do not fit together fails at
start-up, naming what is wrong, rather than misbehaving under load.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from core.ids import API_KEY_PREFIX

if TYPE_CHECKING:
    from core.settings import Settings


def positive(value: int | float) -> bool:
    return value > 0


def non_negative(value: int | float) -> bool:
    return value >= 0


def broken(settings: Settings) -> Iterator[str]:
    """What is wrong with `settings` taken together, first things first."""
    if settings.DB_POOL_MIN > settings.DB_POOL_SIZE:
        yield "DB_POOL_MIN must not exceed DB_POOL_SIZE"
    low, initial = settings.OVERLOAD_MIN_LIMIT, settings.OVERLOAD_INITIAL_LIMIT
    if not low <= initial <= settings.OVERLOAD_MAX_LIMIT:
        yield "OVERLOAD_MIN_LIMIT <= OVERLOAD_INITIAL_LIMIT <= OVERLOAD_MAX_LIMIT must hold"
    if settings.OVERLOAD_QUEUE_TARGET_MS >= settings.OVERLOAD_QUEUE_INTERVAL_MS:
        yield (
            "OVERLOAD_QUEUE_TARGET_MS must stay below OVERLOAD_QUEUE_INTERVAL_MS (a burst"
            " may wait up to the interval, a standing line only the target)"
        )
    if settings.MAX_WAITERS >= settings.WEB_THREADS:
        yield "MAX_WAITERS must stay below WEB_THREADS (waiters would take every thread)"
    for url in settings.lock_redis_urls if settings.LOCK_REDIS_URLS else ():
        if not _is_url(url, ("redis", "rediss")):
            yield f"LOCK_REDIS_URLS: {url!r} is not a redis:// URL"
    for url in settings.broker_urls:
        # Checked here: kombu takes a failover list with a bad node's URL in it
        # (no host, a port that is no number, another scheme) and fails on it
        # only when it fails over to that node, in the middle of an outage.
        if not _is_url(url, ("amqp", "amqps")):
            yield (
                f"RABBITMQ_URL: {url!r} is not an amqp:// or amqps:// URL"
                " (several brokers are separated by ';')"
            )
    if min(settings.CACHE_TTL_ROUTES, settings.CACHE_TTL_BOOKINGS) <= settings.CACHE_WARM_INTERVAL:
        yield (
            "CACHE_WARM_INTERVAL must stay below CACHE_TTL_ROUTES and CACHE_TTL_BOOKINGS"
            " (warmed route answers would expire before the next warm)"
        )
    if settings.WARM_REFRESH_S < settings.CACHE_WARM_INTERVAL:
        yield (
            "WARM_REFRESH_S must be at least CACHE_WARM_INTERVAL (every warm would"
            " compute every answer again)"
        )
    if settings.REDIS_POOL_SIZE <= settings.WEB_THREADS:
        yield (
            "REDIS_POOL_SIZE must exceed WEB_THREADS (every request thread may hold a"
            " connection and the job waiter holds one more; past the pool Redis calls fail)"
        )
    if settings.REDIS_POOL_SIZE <= settings.WEBHOOK_CONCURRENCY:
        yield (
            "REDIS_POOL_SIZE must exceed WEBHOOK_CONCURRENCY (each webhook sender holds a"
            " connection while it takes an endpoint's slot)"
        )
    for name in ("ADMIN_TOKEN", "METRICS_TOKEN"):
        if getattr(settings, name).startswith(API_KEY_PREFIX):
            yield (
                f"{name} must not start with {API_KEY_PREFIX!r}, an API key's prefix (tokens"
                " are told apart from keys by it: see ingress.security)"
            )
    if settings.IDEMPOTENCY_TTL_HOURS > settings.JOB_TTL_DAYS * 24:
        yield (
            "IDEMPOTENCY_TTL_HOURS must not exceed JOB_TTL_DAYS in hours (a replayed"
            " request would find its job expired and run again)"
        )


def _is_url(url: str, schemes: tuple[str, ...]) -> bool:
    parsed = urlparse(url)
    try:
        port = parsed.port  # ValueError for one that is not a number, or out of range
    except ValueError:
        return False
    return parsed.scheme in schemes and bool(parsed.hostname) and port != 0
