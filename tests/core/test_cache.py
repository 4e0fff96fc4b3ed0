import json
import logging
import time

import pytest
import redis

from core.cache import Cache
from core.cache_codec import split_answer
from core.cache_keys import KINDS, LOOKUPS, MISSES, ROUTES, USERS, stats_key
from core.flushing import FLUSH_INTERVAL_S


def out_of_memory(client: redis.Redis) -> None:
    """Make a real Redis refuse every write, as a full one does (maxmemory, noeviction)."""
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", 1)
    with pytest.raises(redis.exceptions.OutOfMemoryError):
        client.set("test:refused", 1)


def test_a_slow_reader_cannot_refill_what_a_writer_invalidated(services):
    cache = Cache(services.redis)
    key = "test:versioned"
    services.redis.delete(key)
    assert cache.set_versioned(key, 1, {"v": 1}, 60)
    assert cache.get(key, "test") == {"v": 1}
    # A writer commits version 2 and invalidates; a reader that read version 1
    # before the commit now tries to fill: refused.
    cache.invalidate_versioned(key, 2, 60)
    assert cache.get(key, "test") is None
    assert not cache.set_versioned(key, 1, {"v": 1}, 60)
    assert cache.set_versioned(key, 2, {"v": 2}, 60)
    assert cache.get(key, "test") == {"v": 2}


def test_hits_and_misses_are_counted_per_kind(services):
    cache = Cache(services.redis)
    counters = [stats_key(kind, c) for kind in KINDS for c in (LOOKUPS, MISSES)]
    services.redis.delete(*counters, "test:c", "test:v")
    cache.get("test:c", USERS)  # a miss
    cache.set("test:c", [1], 60)
    cache.get("test:c", USERS)
    cache.get("test:c", USERS)
    cache.invalidate_versioned("test:v", 2, 60)
    cache.get("test:v", USERS)  # a tombstone: a miss
    assert cache.hit_stats()[USERS] == {"hits": 2, "misses": 2, "hit_rate": 0.5}
    assert cache.hit_stats()[ROUTES] == {"hits": 0, "misses": 0, "hit_rate": None}


def test_generations_make_old_pages_unreachable(services):
    cache = Cache(services.redis)
    services.redis.delete("test:gen")
    before = cache.generation("test:gen")
    cache.bump_generation("test:gen")
    assert cache.generation("test:gen") == before + 1


def test_large_generational_values_are_stored_compressed(services):
    cache = Cache(services.redis)
    big = {"options": [{"flight_id": f"RG{i:04d}-20310101", "n": i} for i in range(500)]}
    small = {"options": []}
    generation = cache.generation("test:generation:compress")
    cache.set_generational("test:big", big, 60, generation)
    cache.set_generational("test:small", small, 60, generation)
    stored = services.redis.get("test:big")
    assert stored.startswith("z:") and len(stored) < len(json.dumps(big)) / 4
    assert services.redis.get("test:small").startswith("{")  # small values stay plain JSON
    for key, value in (("test:big", big), ("test:small", small)):
        got, _ = cache.get_generational(key, "test", "test:generation:compress")
        assert got == value


def test_answers_are_served_as_stored_and_only_under_their_generation(services):
    cache = Cache(services.redis)
    big = json.dumps([{"flight_id": f"RG{i:04d}-20310101"} for i in range(500)]).encode()
    small = b'{"direct":[]}\n'
    generation = cache.generation("test:generation:answers")
    cache.set_answers({"test:a:big": (b"1,2;", big), "test:a:small": (b"", small)}, 60, generation)
    raw = services.redis.execute_command("GET", "test:a:big", NEVER_DECODE=[])
    assert raw.startswith(b"%d|z|1,2;\n" % generation) and len(raw) < len(big) / 4
    assert split_answer(raw) == (generation, b"1,2;", big)
    for key, stored in (("test:a:big", (b"1,2;", big)), ("test:a:small", (b"", small))):
        assert cache.get_answer(key, "test", "test:generation:answers") == (stored, generation)
    # A value stored before answers were (a rolling deploy) is a miss, never an error.
    services.redis.set("test:a:old", "z:" + "A" * 40)
    assert cache.get_answer("test:a:old", "test", "test:generation:answers") == (None, generation)
    # An answer computed before a bump is stored under the old generation: a miss.
    cache.bump_generation("test:generation:answers")
    cache.set_answers({"test:a:small": (b"", small)}, 60, generation)
    assert cache.get_answer("test:a:small", "test", "test:generation:answers") == (
        None,
        generation + 1,
    )


@pytest.mark.slow(reason="waits for the counts' flush interval")
def test_counts_reach_redis_without_a_reader_asking(services):
    """The flusher adds this process's tally on its own, within an interval or so."""
    cache = Cache(services.redis)
    services.redis.delete(stats_key("test_flush", LOOKUPS), stats_key("test_flush", MISSES))
    cache.get_answer("test:absent", "test_flush", "test:generation:flush")
    key = stats_key("test_flush", MISSES)
    deadline = time.monotonic() + 10 * FLUSH_INTERVAL_S
    while services.redis.get(key) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert services.redis.get(key) == "1"
    assert services.redis.get(stats_key("test_flush", LOOKUPS)) == "1"


def test_a_redis_out_of_memory_is_a_miss_never_an_error(private_redis, caplog):
    port, _, _ = private_redis
    client = redis.Redis.from_url(f"redis://127.0.0.1:{port}/0", decode_responses=True)
    cache = Cache(client)
    cache.set("test:kept", {"v": 1}, 60)
    out_of_memory(client)
    with caplog.at_level(logging.WARNING, logger="core"):
        cache.set("test:new", {"v": 2}, 60)
        assert cache.get("test:new", USERS) is None
        assert cache.get("test:kept", USERS) == {"v": 1}  # reads are still served
        assert not cache.set_versioned("test:versioned", 1, {"v": 3}, 60)
        computed = cache.through("test:route", ROUTES, "test:generation", 60, lambda: {"v": 4})
        assert computed == {"v": 4}
        cache.set_answers({"test:many": (b"", b"{}")}, 60, 0)
        cache.count("test:popular", "AAA-BBB", capacity=10)
        assert cache.top("test:popular", 5) == []  # its flush refused, then an empty read
    refused = [r for r in caplog.records if "maxmemory" in r.getMessage()]
    # set, set_versioned, through's fill, set_answers, and the counts' flush
    assert len(refused) >= 5  # each refusal logged
    client.close()
