"""Air waybill numbers over HTTP (no worker: what the door decides): the 202's
AWB, a client's own checked, taken ones refused, tracking by AWB and the list
filtered by it."""

from __future__ import annotations

import uuid

import pytest

from core import awb, bookings
from core.clock import utcnow
from core.ids import new_job_id, new_ref_id
from tests.conftest import (
    ADMIN,
    CUSTOMER,
    IDS,
    OPERATOR,
    OTHER_CUSTOMER,
    booking_body,
    store_booking,
)

ANONYMOUS: dict[str, str] = {}


def client_awb(prefix: str = "176") -> str:
    """A valid AWB of an airline's stock that no other test brings."""
    return awb.awb_number(prefix, uuid.uuid4().int % (awb.SERIALS - 1) + 1)


def stored_with_awb(services, number: str, owner: str | None = "customer") -> str:
    ref_id = new_ref_id()
    store_booking(
        services.db,
        ref_id,
        booking_body(),
        job_id=new_job_id(),
        now=utcnow(),
        customer_id=IDS[owner] if owner else None,
        awb=number,
    )
    return ref_id


def post(client, body, headers=CUSTOMER):
    return client.post("/api/bookings", json=body, headers=headers)


def test_every_accept_names_a_new_awb_of_radiantgo_s_prefix(client, services):
    numbers = [post(client, booking_body()).get_json()["awb"] for _ in range(20)]
    assert len(set(numbers)) == 20
    prefix = services.settings.AWB_PREFIX
    assert all(n.startswith(prefix + "-") and awb.broken_rule(n) is None for n in numbers)


def test_a_client_s_own_awb_is_kept_and_written_with_its_hyphen(client, services):
    number = client_awb()
    r = post(client, booking_body(awb=number.replace("-", "")))
    assert r.status_code == 202, r.get_data(True)
    assert r.get_json()["awb"] == number


@pytest.mark.parametrize(
    ("number", "message"),
    [
        ("176-12345670", awb.CHECK_DIGIT_MESSAGE),  # 1234567 mod 7 is 5
        ("176-12345677", "Must be an air waybill number"),  # a 7 is no remainder of 7
        ("176-123456", "Must be an air waybill number"),
    ],
)
def test_a_broken_awb_is_a_400_naming_its_rule(client, number, message):
    r = post(client, booking_body(awb=number))
    assert r.status_code == 400
    [said] = r.get_json()["errors"]["awb"]
    assert said.startswith(message)


def test_an_awb_of_radiantgo_s_own_prefix_is_a_400(client, services):
    number = awb.awb_number(services.settings.AWB_PREFIX, 1234567)
    r = post(client, booking_body(awb=number))
    assert r.status_code == 400
    assert r.get_json()["errors"] == {"awb": [awb.RESERVED_MESSAGE]}


def test_an_awb_a_stored_booking_holds_is_a_409(client, services):
    number = client_awb()
    stored_with_awb(services, number, owner="other_customer")
    r = post(client, booking_body(awb=number))
    assert r.status_code == 409
    assert r.get_json()["type"].endswith("/awb-taken") and r.get_json()["awb"] == number


def test_an_awb_a_queued_create_holds_is_a_409_and_its_replay_is_not(client, services):
    number = client_awb()
    headers = {**CUSTOMER, "Idempotency-Key": uuid.uuid4().hex}
    first = post(client, booking_body(awb=number), headers)
    assert first.status_code == 202
    again = post(client, booking_body(awb=number), headers)  # the same request, replayed
    assert again.status_code == 202 and again.get_json()["job_id"] == first.get_json()["job_id"]
    other = post(client, booking_body(awb=number, pieces=2), OTHER_CUSTOMER)
    assert other.status_code == 409, other.get_data(True)
    assert other.get_json()["type"].endswith("/awb-taken")
    # A key's job refused for its AWB is forgotten: the key is free for another body.
    key = {**OTHER_CUSTOMER, "Idempotency-Key": uuid.uuid4().hex}
    assert post(client, booking_body(awb=number), key).status_code == 409
    assert post(client, booking_body(), key).status_code == 202


