"""POST /api/bookings/<ref_id>/milestones at the door: who may, what is taken,
and what the state machine already refuses (the worker decides again:
tests/core/test_transitions.py, tests/system/test_milestones.py)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from core import queued_jobs
from core.clock import to_iso, utcnow
from core.ids import new_ref_id
from tests.conftest import ADMIN, CUSTOMER, IDS, OPERATOR, moved_booking, stored_booking

RCS = {"code": "RCS", "location": "del"}


def post(client, ref_id, body, headers):
    return client.post(f"/api/bookings/{ref_id}/milestones", json=body, headers=headers)


@pytest.mark.parametrize("headers", ["operator", "admin"])
def test_an_operator_or_the_admin_records_a_milestone_as_a_job(client, services, headers):
    ref_id = stored_booking(services, customer_id=IDS["customer"])
    at = "2026-11-28T08:30:00+05:30"
    r = post(client, ref_id, {**RCS, "at": at}, OPERATOR if headers == "operator" else ADMIN)
    assert r.status_code == 202, r.get_json()
    body = r.get_json()
    assert body["ref_id"] == ref_id and r.headers["Location"] == body["links"]["job"]
    job = queued_jobs.find_job(services.db, services.redis, body["job_id"])
    assert job["type"] == "booking.transition"
    # The time as the job carries it: ISO text in UTC (the payload travels as JSON).
    assert job["payload"]["request"] == {
        "code": "RCS",
        "location": "DEL",
        "at": "2026-11-28T03:00:00.000Z",
    }
    assert job["payload"]["milestone"] == "RCS" and "target" not in job["payload"]


def test_a_customer_may_not_record_milestones_even_on_its_own_booking(client, services):
    ref_id = stored_booking(services, customer_id=IDS["customer"])
    r = post(client, ref_id, RCS, CUSTOMER)
    assert r.status_code == 403, r.get_json()


def test_an_unknown_booking_is_a_404(client, services):
    assert post(client, new_ref_id(), RCS, OPERATOR).status_code == 404


@pytest.mark.parametrize(
    ("path", "code"),
    [
        (["DEPARTED"], "RCS"),
        (["DEPARTED"], "MAN"),
        ([], "RCF"),
        (["DEPARTED"], "NFD"),
        (["DEPARTED", "ARRIVED", "DELIVERED"], "NFD"),
        (["CANCELLED"], "RCS"),
    ],
)
def test_a_milestone_out_of_order_is_refused_at_the_door(client, services, path, code):
    ref_id = stored_booking(services, customer_id=IDS["customer"])
    for target in path:
        moved_booking(services, ref_id, target)
    r = post(client, ref_id, {"code": code, "location": "BLR"}, OPERATOR)
    assert r.status_code == 409, r.get_json()
    problem = r.get_json()
    assert problem["type"].endswith("/milestone-out-of-order")
    assert problem["detail"].startswith(f"{code} is recorded while a booking is")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"code": "DEP", "location": "DEL"}, "code"),  # a transition, not a milestone
        ({"code": "rcs", "location": "DEL"}, "code"),
        ({"code": "RCS"}, "location"),
        ({"code": "RCS", "location": "Delhi"}, "location"),
        ({"code": "RCS", "location": "DEL", "at": "2026-11-28T03:00:00"}, "at"),  # no offset
        ({"code": "RCS", "location": "DEL", "at": "1999-12-31T23:00:00Z"}, "at"),
        ({"code": "RCS", "location": "DEL", "notes": "x"}, "notes"),
    ],
)
def test_a_bad_milestone_is_a_400_naming_the_field(client, services, body, field):
    ref_id = stored_booking(services, customer_id=IDS["customer"])
    r = post(client, ref_id, body, OPERATOR)
    assert r.status_code == 400, r.get_json()
    assert field in r.get_json()["errors"]


def test_a_milestone_in_the_future_is_a_400_and_a_clock_a_little_ahead_is_not(client, services):
    ref_id = stored_booking(services, customer_id=IDS["customer"])
    ahead = post(client, ref_id, {**RCS, "at": to_iso(utcnow() + timedelta(hours=1))}, OPERATOR)
    assert ahead.status_code == 400
    assert ahead.get_json()["errors"] == {"at": ["Must not be in the future."]}
    slightly = post(
        client, ref_id, {**RCS, "at": to_iso(utcnow() + timedelta(minutes=1))}, OPERATOR
    )
    assert slightly.status_code == 202, slightly.get_json()


def test_the_document_states_the_endpoint_its_roles_and_the_codes(app, client):
    document = client.get("/api/openapi.json").get_json()
    operation = document["paths"]["/api/bookings/{ref_id}/milestones"]["post"]
    assert set(operation["responses"]) >= {"202", "400", "403", "404", "409", "429"}
    assert "milestone-out-of-order" in operation["description"]
    assert sorted(operation["x-roles"]) == ["admin", "operator"]
    event = document["components"]["schemas"]["Event"]["properties"]
    assert event["code"]["enum"][:-1] == ["BKD", "RCS", "MAN", "DEP", "ARR", "RCF", "NFD", "DLV"]
    assert "cancellation" in event["code"]["description"]
