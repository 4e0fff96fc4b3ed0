"""A booking's dimensions at the door: each bound a 400 naming its field, the
counts tied to pieces; the booking then shows its volume and chargeable
weight to its owner, to the list and to the public tracking view."""

import pytest

from core.schemas.bookings import MAX_DIMENSION_LINES
from tests.conftest import CUSTOMER, booking_body, keyed_client, new_customer, stored_booking


def line(count=5, length_cm=120, width_cm=80, height_cm=100):
    return {"count": count, "length_cm": length_cm, "width_cm": width_cm, "height_cm": height_cm}


TIED = {"dimensions": ["The dimension lines' counts must add up to pieces."]}


@pytest.mark.parametrize(
    ("dimensions", "named"),
    [
        ([line(count=4)], TIED),  # counts add up to 4, pieces is 5
        ([line(count=3), line(count=3)], TIED),  # 6
        ([line(length_cm=319)], "length_cm"),
        ([line(width_cm=245)], "width_cm"),
        ([line(height_cm=301)], "height_cm"),
        ([line(height_cm=0)], "height_cm"),
        ([line(length_cm=120.5)], "length_cm"),  # whole centimetres
        ([line(count=0), line(count=5)], "count"),
        ([{**line(), "weight_kg": 3}], "weight_kg"),  # unknown member
        ([line(count=1)] * (MAX_DIMENSION_LINES + 1), "Length must be between"),
        ([], "Length must be between"),
    ],
)
def test_each_dimension_rule_is_a_400_naming_it(app, services, dimensions, named):
    before = services.db.jobs.estimated_document_count()
    body = booking_body(dimensions=dimensions)
    r = keyed_client(app, CUSTOMER).post("/api/bookings", json=body)
    assert r.status_code == 400, r.get_data(True)
    assert r.mimetype == "application/problem+json"
    errors = r.get_json()["errors"]
    assert list(errors) == ["dimensions"]
    assert errors == named if isinstance(named, dict) else named in str(errors)
    assert services.db.jobs.estimated_document_count() == before


def test_the_largest_pieces_a_position_takes_are_accepted(app):
    body = booking_body(
        pieces=2, dimensions=[line(count=2, length_cm=318, width_cm=244, height_cm=300)]
    )
    assert keyed_client(app, CUSTOMER).post("/api/bookings", json=body).status_code == 202


def test_the_tied_rule_is_stated_in_the_openapi_document(client):
    spec = client.get("/api/openapi.json").get_json()
    post = spec["paths"]["/api/bookings"]["post"]
    assert "`pieces`" in str(post) and "dimensions" in str(post)
    schema = spec["components"]["schemas"]["Dimension"]["properties"]
    assert schema["length_cm"]["maximum"] == 318 and schema["width_cm"]["maximum"] == 244
    assert schema["height_cm"]["maximum"] == 300 and schema["length_cm"]["minimum"] == 1


def test_a_booking_shows_its_volume_and_chargeable_weight(app, client, services):
    owner = new_customer(services.db)
    headers = {"Authorization": f"Bearer {owner['api_key']}"}
    ref_id = stored_booking(
        services,
        customer_id=owner["customer_id"],
        weight_kg=125.5,
        dimensions=[line(count=3), line(count=2, length_cm=60, width_cm=40, height_cm=50)],
    )
    # 3 x 120 x 80 x 100 + 2 x 60 x 40 x 50 = 2,880,000 + 240,000 = 3,120,000 cm3
    mine = keyed_client(app, headers).get(f"/api/bookings/{ref_id}").get_json()
    assert mine["volume_m3"] == 3.12 and mine["volumetric_weight_kg"] == 520.0
    assert mine["chargeable_weight_kg"] == 520.0 and len(mine["dimensions"]) == 2
    public = client.get(f"/api/bookings/{ref_id}").get_json()
    assert public["volume_m3"] == 3.12 and public["chargeable_weight_kg"] == 520.0
    assert "dimensions" not in public
    (listed,) = keyed_client(app, headers).get("/api/bookings?limit=1").get_json()["items"]
    assert listed["ref_id"] == ref_id and listed["volume_m3"] == 3.12

    plain = stored_booking(services, customer_id=owner["customer_id"], weight_kg=125.2)
    shown = keyed_client(app, headers).get(f"/api/bookings/{plain}").get_json()
    assert (shown["volume_m3"], shown["volumetric_weight_kg"]) == (None, None)
    assert shown["chargeable_weight_kg"] == 125.5


@pytest.mark.parametrize(("volume", "status"), [("0.0000004", 400), ("1500.1", 400), ("1.2", 200)])
def test_a_route_search_by_volume_takes_a_cm3_to_the_largest_hold(client, volume, status):
    r = client.get(f"/api/routes?origin=DEL&destination=BLR&date=2033-01-01&volume_m3={volume}")
    assert r.status_code == status, r.get_data(True)
    if status == 400:
        assert list(r.get_json()["errors"]) == ["volume_m3"]