def test_tracking_by_awb_is_tracking_by_ref_id(client, services):
    number = client_awb()
    ref_id = stored_with_awb(services, number)
    for path in (f"/api/awb/{number}", f"/api/awb/{number.replace('-', '')}"):
        for headers in (ANONYMOUS, OTHER_CUSTOMER):
            view = client.get(path, headers=headers).get_json()
            assert set(view) == {*bookings.TRACKING_FIELDS, "events"}
            assert view == client.get(f"/api/bookings/{ref_id}", headers=headers).get_json()
            assert (view["awb"], view["ref_id"]) == (number, ref_id)
        for headers in (CUSTOMER, OPERATOR, ADMIN):
            full = client.get(path, headers=headers).get_json()
            assert full["customer_id"] == IDS["customer"] and full["awb"] == number


def test_a_queued_create_is_tracked_by_awb_as_by_its_ref_id(unworked):
    """In an app whose queue no worker reads: the session's worker, running or
    not, must not store the booking before it is read."""
    client = unworked.test_client()
    accepted = post(client, booking_body()).get_json()
    r = client.get(f"/api/awb/{accepted['awb']}", headers=CUSTOMER)
    assert r.status_code == 202
    assert r.get_json() == {**accepted, "state": r.get_json()["state"]}
    for headers in (ANONYMOUS, OTHER_CUSTOMER):  # who may not read its job
        assert client.get(f"/api/awb/{accepted['awb']}", headers=headers).status_code == 404


@pytest.mark.parametrize(
    ("number", "said"),
    [("176-12345670", "check digit"), ("176-12345699", "is not an air waybill number")],
)
def test_a_broken_awb_in_the_path_is_a_404_that_says_why(client, number, said):
    r = client.get(f"/api/awb/{number}")
    assert r.status_code == 404 and r.mimetype == "application/problem+json"
    assert said in r.get_json()["detail"]


def test_an_awb_no_booking_holds_is_a_404(client):
    assert client.get(f"/api/awb/{client_awb()}").status_code == 404


def test_the_list_filters_by_awb_within_the_caller_s_bookings(client, services):
    number = client_awb()
    ref_id = stored_with_awb(services, number)
    stored_with_awb(services, client_awb())  # another of the same customer's

    def listed(headers, **query):
        r = client.get("/api/bookings", query_string=query, headers=headers)
        assert r.status_code == 200, r.get_data(True)
        return [item["ref_id"] for item in r.get_json()["items"]]

    assert listed(CUSTOMER, awb=number) == [ref_id]
    assert listed(CUSTOMER, awb=number.replace("-", ""), status="BOOKED", origin="DEL") == [ref_id]
    assert listed(OPERATOR, awb=number) == [ref_id]
    assert listed(OTHER_CUSTOMER, awb=number) == []  # not theirs
    assert listed(CUSTOMER, awb=number, status="DELIVERED") == []
    assert listed(CUSTOMER, awb=number, destination="LHR") == []
    assert listed(CUSTOMER, awb=client_awb()) == []
    r = client.get("/api/bookings", query_string={"awb": "176-12345670"}, headers=CUSTOMER)
    assert r.status_code == 400 and r.get_json()["errors"] == {"awb": [awb.CHECK_DIGIT_MESSAGE]}


def test_the_document_states_the_awb_rules_and_the_awb_path(client):
    document = client.get("/api/openapi.json").get_json()
    create = document["paths"]["/api/bookings"]["post"]
    assert "`awb`'s check digit" in create["description"]
    assert "AWB_PREFIX" in create["responses"]["400"]["description"]
    accepted = document["components"]["schemas"]["JobAccepted"]["properties"]["awb"]
    assert accepted["pattern"] == awb.CANONICAL_PATTERN
    [parameter] = document["paths"]["/api/awb/{awb}"]["parameters"]
    assert parameter["schema"]["pattern"] == "^[0-9]{3}-?[0-9]{7}[0-6]$"
