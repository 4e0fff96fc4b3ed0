"""Route search against a brute-force oracle, on a schedule full of edge cases."""

import json
import random
from datetime import UTC, date, datetime, timedelta

import pytest

from core import cache as caches
from core import flights, invalidation, itinerary, route_answers, routes, warming
from core.errors import Unprocessable
from tests.conftest import store_flights

MIN_CONN = 60
D = date(2031, 3, 10)  # far from any other test's flights


def at(day: date, hh: int, mm: int, plus_days: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hh, mm, tzinfo=UTC) + timedelta(days=plus_days)


def raw(number, origin, destination, dep: datetime, minutes: int):
    return {
        "flight_number": number,
        "airline": "Test Air",
        "origin": origin,
        "destination": destination,
        "departure_ts": dep.isoformat(),
        "arrival_ts": (dep + timedelta(minutes=minutes)).isoformat(),
    }


def search(services, origin: str, destination: str, day: date, **options) -> dict:
    """routes.search_routes at this module's minimum connection."""
    return routes.search_routes(
        services.db,
        origin=origin,
        destination=destination,
        day=day,
        min_connection_minutes=MIN_CONN,
        **options,
    )


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


def oracle(schedule, origin, destination, day):
    """The definition, by brute force over every flight and every pair."""
    start = at(day, 0, 0)
    end, end_next = start + timedelta(days=1), start + timedelta(days=2)
    docs = [flights.flight_document(flights._schema.load(r), 20_000) for r in schedule]
    direct = [
        (d["flight_id"],)
        for d in docs
        if d["origin"] == origin
        and d["destination"] == destination
        and start <= d["departure_ts"] < end
    ]
    transit = [
        (a["flight_id"], b["flight_id"])
        for a in docs
        for b in docs
        if a["origin"] == origin
        and start <= a["departure_ts"] < end
        and a["destination"] == b["origin"]
        and b["destination"] == destination
        and a["destination"] not in (origin, destination)
        and b["departure_ts"] >= a["arrival_ts"] + timedelta(minutes=MIN_CONN)
        and b["departure_ts"] < end_next
    ]
    return sorted(direct), sorted(transit)


def best_first(schedule, pairs):
    """Pairs ordered as the search orders options: arrival, then duration, then ids."""
    docs = {
        d["flight_id"]: d
        for d in (flights.flight_document(flights._schema.load(r), 20_000) for r in schedule)
    }

    def key(pair):
        first, second = docs[pair[0]], docs[pair[1]]
        return (second["arrival_ts"], second["arrival_ts"] - first["departure_ts"], *pair)

    return sorted(pairs, key=key)


def ids(options):
    return sorted(tuple(f["flight_id"] for f in o["flights"]) for o in options)


@pytest.fixture(scope="module")
def edge_schedule(services):
    A, B, X, Y = "QAA", "QBB", "QXX", "QYY"
    s = [
        raw("QT1", A, B, at(D, 8, 0), 120),  # direct
        raw("QT2", A, B, at(D, 23, 58), 120),  # direct near midnight
        raw("QT3", A, B, at(D, 0, 1, plus_days=1), 120),  # next day: not on D
        raw("QT4", A, B, at(D, 23, 59, plus_days=-1), 60),  # previous day: not on D
        raw("QT10", A, X, at(D, 6, 0), 60),  # arrives 07:00
        raw("QT11", X, B, at(D, 8, 0), 60),  # exactly 60 min: yes
        raw("QT12", X, B, at(D, 7, 59), 60),  # 59 min: no
        raw("QT13", X, B, at(D, 23, 59, plus_days=1), 60),  # 23:59 next day: yes
        raw("QT14", X, B, at(D, 0, 0, plus_days=2), 60),  # 00:00 the day after: no
        raw("QT20", A, Y, at(D, 22, 30), 90),  # arrives 00:00 next day
        raw("QT21", Y, B, at(D, 1, 0, plus_days=1), 45),  # 60 min after: yes
        raw("QT22", Y, B, at(D, 0, 30, plus_days=1), 45),  # 30 min: no
        raw("QT30", A, B, at(D, 12, 0), 30),  # B as X: first leg to B...
        raw("QT31", B, B.replace("B", "C"), at(D, 14, 0), 30),  # ...then onward: never a transit
        raw("QT32", A, A.replace("A", "D"), at(D, 9, 0), 30),  # QAD, then back to A: not via A
        raw("QT33", "QAD", A, at(D, 11, 0), 30),
        raw("QT34", A, X, at(D, 23, 50), 60),  # first leg late on D: pairs with QT13
        raw("QT40", A, X, at(D, 6, 0, plus_days=1), 60),  # first leg on D+1 only
        raw("QT41", X, B, at(D, 9, 0, plus_days=1), 60),
    ]
    result = store_flights(services, s, chunk_size=7)
    assert result["failed"] == 0 and result["succeeded"] == len(s)
    return s


