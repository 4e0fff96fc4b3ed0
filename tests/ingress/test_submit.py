"""ingress/submit.py through the test client: the 202 a POST is answered with,
the Idempotency-Key header, and a job's answer once it finished (201, or its
problem)."""

import uuid

import pytest

from tests.conftest import CUSTOMER, booking_body, store_flights


def post_booking(client, body=None, **headers):
    return client.post(
        "/api/bookings", json=body or booking_body(), headers={**CUSTOMER, **headers}
    )


def test_an_accepted_post_is_a_202_naming_its_job_and_where_to_poll(client, services):
    r = post_booking(client)
    assert r.status_code == 202
    body = r.get_json()
    assert set(body) == {"job_id", "state", "ref_id", "awb", "links"}
    assert body["awb"].startswith(services.settings.AWB_PREFIX + "-")
    assert body["state"] == "queued"
    assert body["links"] == {
        "job": f"/api/jobs/{body['job_id']}",
        "booking": f"/api/bookings/{body['ref_id']}",
    }
    assert r.headers["Location"] == body["links"]["job"]
    assert int(r.headers["Retry-After"]) >= 1
    assert "Preference-Applied" not in r.headers


@pytest.mark.parametrize(
    "key", ["", "   ", "x" * 256, "tab\there"], ids=["empty", "blank", "too-long", "unprintable"]
)
def test_a_bad_idempotency_key_is_a_400_naming_the_header(client, services, key):
    r = post_booking(client, **{"Idempotency-Key": key})
    assert r.status_code == 400
    assert r.mimetype == "application/problem+json"
    assert "Idempotency-Key" in r.get_json()["errors"]


def test_a_quoted_idempotency_key_is_the_same_key(client, services):
    key = str(uuid.uuid4())
    first = post_booking(client, **{"Idempotency-Key": key})
    again = post_booking(client, **{"Idempotency-Key": f'"{key}"'})
    assert first.status_code == again.status_code == 202
    assert again.get_json()["job_id"] == first.get_json()["job_id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.headers["Location"] == first.headers["Location"]


def test_the_longest_idempotency_key_is_taken(client, services):
    assert post_booking(client, **{"Idempotency-Key": "k" * 255}).status_code == 202


def test_a_finished_create_waited_for_is_a_201_pointing_at_the_booking(client, worker):
    r = post_booking(client, Prefer="wait=10")
    assert r.status_code == 201, r.get_json()
    job = r.get_json()
    assert job["state"] == "succeeded"
    assert r.headers["Location"] == job["links"]["booking"]
    assert r.headers["Preference-Applied"] == "wait=10"


def test_a_failed_job_waited_for_is_its_problem_with_the_job_named(client, services, worker):
    legs = [("SB1", "KPA", "KQA", 8), ("SB2", "KQA", "KRA", 10)]  # no time to connect
    store_flights(
        services,
        [
            {
                "flight_number": number,
                "airline": "Submit Air",
                "origin": origin,
                "destination": destination,
                "departure_ts": f"2032-02-11T{hour:02d}:00:00Z",
                "arrival_ts": f"2032-02-11T{hour + 2:02d}:00:00Z",
            }
            for number, origin, destination, hour in legs
        ],
    )
    ids = ["SB1-20320211", "SB2-20320211"]
    body = booking_body(origin="KPA", destination="KRA", flight_ids=ids)
    r = post_booking(client, body, Prefer="wait=10")
    assert r.mimetype == "application/problem+json"
    problem = r.get_json()
    assert r.status_code == problem["status"] >= 400, problem
    assert problem["links"]["job"] == f"/api/jobs/{problem['job_id']}"
    assert r.headers["Location"] == problem["links"]["job"]
    job = client.get(problem["links"]["job"], headers=CUSTOMER).get_json()
    assert job["state"] == "failed" and job["error"]["status"] == problem["status"]
