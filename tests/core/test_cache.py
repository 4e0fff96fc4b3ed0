import json
import logging

import pytest
import redis

from core.cache import KINDS, LOOKUPS, MISSES, ROUTES, USERS, Cache, stats_key


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
    cache.set_many_generational({"test:big2": big, "test:small": small}, 60, generation)
    for key in ("test:big", "test:big2"):
        stored = services.redis.get(key)
        assert stored.startswith("z:") and len(stored) < len(json.dumps(big)) / 4
    assert services.redis.get("test:small").startswith("{")  # small values stay plain JSON
    for key, value in (("test:big", big), ("test:big2", big), ("test:small", small)):
        got, _ = cache.get_generational(key, "test", "test:generation:compress")
        assert got == value


def test_popular_members_survive_a_flood_of_one_offs(services):
    cache = Cache(services.redis)
    services.redis.delete("test:popular")
    for n in range(300):
        cache.count("test:popular", "AAA-BBB", capacity=50)  # 1 in 4 searches
        for i in range(3):
            cache.count("test:popular", f"X{n:04d}-{i}", capacity=50)  # each searched once
    assert services.redis.zcard("test:popular") == 50
    assert cache.top("test:popular", 1) == ["AAA-BBB"]
    services.redis.zadd("test:popular", {f"old{i}": 1 for i in range(20)})  # over capacity
    cache.count("test:popular", "CCC-DDD", capacity=50)
    assert services.redis.zcard("test:popular") == 50


def test_a_redis_out_of_memory_is_a_miss_never_an_error(private_redis, caplog):
    port, _, _ = private_redis
    client = redis.Redis.from_url(f"redis://127.0.0.1:{port}/0", decode_responses=True)
    cache = Cache(client)
    cache.set("test:kept", {"v": 1}, 60)
    out_of_memory(client)
    with caplog.at_level(logging.WARNING, logger="core.cache"):
        cache.set("test:new", {"v": 2}, 60)
        assert cache.get("test:new", USERS) is None
        assert cache.get("test:kept", USERS) == {"v": 1}  # reads are still served
        assert not cache.set_versioned("test:versioned", 1, {"v": 3}, 60)
        computed = cache.through("test:route", ROUTES, "test:generation", 60, lambda: {"v": 4})
        assert computed == {"v": 4}
        cache.set_many_generational({"test:many": {"v": 5}}, 60, 0)
        cache.count("test:popular", "AAA-BBB", capacity=10)
        assert cache.top("test:popular", 5) == []
    refused = [r for r in caplog.records if "maxmemory" in r.getMessage()]
    assert len(refused) >= 6  # each refusal logged
    client.close()
