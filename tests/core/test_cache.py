import json

from core.cache import KINDS, LOOKUPS, MISSES, ROUTES, USERS, Cache, stats_key


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
