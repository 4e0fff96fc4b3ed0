"""Group commit end to end: HTTP -> RabbitMQ -> a real worker taking messages
several at a time, each client still answered with its own job."""

from concurrent.futures import ThreadPoolExecutor

import requests

from tests.conftest import ADMIN, CUSTOMER, OPERATOR, booking_body


def post(base, path, body, headers, wait=10):
    return requests.post(
        base + path, json=body, headers={**headers, "Prefer": f"wait={wait}"}, timeout=30
    )


def job_of(base, body):
    return requests.get(f"{base}/api/jobs/{body['job_id']}", headers=ADMIN, timeout=5).json()


def test_twenty_creates_posted_at_once_are_twenty_bookings(live_server, services):
    with ThreadPoolExecutor(20) as pool:
        responses = list(
            pool.map(
                lambda n: post(live_server, "/api/bookings", booking_body(pieces=n + 1), CUSTOMER),
                range(20),
            )
        )
    assert [r.status_code for r in responses] == [201] * 20, [r.text for r in responses]
    created = [r.json() for r in responses]
    refs = [job["result"]["booking"]["ref_id"] for job in created]
    assert len(set(refs)) == 20
    for n, job in enumerate(created):
        assert job["state"] == "succeeded"
        assert job["result"]["booking"]["pieces"] == n + 1  # each client its own booking
        ref = job["result"]["booking"]["ref_id"]
        assert services.db.bookings.count_documents({"ref_id": ref}) == 1
        assert services.db.booking_events.count_documents({"booking_id": ref}) == 1
    # A group's jobs are finished by one write, at one time: fewer times than
    # jobs means some were committed together.
    finished = {job_of(live_server, job)["finished_at"] for job in created}
    assert len(finished) < 20, "every create was committed on its own"


def test_prefer_wait_on_transitions_taken_together_answers_each_final_job(live_server, services):
    with ThreadPoolExecutor(10) as pool:
        made = list(
            pool.map(
                lambda _: post(live_server, "/api/bookings", booking_body(), CUSTOMER), range(10)
            )
        )
    refs = [r.json()["result"]["booking"]["ref_id"] for r in made]
    with ThreadPoolExecutor(10) as pool:
        departed = list(
            pool.map(
                lambda ref: post(
                    live_server, f"/api/bookings/{ref}/depart", {"location": "DEL"}, OPERATOR
                ),
                refs,
            )
        )
    for ref, r in zip(refs, departed, strict=True):
        assert r.status_code == 200, r.text
        job = r.json()
        assert job["state"] == "succeeded" and job["finished_at"] is not None
        booking = job["result"]["booking"]
        assert (booking["ref_id"], booking["status"], booking["version"]) == (ref, "DEPARTED", 2)
        assert (
            services.db.booking_events.count_documents(
                {"booking_id": ref, "type": "STATUS_DEPARTED"}
            )
            == 1
        )
