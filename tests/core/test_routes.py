"""Route search against a brute-force oracle, on a schedule full of edge cases."""

import random
from datetime import date, datetime, timedelta

import pytest

from core import flights, routes
from tests.conftest import store_flights
from tests.core.schedules import MIN_CONN, D, at, raw, search, store_edge_schedule


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
    return store_edge_schedule(services)


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
