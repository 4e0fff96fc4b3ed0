"""The warmer stores what a search would return, and computes again only
what changed."""

import json
import random
from datetime import date, timedelta

import pytest

from core import cache_keys, invalidation, route_answers, warming
from tests.conftest import store_flights
from tests.core.schedules import MIN_CONN, at, raw, search


def warm(services, wanted: list, today: date, *, now: float = 1e9, refresh_s: float = 300) -> dict:
    return warming.warm_routes(
        services.db,
        services.cache,
        wanted,
        today=today,
        min_connection_minutes=MIN_CONN,
        ttl=60,
        refresh_s=refresh_s,
        now=now,
    )


def test_warming_stores_what_a_search_would_return(services):
    """The warmer joins legs read once for all routes; each value it stores must
    be the search's own result, whatever the route and day."""
    rng = random.Random(99)
    airports = ["QWA", "QWB", "QWC", "QWD"]
    today = date(2031, 9, 1)
    schedule = []
    for n in range(250):
        origin, destination = rng.sample(airports, 2)
        dep = at(today, 0, 0) + timedelta(minutes=rng.randrange(-24 * 60, 4 * 24 * 60))
        schedule.append(raw(f"QW{n:04d}", origin, destination, dep, rng.randrange(30, 900)))
    assert store_flights(services, schedule, chunk_size=100)["failed"] == 0
    popular = [("QWA", "QWB"), ("QZZ", "QWA")]  # one route with no flights at all
    wanted = list(dict.fromkeys(popular + [(o, d) for o in airports for d in airports if o != d]))
    outcome = warm(services, wanted, today)
    assert outcome["routes"] == len(wanted) and outcome["computed"] == 2 * len(wanted)
    generation = services.cache.generation(cache_keys.ROUTES_GENERATION)
    for origin, destination in dict.fromkeys(wanted):
        for day in (today, today + timedelta(days=1)):
            key = cache_keys.route_key(origin, destination, day)
            stored, _ = services.cache.get_answer(key, "test", cache_keys.ROUTES_GENERATION)
            searched = search(services, origin, destination, day)
            answer = route_answers.route_answer(origin, destination, day, searched)
            assert stored == answer, (origin, destination, day)
    assert generation >= 0


def test_warming_warms_the_routes_it_is_given_and_no_others(services):
    wanted = [("QWA", "QWB"), ("QWB", "QWA"), ("QWC", "QWD")]
    days = (date(2031, 9, 20), date(2031, 9, 21))  # no other test's
    outcome = warm(services, wanted, days[0])
    assert outcome["routes"] == 3 and outcome["keys"] == 6
    warmed = [key for day in days for key in services.redis.scan_iter(match=f"routes:*:{day}")]
    assert sorted(warmed) == sorted(
        cache_keys.route_key(o, d, day) for o, d in wanted for day in days
    )


# -- what a warm computes, and what it only keeps ----------------------------------------

WARM_DAY = date(2031, 11, 4)
WARMED_ROUTE = ("QVA", "QVB")


@pytest.fixture
def warm_schedule(services):
    schedule = [
        raw("QV1", "QVA", "QVB", at(WARM_DAY, 8, 0), 120),
        raw("QV2", "QVA", "QVC", at(WARM_DAY, 9, 0), 60),
        raw("QV3", "QVC", "QVB", at(WARM_DAY, 12, 0), 60),
    ]
    assert store_flights(services, schedule, chunk_size=10)["failed"] == 0
    services.redis.delete(warming.WARMED)  # what earlier tests' warms recorded
    return schedule


def _stored(services, route=WARMED_ROUTE, day=WARM_DAY):
    found, _ = services.cache.get_answer(
        cache_keys.route_key(*route, day), "test", cache_keys.ROUTES_GENERATION
    )
    return found


def test_a_warm_whose_inputs_did_not_change_computes_nothing_and_keeps_the_answers(
    services, warm_schedule
):
    first = warm(services, [WARMED_ROUTE], WARM_DAY, now=1e9)
    assert first["computed"] == 2
    key = cache_keys.route_key(*WARMED_ROUTE, WARM_DAY)
    services.redis.expire(key, 5)  # about to expire
    before = _stored(services)
    second = warm(services, [WARMED_ROUTE], WARM_DAY, now=1e9 + 50)
    assert second["computed"] == 0 and second["legs_read"] == 0
    assert services.redis.ttl(key) > 5  # its TTL given again
    assert _stored(services) == before


def test_a_booking_makes_every_warmed_route_computed_again(services, warm_schedule):
    warm(services, [WARMED_ROUTE], WARM_DAY, now=1e9)
    invalidation.bookings_written(services.cache)
    again = warm(services, [WARMED_ROUTE], WARM_DAY, now=1e9 + 50)
    assert again["computed"] == 2 and again["legs_read"] > 0


def test_a_flight_import_makes_every_warmed_route_computed_again(services, warm_schedule):
    warm(services, [WARMED_ROUTE], WARM_DAY, now=1e9)
    store_flights(services, [raw("QV4", "QVA", "QVB", at(WARM_DAY, 20, 0), 90)], chunk_size=10)
    invalidation.flights_imported(services.cache)
    again = warm(services, [WARMED_ROUTE], WARM_DAY, now=1e9 + 50)
    assert again["computed"] == 2
    stored = json.loads(_stored(services)[1])
    assert [o["flights"][0]["flight_id"] for o in stored["direct"]] == [
        "QV1-20311104",
        "QV4-20311104",
    ]


def test_a_warmed_answer_gone_from_redis_or_too_old_is_computed_again(services, warm_schedule):
    warm(services, [WARMED_ROUTE], WARM_DAY, now=1e9)
    services.redis.delete(cache_keys.route_key(*WARMED_ROUTE, WARM_DAY))
    assert warm(services, [WARMED_ROUTE], WARM_DAY, now=1e9 + 50)["computed"] == 1
    assert _stored(services) is not None
    assert warm(services, [WARMED_ROUTE], WARM_DAY, now=1e9 + 100)["computed"] == 0
    assert warm(services, [WARMED_ROUTE], WARM_DAY, now=1e9 + 400)["computed"] == 2


def test_an_answer_a_search_filled_is_computed_by_the_next_warm(services, warm_schedule):
    """The warmer vouches only for answers it computed itself."""
    kwargs = {"origin": "QVA", "destination": "QVB", "day": WARM_DAY}
    route_answers.cached_search(
        services.db, services.cache, min_connection_minutes=MIN_CONN, ttl=60, **kwargs
    )
    assert warm(services, [WARMED_ROUTE], WARM_DAY)["computed"] == 2
