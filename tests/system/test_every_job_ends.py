"""Every accepted job ends: succeeded, or failed with a problem; never left running.

Through HTTP and the session's real worker. The task run in this process:
tests/workers/test_tasks.py.
"""

import json

import requests

from core import queues
from tests.conftest import ADMIN, booking_body, recorded_job, wait_job


def post_raw(base, path, body: dict, headers: dict) -> requests.Response:
    """POST `body` as JSON text: json.dumps escapes what requests' json= may refuse."""
    return requests.post(
        base + path,
        data=json.dumps(body),
        headers={**headers, "Content-Type": "application/json"},
        timeout=15,
    )


def test_a_bulk_status_item_with_a_lone_surrogate_fails_alone(live_server):
    """The issue's case: the job stayed `running` (done 1, failed 1) forever."""
    made = requests.post(
        live_server + "/api/admin/bookings/bulk",
        json={"bookings": [booking_body()]},
        headers={**ADMIN, "Prefer": "wait=10"},
        timeout=30,
    ).json()
    ref = made["result"]["items"][0]["ref_id"]
    updates = [
        {"ref_id": "\ud800", "newStatus": "DEPARTED"},
        {"ref_id": ref, "newStatus": "DEPARTED", "\x00": 1},  # a NUL in a key
        {"ref_id": ref, "newStatus": "DEPARTED", "eventData": {"\udfff": 1}},
        {"ref_id": {"\x00": "\ud800"}, "newStatus": "DEPARTED"},
        {"ref_id": ref, "newStatus": "DEPARTED"},
    ]
    r = post_raw(live_server, "/api/admin/bookings/status/bulk", {"updates": updates}, ADMIN)
    assert r.status_code == 202, r.text
    job = wait_job(live_server, r.headers["Location"])
    assert job["state"] == "succeeded", job
    items = job["result"]["items"]
    assert [item.get("problem", {}).get("status") for item in items] == [400, 400, 400, 400, None]
    assert items[0]["ref_id"] == "\\ud800"  # echoed, escaped: BSON stores no lone surrogate
    assert "\\u0000" in items[1]["problem"]["errors"]
    assert items[4]["status"] == "DEPARTED"
    assert job["progress"] == {"total": 5, "done": 5, "failed": 4}


def test_bulk_bookings_whose_problems_quote_odd_keys_end(live_server, services):
    """marshmallow keys a list's errors by index (an int, which BSON refuses as a key)."""
    items = [
        booking_body(flight_ids=[1]),
        {**booking_body(), "\x00": True},
        {**booking_body(), "\ud800": True},
        booking_body(customer_name="\ud800"),
        booking_body(),
    ]
    r = post_raw(live_server, "/api/admin/bookings/bulk", {"bookings": items}, ADMIN)
    assert r.status_code == 202, r.text
    job = wait_job(live_server, r.headers["Location"])
    assert job["state"] == "succeeded", job
    result = job["result"]
    assert (result["succeeded"], result["failed"]) == (1, 4)
    problems = [item["problem"] for item in result["items"][:4]]
    assert {p["status"] for p in problems} == {400}
    assert problems[0]["errors"]["flight_ids"]["0"]
    assert services.db.bookings.count_documents({"ref_id": result["items"][4]["ref_id"]}) == 1


def test_a_job_whose_payload_cannot_be_read_fails_with_a_500(app, settings, services, live_server):
    """A stored request that is not JSON (an older version's, a damaged one): the
    work raises a JSONDecodeError, no RadiantError, on every delivery."""
    from ingress.submit import publish

    job_id = recorded_job(settings, services, "bookings.bulk_status", {"request_json": "{not json"})
    with app.test_request_context():
        publish(queues.UPDATE_STATUSES, job_id, None)
    job = wait_job(live_server, f"/api/jobs/{job_id}")
    assert job["state"] == "failed", job
    error = job["error"]
    assert (error["status"], error["title"]) == (500, "Internal error")
    assert error["type"].endswith("/internal-error")
    assert "JSONDecodeError" in error["detail"] and error["instance"] == f"/api/jobs/{job_id}"
    assert job["started_at"] and job["finished_at"]