@pytest.mark.parametrize(
    "day", [D - timedelta(days=1), D, D + timedelta(days=1), D + timedelta(days=2)]
)
def test_edge_schedule_matches_the_oracle(services, edge_schedule, day):
    result = search(services, "QAA", "QBB", day)
    direct, transit = oracle(edge_schedule, "QAA", "QBB", day)
    assert ids(result["direct"]) == direct
    assert ids(result["one_transit"]) == transit
    assert result["counts"] == {"direct": len(direct), "one_transit": len(transit)}


def test_the_edges_fall_where_the_rules_say(services, edge_schedule):
    result = search(services, "QAA", "QBB", D)
    pairs = {tuple(f["flight_number"] for f in o["flights"]) for o in result["one_transit"]}
    assert ("QT10", "QT11") in pairs  # connection exactly at the minimum
    assert ("QT10", "QT12") not in pairs  # one minute below
    assert ("QT10", "QT13") in pairs  # 23:59 on the next day
    assert ("QT10", "QT14") not in pairs  # 00:00 the day after
    assert ("QT20", "QT21") in pairs and ("QT20", "QT22") not in pairs
    assert not any(o["via"] in ("QAA", "QBB") for o in result["one_transit"])
    assert {f["flight_number"] for o in result["direct"] for f in o["flights"]} == {
        "QT1",
        "QT2",
        "QT30",
    }


def test_options_are_sorted_and_described(services, edge_schedule):
    result = search(services, "QAA", "QBB", D)
    for options in (result["direct"], result["one_transit"]):
        keys = [(o["arrival_ts"], o["total_duration_minutes"]) for o in options]
        assert keys == sorted(keys)
    option = next(
        o
        for o in result["one_transit"]
        if [f["flight_number"] for f in o["flights"]] == ["QT10", "QT11"]
    )
    assert option["via"] == "QXX" and option["layover_minutes"] == 60
    assert option["total_duration_minutes"] == 180
    assert option["departure_ts"] == at(D, 6, 0) and option["arrival_ts"] == at(D, 9, 0)


@pytest.mark.slow(reason="random schedules searched against an oracle")
def test_random_schedules_match_the_oracle(services):
    rng = random.Random(1234)
    airports = ["QRA", "QRB", "QRC", "QRD", "QRE"]
    base = date(2031, 5, 1)
    schedule = []
    for n in range(400):
        origin, destination = rng.sample(airports, 2)
        dep = at(base, 0, 0) + timedelta(minutes=rng.randrange(0, 4 * 24 * 60))
        schedule.append(raw(f"QR{n:04d}", origin, destination, dep, rng.randrange(30, 600)))
    assert store_flights(services, schedule, chunk_size=100)["failed"] == 0
    checked = 0
    for day in (base, base + timedelta(days=1), base + timedelta(days=3)):
        for origin in airports:
            for destination in airports:
                if origin == destination:
                    continue
                result = search(services, origin, destination, day)
                direct, transit = oracle(schedule, origin, destination, day)
                assert ids(result["direct"]) == direct
                assert result["counts"]["one_transit"] == len(transit)
                if len(transit) <= routes.KEPT_OPTIONS:
                    assert ids(result["one_transit"]) == transit
                else:  # the kept options are exactly the earliest arrivals
                    kept = [
                        tuple(f["flight_id"] for f in o["flights"]) for o in result["one_transit"]
                    ]
                    assert kept == best_first(schedule, transit)[: routes.KEPT_OPTIONS]
                checked += len(transit)
    assert checked > 100  # the random schedule really has connections


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
    generation = services.cache.generation(caches.ROUTES_GENERATION)
    for origin, destination in dict.fromkeys(wanted):
        for day in (today, today + timedelta(days=1)):
            key = caches.route_key(origin, destination, day)
            stored, _ = services.cache.get_answer(key, "test", caches.ROUTES_GENERATION)
            searched = search(services, origin, destination, day)
            answer = route_answers.route_answer(origin, destination, day, searched)
            assert stored == answer, (origin, destination, day)
    assert generation >= 0


