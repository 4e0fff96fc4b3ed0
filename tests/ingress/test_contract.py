"""What the OpenAPI document says is what the server does, where schemathesis
found them apart (tests/fuzz/test_contract.py runs it whole): transition
bodies, the rules that tie two fields together, problem extension members,
and a booking's reference between its 202 and its document."""

import pytest

from core.schemas.bookings import BookingCreateSchema, MilestoneSchema
from core.schemas.flights import DayQuerySchema
from core.schemas.webhooks import WebhookCreateSchema
from ingress.responses.common import ProblemSchema
from tests.conftest import (
    ADMIN,
    CUSTOMER,
    OPERATOR,
    OTHER_CUSTOMER,
    booking_body,
    keyed_client,
    stored_booking,
)


@pytest.fixture(scope="module")
def document(app):
    return app.test_client().get("/api/openapi.json").get_json()


# -- transitions: every field optional, so is the body ----------------------------------------


@pytest.mark.parametrize("action", ["depart", "arrive", "deliver", "cancel"])
def test_a_transition_declares_its_body_optional_and_takes_none(app, services, document, action):
    assert (
        document["paths"][f"/api/bookings/{{ref_id}}/{action}"]["post"]["requestBody"]["required"]
        is False
    )  # was true, while a request without one was answered 202
    ref_id = stored_booking(services, customer_id=None)
    r = keyed_client(app, ADMIN).post(f"/api/bookings/{ref_id}/{action}")  # no body at all
    assert r.status_code in (202, 409), r.get_data(True)  # 409: the state machine's own word
    assert r.status_code == 202 or r.get_json()["status"] == 409


# -- rules that tie two fields together ------------------------------------------------------

TIED = {  # operation -> the schema whose rules it takes
    ("post", "/api/bookings"): BookingCreateSchema,
    ("get", "/api/routes"): DayQuerySchema,
    ("get", "/api/flights"): DayQuerySchema,
    ("post", "/api/webhooks"): WebhookCreateSchema,
    ("patch", "/api/webhooks/{endpoint_id}"): WebhookCreateSchema,
    ("post", "/api/bookings/{ref_id}/milestones"): MilestoneSchema,
}


@pytest.mark.parametrize(("method", "path"), sorted(TIED))
def test_a_rule_json_schema_cannot_state_is_stated_in_the_description_and_the_400(
    document, method, path
):
    operation = document["paths"][path][method]
    for rule in TIED[(method, path)].TIED:
        assert rule.statement in operation["description"], operation["description"]
        assert rule.statement in operation["responses"]["400"]["description"]


def test_every_view_that_takes_a_rule_states_it(app):
    """No operation takes a schema with rules and keeps them unsaid."""
    seen = set()
    for view in app.view_functions.values():
        view_class = getattr(view, "view_class", None)
        handlers = (
            [getattr(view_class, m.lower()) for m in view_class.methods] if view_class else []
        )
        for handler in handlers or [view]:
            rules = getattr(handler, "tied_rules", ())
            assert all(rule.statement in handler.__doc__ for rule in rules), handler
            seen.update(rules)
    assert seen == set(DayQuerySchema.TIED) | set(BookingCreateSchema.TIED) | set(
        WebhookCreateSchema.TIED
    ) | set(MilestoneSchema.TIED)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/routes?origin=DEL&destination=del&date=2031-01-01", None),
        ("/api/flights?origin=DEL&destination=DEL&date=2031-01-01", None),
        ("/api/bookings", booking_body(origin="BLR", destination="blr")),
    ],
)
def test_the_400_names_the_rule_and_nothing_else(app, path, body):
    c = keyed_client(app, CUSTOMER)
    r = c.post(path, json=body) if body else c.get(path)
    assert r.status_code == 400 and r.mimetype == "application/problem+json"
    assert r.get_json()["errors"] == {"destination": ["Must differ from origin."]}


def test_a_problem_may_carry_extension_members(document):
    """RFC 9457: clients ignore members they do not know; the document says so
    and names the ones RadiantGo adds (a failed create's job_id, a full flight)."""
    problem = document["components"]["schemas"]["Problem"]
    assert problem.get("additionalProperties", True) is not False
    assert {"job_id", "links", "flight_id", "errors"} <= set(problem["properties"])
    assert ProblemSchema().load({"type": "x", "status": 404, "new_member": 1})["new_member"] == 1


# -- a booking's reference before its booking is stored -------------------------------------------


def test_a_booking_still_being_created_answers_its_creates_202(unworked):
    accepted = keyed_client(unworked, CUSTOMER).post("/api/bookings", json=booking_body())
    assert accepted.status_code == 202
    ref_id, job_id = accepted.get_json()["ref_id"], accepted.get_json()["job_id"]
    for headers in (CUSTOMER, OPERATOR, ADMIN):  # whoever may read the create job
        r = keyed_client(unworked, headers).get(f"/api/bookings/{ref_id}")
        assert r.status_code == 202, r.get_data(True)  # was 404 "No booking"
        assert r.get_json() == accepted.get_json()
        assert r.headers["Location"] == f"/api/jobs/{job_id}" and r.headers["Retry-After"]
    # Anyone else learns nothing: as for a ref_id nobody was given.
    assert keyed_client(unworked, OTHER_CUSTOMER).get(f"/api/bookings/{ref_id}").status_code == 404
    assert unworked.test_client().get(f"/api/bookings/{ref_id}").get_json()["detail"] == (
        f"No booking {ref_id!r}."
    )


def test_a_booking_whose_create_failed_is_a_404_that_says_why(client, services, worker):
    body = booking_body(flight_ids=["ZZ9999-20311111"])  # no such flight
    done = client.post("/api/bookings", json=body, headers={**CUSTOMER, "Prefer": "wait=10"})
    assert done.status_code >= 400 and done.get_json()["job_id"], done.get_data(True)  # failed
    job_id = done.get_json()["job_id"]
    ref_id = done.get_json()["links"]["booking"].rsplit("/", 1)[1]
    for headers in (CUSTOMER, OPERATOR):
        for r in (
            client.get(f"/api/bookings/{ref_id}", headers=headers),
            client.post(f"/api/bookings/{ref_id}/cancel", headers=headers),
        ):
            assert r.status_code == 404, r.get_data(True)
            problem = r.get_json()
            assert problem["type"].endswith("/booking-not-made") and problem["job_id"] == job_id
            assert problem["detail"].startswith(f"Booking {ref_id} was not made: ")
            assert problem["links"]["job"] == f"/api/jobs/{job_id}"
    # To whoever may not read the job, a plain 404.
    for headers in (OTHER_CUSTOMER, {}):
        r = client.get(f"/api/bookings/{ref_id}", headers=headers)
        assert r.status_code == 404 and r.get_json()["type"].endswith("/not-found")
