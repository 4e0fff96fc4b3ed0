"""GET /api/flights/<id> and /api/flights: a flight's cargo space, cached no
longer than a booking is."""

from datetime import UTC, datetime, timedelta

from core import cache_keys, flights
from ingress.responses.flights import FlightListSchema, FlightOutSchema

DAY = datetime(2031, 12, 9, tzinfo=UTC)  # far from any other test's flights


def test_a_flight_and_its_list_show_its_cargo_space(client, services):
    raw = {
        "flight_number": "FS101",
        "airline": "Space Air",
        "origin": "QSA",
        "destination": "QSB",
        "departure_ts": (DAY + timedelta(hours=9)).isoformat(),
        "arrival_ts": (DAY + timedelta(hours=11)).isoformat(),
        "capacity_kg": 30_000,
    }
    result = flights.import_flights(
        services.db, services.locks, [raw], chunk_size=10, default_capacity_kg=20_000
    )
    assert result["failed"] == 0
    fid = "FS101-20311209"
    # What reservations of 1,234.5 kg would leave, written directly.
    services.db.flights.update_one(
        {"_id": fid}, {"$set": {"booked_g": 1_234_500, "available_g": 28_765_500}}
    )
    flight_key = cache_keys.flight_key(fid)
    list_key = cache_keys.flight_list_key("QSA", "QSB", "2031-12-09")
    services.redis.delete(flight_key, list_key)

    one = client.get(f"/api/flights/{fid}")
    assert one.status_code == 200
    body = one.get_json()
    assert FlightOutSchema().validate(body) == {}
    assert (body["capacity_kg"], body["booked_kg"], body["available_kg"]) == (
        30_000,
        1_234.5,
        28_765.5,
    )
    listed = client.get("/api/flights?origin=QSA&destination=QSB&date=2031-12-09")
    assert listed.status_code == 200
    page = listed.get_json()
    assert FlightListSchema().validate(page) == {}
    assert page["count"] == 1 and page["items"] == [body]

    ttl = services.settings.CACHE_TTL_BOOKINGS
    assert ttl < services.settings.CACHE_TTL_FLIGHTS  # else nothing to check
    for key in (flight_key, list_key):
        assert 0 < services.redis.ttl(key) <= ttl, key
    assert client.get(f"/api/flights/{fid}").get_json() == body  # a hit, the same view