def test_a_cached_answer_is_the_search_as_json_cut_to_the_limit(services, edge_schedule):
    """Searched (a miss) or served as stored (a hit), the answer is the search's
    result as JSON, each list cut to `limit`, whatever the limit."""
    services.redis.delete(caches.route_key("QAA", "QBB", D))
    searched = search(services, "QAA", "QBB", D)
    as_json = json.loads(caches.dumps(searched))
    assert len(as_json["direct"]) == 3 and len(as_json["one_transit"]) > 3
    kwargs = {"origin": "QAA", "destination": "QBB", "day": D, "min_connection_minutes": MIN_CONN}
    first = route_answers.cached_search(services.db, services.cache, ttl=60, limit=2, **kwargs)
    assert services.cache.get_answer(
        caches.route_key("QAA", "QBB", D), "test", caches.ROUTES_GENERATION
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


def test_warming_warms_the_routes_it_is_given_and_no_others(services):
    wanted = [("QWA", "QWB"), ("QWB", "QWA"), ("QWC", "QWD")]
    days = (date(2031, 9, 20), date(2031, 9, 21))  # no other test's
    outcome = warm(services, wanted, days[0])
    assert outcome["routes"] == 3 and outcome["keys"] == 6
    warmed = [key for day in days for key in services.redis.scan_iter(match=f"routes:*:{day}")]
    assert sorted(warmed) == sorted(caches.route_key(o, d, day) for o, d in wanted for day in days)


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
        caches.route_key(*route, day), "test", caches.ROUTES_GENERATION
    )
    return found


def test_a_warm_whose_inputs_did_not_change_computes_nothing_and_keeps_the_answers(
    services, warm_schedule
):
    first = warm(services, [WARMED_ROUTE], WARM_DAY, now=1e9)
    assert first["computed"] == 2
    key = caches.route_key(*WARMED_ROUTE, WARM_DAY)
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
    services.redis.delete(caches.route_key(*WARMED_ROUTE, WARM_DAY))
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


def test_itinerary_checks(services, edge_schedule):
    def check(ids_, origin="QAA", destination="QBB"):
        return itinerary.check_itinerary(
            services.db,
            origin=origin,
            destination=destination,
            flight_ids=ids_,
            min_connection_minutes=MIN_CONN,
        )

    assert len(check(["QT1-20310310"])) == 1
    assert len(check(["QT10-20310310", "QT11-20310310"])) == 2
    for bad in (
        ["QT10-20310310", "QT12-20310310"],  # 59 min connection
        ["QT10-20310310", "QT14-20310312"],  # after the end of the next day
        ["QT10-20310310"],  # ends at QXX
        ["QT11-20310310", "QT10-20310310"],  # wrong order
        ["NOPE-20310310"],
    ):
        with pytest.raises(Unprocessable):
            check(bad)


def test_only_the_best_options_are_kept_when_there_are_many(services):
    day = date(2031, 7, 1)
    schedule = [raw(f"QK{n:02d}", "QKA", "QKX", at(day, 1 + n % 12, 0), 60 + n) for n in range(20)]
    schedule += [
        raw(f"QL{n:02d}", "QKX", "QKB", at(day, 14 + n % 9, 5 * n % 60), 45 + 7 * n)
        for n in range(20)
    ]
    assert store_flights(services, schedule, chunk_size=50)["failed"] == 0
    result = search(services, "QKA", "QKB", day)
    _, transit = oracle(schedule, "QKA", "QKB", day)
    assert len(transit) > routes.KEPT_OPTIONS
    assert result["counts"]["one_transit"] == len(transit)
    kept = [tuple(f["flight_id"] for f in o["flights"]) for o in result["one_transit"]]
    assert kept == best_first(schedule, transit)[: routes.KEPT_OPTIONS]


def test_a_weight_keeps_the_best_options_with_room_on_every_leg(services):
    """Legs short of room are left out before the options are joined and cut,
    so the kept options are the best among those with room, and counts are theirs."""
    day = date(2031, 7, 2)
    schedule = [raw(f"QM{n:02d}", "QMA", "QMX", at(day, 1 + n % 12, 0), 60 + n) for n in range(30)]
    schedule += [
        raw(f"QN{n:02d}", "QMX", "QMB", at(day, 14 + n % 9, 5 * n % 60), 45 + 7 * n)
        for n in range(30)
    ]
    schedule += [raw(f"QO{n:02d}", "QMA", "QMB", at(day, 6 + n, 0), 90) for n in range(6)]
    assert store_flights(services, schedule, chunk_size=50)["failed"] == 0
    rng = random.Random(5)
    available_g = {}  # room left by reservations, set as core.reservations would leave it
    for r in schedule:
        fid = flights.flight_id(r["flight_number"], datetime.fromisoformat(r["departure_ts"]))
        available_g[fid] = rng.choice([1_000_000, 4_999_999, 5_000_000, *[20_000_000] * 3])
        booked = 20_000_000 - available_g[fid]
        services.db.flights.update_one(
            {"_id": fid}, {"$set": {"booked_g": booked, "available_g": available_g[fid]}}
        )
    weight_g = 5_000_000
    direct, transit = oracle(schedule, "QMA", "QMB", day)
    roomy_direct = [o for o in direct if available_g[o[0]] >= weight_g]
    roomy = [p for p in transit if all(available_g[fid] >= weight_g for fid in p)]
    assert 0 < len(roomy_direct) < len(direct)
    assert routes.KEPT_OPTIONS < len(roomy) < len(transit)
    assert set(best_first(schedule, transit)[: routes.KEPT_OPTIONS]) - set(roomy)  # cut matters

    result = search(services, "QMA", "QMB", day, weight_g=weight_g)
    assert ids(result["direct"]) == roomy_direct
    kept = [tuple(f["flight_id"] for f in o["flights"]) for o in result["one_transit"]]
    assert kept == best_first(schedule, roomy)[: routes.KEPT_OPTIONS]
    assert result["counts"] == {"direct": len(roomy_direct), "one_transit": len(roomy)}
    legs = [f for o in result["direct"] + result["one_transit"] for f in o["flights"]]
    assert all(f["available_kg"] == available_g[f["flight_id"]] / 1000 for f in legs)

    # A flight stored before flights had a capacity promises no room.
    legacy = roomy_direct[0][0]
    services.db.flights.update_one(
        {"_id": legacy}, {"$unset": {"capacity_g": "", "booked_g": "", "available_g": ""}}
    )
    result = search(services, "QMA", "QMB", day, weight_g=1)
    assert legacy not in {o["flights"][0]["flight_id"] for o in result["direct"]}


