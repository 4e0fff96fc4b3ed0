"""Hand-written hostile input: 4xx problems (or per-item problems), and nothing stored."""

import pytest
import requests

from tests.conftest import ADMIN, CUSTOMER, booking_body, keyed_client, wait_job

NASTY_ITEMS = [
    {
        "flight_number": {"$gt": ""},
        "airline": "X",
        "origin": "DEL",
        "destination": "BLR",
        "departure_ts": "2033-01-01T00:00:00Z",
        "arrival_ts": "2033-01-01T02:00:00Z",
    },
    {"$where": "sleep(1000)", "flight_number": "NX1"},
    {
        "flight_number": "NX2",
        "airline": "A" * 10_000,
        "origin": "DEL",
        "destination": "BLR",
        "departure_ts": "2033-01-01T00:00:00Z",
        "arrival_ts": "2033-01-01T02:00:00Z",
    },
    {
        "flight_number": "NX3",
        "airline": "Nul\u0000Air",
        "origin": "DEL",
        "destination": "BLR",
        "departure_ts": "2033-01-01T00:00:00Z",
        "arrival_ts": "2033-01-01T02:00:00Z",
    },
    {
        "flight_number": 2**70,
        "airline": "Big",
        "origin": "DEL",
        "destination": "BLR",
        "departure_ts": "2033-01-01T00:00:00Z",
        "arrival_ts": "2033-01-01T02:00:00Z",
    },
    {"a.b": {"c.d": [[[[[[[[[[1]]]]]]]]]]}},
    {
        "flight_number": "NX6",
        "airline": "Lone \ud800",
        "origin": "DEL",
        "destination": "BLR",
        "departure_ts": "2033-01-01T00:00:00Z",
        "arrival_ts": "2033-01-01T02:00:00Z",
    },
]


def test_nasty_bulk_items_are_reported_one_by_one_and_nothing_is_stored(live_server, services):
    r = requests.post(
        live_server + "/api/admin/flights/bulk",
        json={"flights": NASTY_ITEMS},
        headers={**ADMIN, "Prefer": "wait=10"},
        timeout=30,
    )
    job = r.json() if r.status_code == 200 else wait_job(live_server, r.headers["Location"])
    assert job["state"] == "succeeded", job
    result = job["result"]
    assert (result["succeeded"], result["failed"]) == (0, len(NASTY_ITEMS))
    assert all(e["problem"]["status"] == 400 for e in result["errors"])
    for number in ("NX1", "NX2", "NX3", "NX6"):
        assert services.db.flights.find_one({"flight_number": number}) is None


@pytest.fixture
def client(app):
    """Hostile bodies from a customer with a valid key (without one, all are 401s)."""
    return keyed_client(app, CUSTOMER)


def test_hostile_bodies_are_4xx_problems_and_store_nothing(client, services):
    before = services.db.jobs.estimated_document_count()
    cases = [
        (
            "/api/bookings",
            {"origin": {"$gt": ""}, "destination": "BLR", "pieces": 1, "weight_kg": 1},
        ),
        ("/api/bookings", {**booking_body(), "$where": "1"}),
        ("/api/bookings", {**booking_body(), "customer.name": "dotted"}),
        ("/api/bookings", booking_body(pieces=2**70)),
        ("/api/bookings", booking_body(weight_kg=1e308 * 10)),
        ("/api/bookings", booking_body(customer_name="\u0000")),
        ("/api/bookings", booking_body(customer_name=["list"])),
        ("/api/bookings", booking_body(flight_ids=["x"] * 3)),
        ("/api/bookings", booking_body(flight_ids="RG1-20330101")),
    ]
    for path, body in cases:
        r = client.post(path, json=body)
        assert 400 <= r.status_code < 500, (body, r.status_code)
        assert r.mimetype == "application/problem+json"
    for raw in ("{" * 10_000, '{"origin": "DEL"' + ", " * 100_000, "\x00\x01\x02", '{"a": NaN}'):
        r = client.post("/api/bookings", data=raw, content_type="application/json")
        assert 400 <= r.status_code < 500, raw[:20]
        assert r.mimetype == "application/problem+json"
    assert services.db.jobs.estimated_document_count() == before
