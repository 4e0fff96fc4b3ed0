"""GET /api/routes in process: the answer a miss computes is the answer a hit serves."""

from datetime import UTC, date, datetime, timedelta

import pytest

from core import cache_keys, flights, measures
from ingress.responses.flights import RouteSearchSchema
from tests.conftest import store_flights

DAY = date(2031, 11, 3)  # far from any other test's flights


def leg(number: str, origin: str, destination: str, hour: int) -> dict:
    departure = datetime(DAY.year, DAY.month, DAY.day, hour, tzinfo=UTC)
    return {
        "flight_number": number,
        "airline": "Test Air",
        "origin": origin,
        "destination": destination,
        "departure_ts": departure.isoformat(),
        "arrival_ts": (departure + timedelta(minutes=90)).isoformat(),
    }


def test_a_hit_serves_the_bytes_the_miss_answered(client, services):
    schedule = [leg(f"RQ{h}", "QRA", "QRB", h) for h in range(6, 12)]
    schedule += [leg("RQ20", "QRA", "QRX", 6), leg("RQ21", "QRX", "QRB", 10)]
    assert store_flights(services, schedule, chunk_size=50)["failed"] == 0
    services.redis.delete(cache_keys.route_key("QRA", "QRB", DAY))
    url = f"/api/routes?origin=QRA&destination=QRB&date={DAY.isoformat()}&limit=4"
    missed = client.get(url)
    assert services.redis.exists(cache_keys.route_key("QRA", "QRB", DAY))
    hit = client.get(url)
    assert missed.status_code == hit.status_code == 200
    assert hit.headers["Content-Type"] == "application/json"
    assert hit.data == missed.data
    body = hit.get_json()
    assert RouteSearchSchema().validate(body) == {}
    assert list(body) == ["origin", "destination", "date", "direct", "one_transit", "counts"]
    assert (body["origin"], body["destination"], body["date"]) == ("QRA", "QRB", DAY.isoformat())
    assert [o["flights"][0]["flight_number"] for o in body["direct"]] == [
        "RQ6",
        "RQ7",
        "RQ8",
        "RQ9",
    ]
    assert body["counts"] == {"direct": 6, "one_transit": 1}
    assert [[f["flight_number"] for f in o["flights"]] for o in body["one_transit"]] == [
        ["RQ20", "RQ21"]
    ]


def store(services, schedule: list[dict]) -> None:
    result = store_flights(services, schedule, chunk_size=50)
    assert result["failed"] == 0


def book(services, number: str, kg: float) -> None:
    """What reservations leave on a 20 t flight, written directly."""
    departure = datetime(DAY.year, DAY.month, DAY.day, tzinfo=UTC)
    booked = measures.grams(kg)
    services.db.flights.update_one(
        {"_id": flights.flight_id(number, departure)},
        {"$set": {"booked_g": booked, "available_g": 20_000_000 - booked}},
    )


def numbers(options: list[dict]) -> list[list[str]]:
    return [[f["flight_number"] for f in o["flights"]] for o in options]


def test_a_weight_leaves_out_the_options_with_a_leg_short_of_room(client, services):
    store(
        services,
        [
            leg("RW1", "QWE", "QWF", 6),
            leg("RW2", "QWE", "QWF", 7),
            leg("RW3", "QWE", "QWG", 6),
            leg("RW4", "QWG", "QWF", 10),
            leg("RW5", "QWG", "QWF", 11),
        ],
    )
    book(services, "RW1", 19_500)  # 500 kg left
    book(services, "RW4", 19_900.25)  # 99.75 kg left
    cases = (  # weight_kg, the direct options, the one-transit options
        ("99.75", [["RW1"], ["RW2"]], [["RW3", "RW4"], ["RW3", "RW5"]]),  # exactly the room
        ("99.751", [["RW1"], ["RW2"]], [["RW3", "RW5"]]),
        ("500", [["RW1"], ["RW2"]], [["RW3", "RW5"]]),
        ("5e2", [["RW1"], ["RW2"]], [["RW3", "RW5"]]),  # the same key as 500
        ("500.001", [["RW2"]], [["RW3", "RW5"]]),
        ("10000", [["RW2"]], [["RW3", "RW5"]]),
    )
    services.redis.delete(
        cache_keys.route_key("QWE", "QWF", DAY),
        *(cache_keys.route_key("QWE", "QWF", DAY, measures.grams(float(w))) for w, *_ in cases),
    )
    url = f"/api/routes?origin=QWE&destination=QWF&date={DAY.isoformat()}"

    plain = client.get(url).get_json()
    assert RouteSearchSchema().validate(plain) == {}
    assert numbers(plain["direct"]) == [["RW1"], ["RW2"]]
    assert numbers(plain["one_transit"]) == [["RW3", "RW4"], ["RW3", "RW5"]]
    shown = {
        f["flight_number"]: f for o in plain["direct"] + plain["one_transit"] for f in o["flights"]
    }
    space = ("capacity_kg", "booked_kg", "available_kg")
    assert [shown["RW1"][name] for name in space] == [20_000, 19_500, 500]
    assert shown["RW4"]["available_kg"] == 99.75 and shown["RW5"]["available_kg"] == 20_000

    for weight, direct, transit in cases:
        answer = client.get(f"{url}&weight_kg={weight}")
        assert answer.status_code == 200, weight
        body = answer.get_json()
        assert RouteSearchSchema().validate(body) == {}
        assert (numbers(body["direct"]), numbers(body["one_transit"])) == (direct, transit), weight
        assert body["counts"] == {"direct": len(direct), "one_transit": len(transit)}
        assert client.get(f"{url}&weight_kg={weight}").data == answer.data  # the hit, as stored


# Out of range, not a number, or numbers float() takes but no query writes
# (an underscore, a space, an Arabic-Indic five).
BAD_WEIGHTS = ["0", "-5", "1e-400", "10000.5", "1e400", "abc", "", "nan", "inf", "true"]
BAD_WEIGHTS += ["1_000", " 5", "\u0665"]


@pytest.mark.parametrize("weight", BAD_WEIGHTS)
def test_a_bad_weight_is_a_400_problem(client, weight):
    answer = client.get(
        "/api/routes",
        query_string={
            "origin": "QWE",
            "destination": "QWF",
            "date": DAY.isoformat(),
            "weight_kg": weight,
        },
    )
    assert answer.status_code == 400, weight
    assert answer.headers["Content-Type"].startswith("application/problem+json")
    assert list(answer.get_json()["errors"]) == ["weight_kg"]


def test_route_answers_expire_within_the_booking_ttl(client, services):
    settings = services.settings
    assert settings.CACHE_TTL_BOOKINGS < settings.CACHE_TTL_ROUTES  # else nothing to check
    store(services, [leg("RT1", "QTE", "QTF", 8)])
    url = f"/api/routes?origin=QTE&destination=QTF&date={DAY.isoformat()}"
    for weight_g, query in ((None, ""), (125_500, "&weight_kg=125.5")):
        key = cache_keys.route_key("QTE", "QTF", DAY, weight_g)
        services.redis.delete(key)
        assert client.get(url + query).status_code == 200
        assert 0 < services.redis.ttl(key) <= settings.CACHE_TTL_BOOKINGS, key
