"""At least a gram wherever a weight is taken: cargo space is kept in whole
grams, and a weight that rounds to none would book on a full flight."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.errors import ValidationFailed
from core.flights import validate_flight
from core.measures import grams
from core.schemas.bookings import BookingCreateSchema
from core.schemas.fields import MIN_WEIGHT_KG
from core.schemas.flights import RouteQuerySchema
from tests.conftest import CUSTOMER, booking_body, keyed_client

NOTHING = [0.0004, 0.0004999, 0.0009999, 1e-300, 0]

FLIGHT = {
    "flight_number": "WG1",
    "airline": "Gram Air",
    "origin": "DEL",
    "destination": "BLR",
    "departure_ts": "2033-01-01T00:00:00Z",
    "arrival_ts": "2033-01-01T02:00:00Z",
}


@pytest.mark.parametrize("weight", NOTHING)
def test_a_booking_of_less_than_a_gram_is_a_400(app, services, weight):
    before = services.db.jobs.estimated_document_count()
    r = keyed_client(app, CUSTOMER).post("/api/bookings", json=booking_body(weight_kg=weight))
    assert r.status_code == 400, r.get_data(True)
    assert r.mimetype == "application/problem+json"
    assert list(r.get_json()["errors"]) == ["weight_kg"]
    assert services.db.jobs.estimated_document_count() == before


@pytest.mark.parametrize("weight", ["0.0004", "0.0009999", "0"])
def test_a_route_search_for_less_than_a_gram_is_a_400(client, weight):
    r = client.get(f"/api/routes?origin=DEL&destination=BLR&date=2033-01-01&weight_kg={weight}")
    assert r.status_code == 400, r.get_data(True)
    assert list(r.get_json()["errors"]) == ["weight_kg"]


@pytest.mark.parametrize("weight", NOTHING)
def test_a_flight_of_less_than_a_gram_of_capacity_is_refused(weight):
    with pytest.raises(ValidationFailed) as refused:
        validate_flight({**FLIGHT, "capacity_kg": weight}, default_capacity_kg=20_000)
    assert list(refused.value.errors) == ["capacity_kg"]


def test_a_gram_is_taken_everywhere(app, client):
    body = booking_body(weight_kg=MIN_WEIGHT_KG)
    assert keyed_client(app, CUSTOMER).post("/api/bookings", json=body).status_code == 202
    query = "origin=DEL&destination=BLR&date=2033-01-01&weight_kg=0.001"
    assert client.get(f"/api/routes?{query}").status_code == 200
    flight = validate_flight({**FLIGHT, "capacity_kg": 0.001}, default_capacity_kg=20_000)
    assert flight["capacity_g"] == 1


@given(st.floats(min_value=0, max_value=10_000, allow_nan=False))
def test_every_weight_a_schema_takes_is_at_least_a_gram(weight):
    """Booking creation (single and bulk items: the same schema) and route search."""
    taken = BookingCreateSchema().validate(booking_body(weight_kg=weight)) == {}
    query = {"origin": "DEL", "destination": "BLR", "date": "2033-01-01", "weight_kg": repr(weight)}
    searched = RouteQuerySchema().validate(query) == {}
    assert taken == searched == (grams(weight) >= 1 and weight >= MIN_WEIGHT_KG)
