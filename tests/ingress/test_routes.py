"""GET /api/routes in process: the answer a miss computes is the answer a hit serves."""

from datetime import UTC, date, datetime, timedelta

from core import flights, routes
from core.schemas import RouteSearchSchema

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
    assert flights.import_flights(services.db, schedule, chunk_size=50)["failed"] == 0
    services.redis.delete(routes.route_key("QRA", "QRB", DAY))
    url = f"/api/routes?origin=QRA&destination=QRB&date={DAY.isoformat()}&limit=4"
    missed = client.get(url)
    assert services.redis.exists(routes.route_key("QRA", "QRB", DAY))
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
