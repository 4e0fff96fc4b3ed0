"""Invalidation after a committed write is best-effort: a Redis that is down,
or that refuses writes, is logged and skipped, never raised to the task."""

import logging

import pytest
import redis

from core import cache_keys, invalidation
from core.cache import Cache
from core.services import connect_redis
from core.settings import replace
from tools.processes import stop

BOOKING = {"ref_id": "RGTESTINV01", "version": 2}


def client_of(settings, port: int) -> redis.Redis:
    """A client made as the worker makes its own."""
    return connect_redis(replace(settings, REDIS_URL=f"redis://127.0.0.1:{port}/0"))


def steps(cache: Cache) -> None:
    invalidation.booking_written(cache, BOOKING, 60)
    invalidation.bookings_written(cache)
    invalidation.flights_imported(cache)


def test_a_working_redis_is_invalidated(settings, private_redis):
    port, _, _ = private_redis
    client = client_of(settings, port)
    steps(Cache(client))
    assert client.get(cache_keys.booking_details_key("RGTESTINV01")) == "2|"  # the tombstone
    assert client.get(cache_keys.BOOKING_PAGES_GENERATION) == "2"
    assert (
        client.get(cache_keys.FLIGHTS_GENERATION) == client.get(cache_keys.ROUTES_GENERATION) == "1"
    )


def test_a_redis_that_refuses_writes_is_skipped_and_logged(settings, private_redis, caplog):
    port, _, _ = private_redis
    client = client_of(settings, port)
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", 1)  # full: every write gets an OOM reply
    with pytest.raises(redis.exceptions.OutOfMemoryError):
        client.incr(cache_keys.BOOKING_PAGES_GENERATION)
    with caplog.at_level(logging.WARNING, logger="core.invalidation"):
        steps(Cache(client))
    assert len(caplog.records) == 5  # each of the five steps, skipped with a warning
    assert all("maxmemory" in r.getMessage() for r in caplog.records)


def test_a_redis_that_is_down_is_skipped_and_logged(settings, private_redis, caplog):
    port, state, _ = private_redis
    cache = Cache(client_of(settings, port))
    stop(state["proc"])
    with caplog.at_level(logging.WARNING, logger="core.invalidation"):
        steps(cache)
    assert len(caplog.records) == 5
