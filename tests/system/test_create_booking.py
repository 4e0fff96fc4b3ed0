"""Booking creation end to end: HTTP -> RabbitMQ -> a real worker -> MongoDB.

The task run in this process: tests/workers/test_tasks.py."""

import json
import os
import signal
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import requests

from core import jobs, queued_jobs, queues
from tests.conftest import CUSTOMER, IDS, booking_body, post_booking, wait_job


def test_create_poll_read_round_trip(live_server, services):
    body = booking_body(origin="del", customer_name="Acme Corp", customer_email="shipping@acme.com")
    r = post_booking(live_server, body)
    assert r.status_code == 202
    accepted = r.json()
    job = wait_job(live_server, r.headers["Location"])
    assert job["state"] == "succeeded", job
    assert job["type"] == "booking.create"
    assert job["started_at"] and job["finished_at"] and job["error"] is None
    assert job["created_at"].endswith("Z") and job["finished_at"].endswith("Z")
    assert (
        "Retry-After"
        not in requests.get(
            live_server + r.headers["Location"], headers=CUSTOMER, timeout=5
        ).headers
    )
    booking = job["result"]["booking"]
    assert booking["ref_id"] == accepted["ref_id"]
    assert (booking["origin"], booking["destination"]) == ("DEL", "BLR")
    assert booking["status"] == "BOOKED" and booking["version"] == 1

    read = requests.get(live_server + accepted["links"]["booking"], headers=CUSTOMER, timeout=5)
    assert read.status_code == 200
    details = read.json()
    assert details["customer_email"] == "shipping@acme.com"
    assert [e["type"] for e in details["events"]] == ["BOOKING_CREATED"]
    assert details["events"][0]["job_id"] == accepted["job_id"]
    # Second read is served from the cache, identical.
    assert (
        requests.get(live_server + accepted["links"]["booking"], headers=CUSTOMER, timeout=5).json()
        == details
    )
    assert services.redis.exists(f"booking:details:{accepted['ref_id']}")


def test_a_queued_create_is_found_before_a_worker_writes_it(live_server, services, worker):
    """Accepted without a MongoDB write: its record is in Redis until the worker
    writes the job, once, in its final state."""
    os.kill(worker.pid, signal.SIGSTOP)  # the job stays queued
    try:
        r = post_booking(live_server, booking_body(pieces=4))
        assert r.status_code == 202
        job_id = r.json()["job_id"]
        queued = requests.get(live_server + r.headers["Location"], headers=CUSTOMER, timeout=5)
        assert queued.status_code == 200 and queued.headers["Retry-After"] == "1"
        assert queued.json()["state"] == "queued" and queued.json()["type"] == "booking.create"
        assert services.db.jobs.find_one({"_id": job_id}) is None
        unknown = requests.get(
            f"{live_server}/api/jobs/{uuid.uuid4()}", headers=CUSTOMER, timeout=5
        )
        assert unknown.status_code == 404
    finally:
        os.kill(worker.pid, signal.SIGCONT)
    done = wait_job(live_server, r.headers["Location"], headers=CUSTOMER)
    assert done["state"] == "succeeded" and done["created_at"] == queued.json()["created_at"]
    stored = services.db.jobs.find_one({"_id": job_id})
    assert (stored["customer_id"], stored["ref_id"]) == (IDS["customer"], r.json()["ref_id"])
    assert stored["expire_at"] > stored["created_at"]
    assert services.redis.ttl(queued_jobs.queued_key(job_id)) <= queued_jobs.FINISHED_RECORD_TTL_S
    assert services.redis.get(queued_jobs.creating_key(r.json()["ref_id"])) is None


def test_unfinished_job_says_when_to_poll_again(live_server):
    r = post_booking(live_server, booking_body())
    first = requests.get(live_server + r.headers["Location"], headers=CUSTOMER, timeout=5)
    if first.json()["state"] in ("queued", "running"):
        assert first.headers["Retry-After"] == "1"
    wait_job(live_server, r.headers["Location"])


def test_prefer_wait_answers_201_with_the_booking(live_server):
    r = post_booking(live_server, booking_body(), Prefer="wait=5")
    assert r.status_code == 201, r.text
    assert r.headers["Preference-Applied"] == "wait=5"
    body = r.json()
    assert body["state"] == "succeeded"
    assert r.headers["Location"] == f"/api/bookings/{body['result']['booking']['ref_id']}"
    assert (
        requests.get(live_server + r.headers["Location"], headers=CUSTOMER, timeout=5).status_code
        == 200
    )


def test_prefer_wait_gives_up_with_202_when_the_job_is_slow(settings, live_server, worker):
    # Park the job: publish to a queue no worker consumes by stopping nothing,
    # but asking for wait=1 on a job that is queued behind the time limit.
    import os
    import signal

    os.kill(worker.pid, signal.SIGSTOP)  # the worker is frozen, the job stays queued
    try:
        started = time.monotonic()
        r = post_booking(live_server, booking_body(), Prefer="wait=1")
        elapsed = time.monotonic() - started
    finally:
        os.kill(worker.pid, signal.SIGCONT)
    assert r.status_code == 202
    assert 0.9 <= elapsed < 3
    assert wait_job(live_server, r.headers["Location"])["state"] == "succeeded"