def test_a_weighted_search_is_cached_under_its_own_key(services, edge_schedule):
    kwargs = {"origin": "QAA", "destination": "QBB", "day": D, "min_connection_minutes": MIN_CONN}
    plain, weighted = caches.route_key("QAA", "QBB", D), caches.route_key("QAA", "QBB", D, 125_500)
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


def test_a_volume_keeps_the_options_with_room_for_it_and_for_the_weight(services):
    """Each leg needs room for both measures asked for: a roomy hold short of
    weight and a heavy-lifter short of volume are both left out."""
    day = date(2031, 8, 4)
    holds = {  # number: (capacity_kg, capacity_m3)
        "QV1": (5000, 10),  # room for both
        "QV2": (5000, 1.999999),  # one cm3 short of the volume
        "QV3": (499.999, 50),  # one gram short of the weight
        "QV4": (5000, 2),  # exactly the volume
    }
    schedule = [
        {**raw(n, "QVA", "QVB", at(day, 6 + i, 0), 90), "capacity_kg": kg, "capacity_m3": m3}
        for i, (n, (kg, m3)) in enumerate(holds.items())
    ]
    schedule.append(raw("QV5", "QVA", "QVX", at(day, 5, 0), 60))  # derived: 20 t, 120 m3
    schedule.append(
        {**raw("QV6", "QVX", "QVB", at(day, 9, 0), 60), "capacity_kg": 5000, "capacity_m3": 1}
    )
    assert store_flights(services, schedule, chunk_size=10)["failed"] == 0
    fid = {
        r["flight_number"]: flights.flight_id(r["flight_number"], at(day, 0, 0)) for r in schedule
    }

    def found(**options):
        result = search(services, "QVA", "QVB", day, **options)
        return [[f["flight_id"][:3] for f in o["flights"]] for o in result["direct"]], [
            [f["flight_id"][:3] for f in o["flights"]] for o in result["one_transit"]
        ]

    assert found(volume_cm3=2_000_000) == ([["QV1"], ["QV3"], ["QV4"]], [])
    assert found(volume_cm3=2_000_000, weight_g=500_000) == ([["QV1"], ["QV4"]], [])
    assert found(volume_cm3=1_000_000) == ([["QV1"], ["QV2"], ["QV3"], ["QV4"]], [["QV5", "QV6"]])
    leg = search(services, "QVA", "QVB", day)["direct"][0]["flights"][0]
    assert (leg["capacity_m3"], leg["booked_m3"], leg["available_m3"]) == (10, 0, 10)
    assert fid["QV1"] == leg["flight_id"]


def test_a_search_by_volume_is_cached_under_its_own_key(services, edge_schedule):
    kwargs = {"origin": "QAA", "destination": "QBB", "day": D, "min_connection_minutes": MIN_CONN}
    plain = caches.route_key("QAA", "QBB", D)
    both = caches.route_key("QAA", "QBB", D, 125_500, 1_200_000)
    alone = caches.route_key("QAA", "QBB", D, None, 1_200_000)
    assert (both, alone) == (f"{plain}:125500g:1200000cm3", f"{plain}:1200000cm3")
    services.redis.delete(plain, both, alone)
    answer = route_answers.cached_search(
        services.db, services.cache, ttl=45, weight_kg=125.5, volume_m3=1.2, **kwargs
    )
    assert 0 < services.redis.ttl(both) <= 45 and not services.redis.exists(plain, alone)
    searched = routes.search_routes(services.db, weight_g=125_500, volume_cm3=1_200_000, **kwargs)
    assert answer == route_answers.route_answer("QAA", "QBB", D, searched)[1]
