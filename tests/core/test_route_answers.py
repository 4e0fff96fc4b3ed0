"""The route search's answer: the search's result as JSON, cut to the limit,
cached under a key of its own for each weight and volume."""

import json

import pytest

from core import cache_codec, cache_keys, route_answers, routes
from tests.core.schedules import MIN_CONN, D, search, store_edge_schedule


@pytest.fixture(scope="module")
def edge_schedule(services):
    return store_edge_schedule(services)


def test_a_cached_answer_is_the_search_as_json_cut_to_the_limit(services, edge_schedule):
    """Searched (a miss) or served as stored (a hit), the answer is the search's
    result as JSON, each list cut to `limit`, whatever the limit."""
    services.redis.delete(cache_keys.route_key("QAA", "QBB", D))
    searched = search(services, "QAA", "QBB", D)
    as_json = json.loads(cache_codec.dumps(searched))
    assert len(as_json["direct"]) == 3 and len(as_json["one_transit"]) > 3
    kwargs = {"origin": "QAA", "destination": "QBB", "day": D, "min_connection_minutes": MIN_CONN}
    first = route_answers.cached_search(services.db, services.cache, ttl=60, limit=2, **kwargs)
    assert services.cache.get_answer(
        cache_keys.route_key("QAA", "QBB", D), "test", cache_keys.ROUTES_GENERATION
    )[0]
    for limit in (1, 2, 3, 4, routes.KEPT_OPTIONS):
        answer = route_answers.cached_search(
            services.db, services.cache, ttl=60, limit=limit, **kwargs
        )
        assert answer.endswith(b"}\n")
        assert json.loads(answer) == {
            "origin": "QAA",
            "destination": "QBB",
            "date": D.isoformat(),
            "direct": as_json["direct"][:limit],
            "one_transit": as_json["one_transit"][:limit],
            "counts": as_json["counts"],
        }, limit
        if limit == 2:
            assert answer == first  # the miss's answer and the hit's are the same bytes


def test_a_weighted_search_is_cached_under_its_own_key(services, edge_schedule):
    kwargs = {"origin": "QAA", "destination": "QBB", "day": D, "min_connection_minutes": MIN_CONN}
    plain, weighted = (
        cache_keys.route_key("QAA", "QBB", D),
        cache_keys.route_key("QAA", "QBB", D, 125_500),
    )
    assert weighted == f"{plain}:125500g"
    services.redis.delete(plain, weighted)
    answer = route_answers.cached_search(
        services.db, services.cache, ttl=45, weight_kg=125.5, **kwargs
    )
    assert not services.redis.exists(plain)
    assert 0 < services.redis.ttl(weighted) <= 45
    searched = routes.search_routes(services.db, weight_g=125_500, **kwargs)
    assert answer == route_answers.route_answer("QAA", "QBB", D, searched)[1]
    again = route_answers.cached_search(
        services.db, services.cache, ttl=45, weight_kg=125.50, **kwargs
    )
    assert again == answer


def test_a_search_by_volume_is_cached_under_its_own_key(services, edge_schedule):
    kwargs = {"origin": "QAA", "destination": "QBB", "day": D, "min_connection_minutes": MIN_CONN}
    plain = cache_keys.route_key("QAA", "QBB", D)
    both = cache_keys.route_key("QAA", "QBB", D, 125_500, 1_200_000)
    alone = cache_keys.route_key("QAA", "QBB", D, None, 1_200_000)
    assert (both, alone) == (f"{plain}:125500g:1200000cm3", f"{plain}:1200000cm3")
    services.redis.delete(plain, both, alone)
    answer = route_answers.cached_search(
        services.db, services.cache, ttl=45, weight_kg=125.5, volume_m3=1.2, **kwargs
    )
    assert 0 < services.redis.ttl(both) <= 45 and not services.redis.exists(plain, alone)
    searched = routes.search_routes(services.db, weight_g=125_500, volume_cm3=1_200_000, **kwargs)
    assert answer == route_answers.route_answer("QAA", "QBB", D, searched)[1]
