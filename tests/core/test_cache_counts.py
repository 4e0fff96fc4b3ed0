from core.cache_counts import Counts


def test_popular_members_survive_a_flood_of_one_offs(services):
    counts = Counts(services.redis)
    services.redis.delete("test:popular")
    for n in range(300):
        counts.count("test:popular", "AAA-BBB", capacity=50)  # 1 in 4 searches
        for i in range(3):
            counts.count("test:popular", f"X{n:04d}-{i}", capacity=50)  # each searched once
    counts.flush()
    assert services.redis.zrevrange("test:popular", 0, 0) == ["AAA-BBB"]
    assert services.redis.zcard("test:popular") == 50
    services.redis.zadd("test:popular", {f"old{i}": 1 for i in range(20)})  # over capacity
    counts.count("test:popular", "CCC-DDD", capacity=50)
    counts.flush()
    assert services.redis.zcard("test:popular") == 50
    assert services.redis.zscore("test:popular", "CCC-DDD") >= 1


def test_touch_keeps_the_members_seen_last(services):
    counts = Counts(services.redis)
    services.redis.delete("test:seen")
    for i in range(5):
        counts.touch("test:seen", f"R{i}", 1000.0 + i, capacity=3)
    counts.touch("test:seen", "R4", 1.0, capacity=3)  # an earlier sighting changes nothing
    counts.flush()
    assert services.redis.zrevrange("test:seen", 0, -1, withscores=True) == [
        ("R4", 1004.0),
        ("R3", 1003.0),
        ("R2", 1002.0),
    ]