def test_many_waiting_clients_do_not_block_each_other(live_server):
    # 12 at a time: under MAX_WAITERS (15 per process) even if all land on one.
    with ThreadPoolExecutor(12) as pool:
        responses = list(
            pool.map(
                lambda _: post_booking(live_server, booking_body(), Prefer="wait=10"), range(48)
            )
        )
    assert [r.status_code for r in responses] == [201] * 48


def test_idempotency_key_replays_the_same_job(live_server, services):
    key = str(uuid.uuid4())
    first = post_booking(live_server, booking_body(pieces=7), **{"Idempotency-Key": key})
    again = post_booking(live_server, booking_body(pieces=7), **{"Idempotency-Key": key})
    assert first.status_code == again.status_code == 202
    assert first.json()["job_id"] == again.json()["job_id"]
    assert first.json()["ref_id"] == again.json()["ref_id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    wait_job(live_server, first.headers["Location"])
    assert services.db.bookings.count_documents({"ref_id": first.json()["ref_id"]}) == 1

    other = post_booking(live_server, booking_body(pieces=8), **{"Idempotency-Key": key})
    assert other.status_code == 422
    assert other.headers["Content-Type"] == "application/problem+json"


def test_concurrent_duplicates_with_one_key_create_one_job(live_server, services):
    key = str(uuid.uuid4())
    with ThreadPoolExecutor(20) as pool:
        responses = list(
            pool.map(
                lambda _: post_booking(
                    live_server, booking_body(pieces=3), **{"Idempotency-Key": key}
                ),
                range(40),
            )
        )
    assert {r.status_code for r in responses} == {202}
    # Every POST answers with the job it recorded or the one it replayed: one
    # job_id across all 40 answers means one job was recorded at all.
    assert len({r.json()["job_id"] for r in responses}) == 1
    ref_id = responses[0].json()["ref_id"]
    wait_job(live_server, responses[0].headers["Location"])
    assert (
        services.db.idempotency_keys.find_one(
            {"_id": jobs.scoped_key(IDS["customer"], "POST /api/bookings", key)}
        )["job_id"]
        == responses[0].json()["job_id"]
    )
    assert services.db.jobs.count_documents({"ref_id": ref_id}) == 1
    assert services.db.bookings.count_documents({"ref_id": ref_id}) == 1


def test_list_shows_new_bookings_first(live_server):
    made = []
    for _ in range(3):
        r = post_booking(
            live_server, booking_body(origin="ZZB", destination="ZZC"), Prefer="wait=5"
        )
        made.append(r.json()["result"]["booking"]["ref_id"])
    page = requests.get(
        live_server + "/api/bookings?origin=ZZB&limit=2", headers=CUSTOMER, timeout=5
    ).json()
    assert [b["ref_id"] for b in page["items"]] == made[::-1][:2]
    rest = requests.get(
        live_server + f"/api/bookings?origin=ZZB&limit=2&cursor={page['next_cursor']}",
        headers=CUSTOMER,
        timeout=5,
    ).json()
    assert [b["ref_id"] for b in rest["items"]] == [made[0]]
    # A new booking invalidates cached pages at once.
    r = post_booking(live_server, booking_body(origin="ZZB", destination="ZZC"), Prefer="wait=5")
    page = requests.get(
        live_server + "/api/bookings?origin=ZZB&limit=2", headers=CUSTOMER, timeout=5
    ).json()
    assert page["items"][0]["ref_id"] == r.json()["result"]["booking"]["ref_id"]


def test_a_message_delivered_twice_creates_one_booking(live_server, app, services, worker):
    """Publish the very same task message twice through RabbitMQ to the real worker."""
    from ingress.submit import publish

    r = post_booking(live_server, booking_body(pieces=9))
    accepted = r.json()
    record = json.loads(services.redis.get(queued_jobs.queued_key(accepted["job_id"])))
    with app.test_request_context():
        publish(queues.CREATE_BOOKINGS, accepted["job_id"], None, record)
        publish(queues.CREATE_BOOKINGS, accepted["job_id"], None, record)
    wait_job(live_server, r.headers["Location"])
    _wait_until_drained(app, services.settings)
    assert services.db.bookings.count_documents({"ref_id": accepted["ref_id"]}) == 1
    assert services.db.booking_events.count_documents({"booking_id": accepted["ref_id"]}) == 1


def _wait_until_drained(app, settings, timeout=10):
    """Until the bookings queue is empty and the worker runs nothing."""
    celery = app.extensions["celery"]
    name = queues.queue_name(queues.BOOKINGS, settings.QUEUE_NAMESPACE)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with celery.connection_for_write() as conn:
            depth = conn.default_channel.queue_declare(name, passive=True).message_count
        # Every worker on the broker answers (benchmarks' too): count ours only.
        inspect = celery.control.inspect(timeout=0.5)
        busy = [
            task
            for tasks in [*(inspect.active() or {}).values(), *(inspect.reserved() or {}).values()]
            for task in tasks
            if task["delivery_info"]["routing_key"] == name
        ]
        if depth == 0 and not busy:
            return
        time.sleep(0.1)
    raise AssertionError(f"queue did not drain: {depth} queued, busy {busy}")
