"""Every bad request is a problem+json 4xx, and none of them enqueues anything."""

import json

import pytest

from tests.conftest import CUSTOMER, booking_body, keyed_client

PROBLEM = "application/problem+json"


@pytest.fixture
def client(app):
    """A customer's mistakes: every request carries the customer's key."""
    return keyed_client(app, CUSTOMER)


def assert_problem(response, status):
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == PROBLEM
    body = response.get_json()
    assert {"type", "title", "status", "detail", "instance"} <= body.keys()
    assert body["status"] == status
    return body


def test_the_specs_load_test_body_is_accepted(client):
    r = client.post(
        "/api/bookings",
        json={"origin": "DEL", "destination": "BLR", "pieces": 5, "weight_kg": 125.5},
    )
    assert r.status_code == 202
    body = r.get_json()
    assert body["state"] == "queued" and body["ref_id"].startswith("RG")
    assert r.headers["Location"] == f"/api/jobs/{body['job_id']}" == body["links"]["job"]
    assert body["links"]["booking"] == f"/api/bookings/{body['ref_id']}"
    assert r.headers["Retry-After"] == "1"


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"origin": None}, "origin"),
        ({"destination": None}, "destination"),
        ({"pieces": None}, "pieces"),
        ({"weight_kg": None}, "weight_kg"),
        ({"origin": "DE"}, "origin"),
        ({"origin": "DELH"}, "origin"),
        ({"origin": "D3L"}, "origin"),
        ({"origin": 123}, "origin"),
        ({"origin": {"$gt": ""}}, "origin"),
        ({"destination": "del"}, "destination"),
        ({"pieces": 0}, "pieces"),
        ({"pieces": 1001}, "pieces"),
        ({"pieces": 2.5}, "pieces"),
        ({"pieces": "5"}, "pieces"),
        ({"pieces": True}, "pieces"),
        ({"weight_kg": 0}, "weight_kg"),
        ({"weight_kg": -1}, "weight_kg"),
        ({"weight_kg": 10000.01}, "weight_kg"),
        ({"weight_kg": "125.5"}, "weight_kg"),
        ({"weight_kg": 10**400}, "weight_kg"),
        ({"customer_name": ""}, "customer_name"),
        ({"customer_name": "x" * 101}, "customer_name"),
        ({"customer_name": "nul\x00byte"}, "customer_name"),
        ({"customer_name": "lone \ud800 surrogate"}, "customer_name"),
        ({"customer_email": "not-an-email"}, "customer_email"),
        ({"surprise": 1}, "surprise"),
        ({"$where": "1"}, "$where"),
    ],
)
def test_each_validation_rule_names_its_field(client, override, field):
    r = client.post("/api/bookings", json=booking_body(**override))
    body = assert_problem(r, 400)
    assert field in body["errors"], body


def test_valid_edges_are_accepted(client):
    for override in (
        {"pieces": 1},
        {"pieces": 1000},
        {"weight_kg": 10000},
        {"weight_kg": 0.001},
        {"origin": "del", "destination": "blr"},
        {"customer_name": "Ünïcødé 货运"},
        {"customer_email": "shipping@acme.com", "customer_name": "x" * 100},
    ):
        assert client.post("/api/bookings", json=booking_body(**override)).status_code == 202


def test_a_non_object_body_is_a_400(client):
    for payload in ([1, 2], "text", 5, None):
        r = client.post("/api/bookings", data=json.dumps(payload), content_type="application/json")
        assert_problem(r, 400)


def test_malformed_json_is_a_400(client):
    r = client.post("/api/bookings", data='{"origin": ', content_type="application/json")
    assert_problem(r, 400)


def test_deeply_nested_json_is_a_400_not_a_crash(client):
    r = client.post("/api/bookings", data="[" * 50_000, content_type="application/json")
    assert_problem(r, 400)


def test_wrong_content_type_is_a_415(client):
    r = client.post(
        "/api/bookings", data="origin=DEL", content_type="application/x-www-form-urlencoded"
    )
    assert_problem(r, 415)


def test_body_over_max_content_length_is_a_413(client, settings):
    big = json.dumps(booking_body(customer_name="x" * (settings.MAX_CONTENT_LENGTH + 10)))
    r = client.post("/api/bookings", data=big, content_type="application/json")
    assert_problem(r, 413)


def test_unknown_route_is_a_404(client):
    assert_problem(client.get("/api/nothing-here"), 404)


def test_wrong_method_is_a_405_with_allow(client):
    r = client.delete("/api/bookings")
    assert_problem(r, 405)
    assert "POST" in r.headers["Allow"]


def test_unknown_booking_and_job_are_404(client):
    assert_problem(client.get("/api/bookings/RG000000000"), 404)
    assert_problem(client.get("/api/bookings/not-a-ref"), 404)
    assert_problem(client.get("/api/jobs/00000000-0000-4000-8000-000000000000"), 404)
    assert_problem(client.get("/api/jobs/whatever"), 404)


def test_bad_list_queries_are_400(client):
    for query in (
        "limit=0",
        "limit=201",
        "limit=abc",
        "status=LOST",
        "origin=X1Y",
        "cursor=%%%",
        "cursor=WzEsMl0",
    ):
        assert_problem(client.get(f"/api/bookings?{query}"), 400)


def test_request_id_is_echoed(client):
    r = client.get("/health", headers={"X-Request-ID": "abc-123"})
    assert r.headers["X-Request-ID"] == "abc-123"
    assert len(client.get("/health").headers["X-Request-ID"]) == 32


def test_bad_input_stores_nothing(client, services):
    before = services.db.jobs.estimated_document_count()
    for override in ({"origin": {"$gt": ""}}, {"pieces": True}, {"x.y": 1}):
        client.post("/api/bookings", json=booking_body(**override))
    assert services.db.jobs.estimated_document_count() == before
