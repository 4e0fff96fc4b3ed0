"""Transitions end to end: HTTP -> RabbitMQ (status queue) -> a real worker, under the lock."""

import os
import signal
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from core import queues
from core.locks import booking_lock_key, held_locks
from tests.conftest import ADMIN, CUSTOMER, OPERATOR, booking_body, post_booking, wait_job
from tools.processes import stop


def create(base) -> str:
    """A booking of the test customer, made through the API."""
    r = post_booking(base, Prefer="wait=10")
    assert r.status_code == 201, r.text
    return r.json()["result"]["booking"]["ref_id"]


def act(base, ref_id, action, body=None, wait=10):
    """A transition, as the carrier's operator."""
    headers = {**OPERATOR, "Prefer": f"wait={wait}"} if wait else OPERATOR
    return requests.post(
        f"{base}/api/bookings/{ref_id}/{action}", json=body or {}, headers=headers, timeout=15
    )


def details(base, ref_id):
    return requests.get(f"{base}/api/bookings/{ref_id}", headers=ADMIN, timeout=5).json()


def test_full_lifecycle_with_timeline(live_server, services):
    ref_id = create(live_server)
    assert details(live_server, ref_id)["status"] == "BOOKED"  # now cached
    r = act(live_server, ref_id, "depart", {"location": "Airport", "notes": "Departed"})
    assert r.status_code == 200, r.text
    assert r.json()["result"]["booking"]["status"] == "DEPARTED"
    # The cached details were invalidated by the write: the event shows at once.
    assert details(live_server, ref_id)["status"] == "DEPARTED"
    assert (
        act(
            live_server, ref_id, "arrive", {"location": "BLR", "flight_number": "rg001"}
        ).status_code
        == 200
    )
    assert act(live_server, ref_id, "deliver", {"notes": "Signed"}).status_code == 200
    booking = details(live_server, ref_id)
    assert (booking["status"], booking["version"]) == ("DELIVERED", 4)
    timeline = booking["events"]
    assert [e["type"] for e in timeline] == [
        "BOOKING_CREATED",
        "STATUS_DEPARTED",
        "STATUS_ARRIVED",
        "STATUS_DELIVERED",
    ]
    assert timeline[1]["location"] == "Airport" and timeline[1]["notes"] == "Departed"
    assert timeline[2]["flight_number"] == "RG001"
    assert all(e["job_id"] for e in timeline)
    assert [e["at_ts"] for e in timeline] == sorted(e["at_ts"] for e in timeline)
    assert not services.redis.exists(booking_lock_key(ref_id))


def test_the_specs_load_test_body_is_accepted(live_server):
    ref_id = create(live_server)
    r = act(live_server, ref_id, "depart", {"location": "Airport", "notes": "Departed"}, wait=0)
    assert r.status_code == 202
    assert r.headers["Location"] == r.json()["links"]["job"]
    assert wait_job(live_server, r.headers["Location"])["state"] == "succeeded"


@pytest.mark.parametrize(
    ("path", "action", "current"),
    [
        ([], "arrive", "BOOKED"),
        ([], "deliver", "BOOKED"),
        (["depart"], "depart", "DEPARTED"),
        (["depart"], "deliver", "DEPARTED"),
        (["depart", "arrive"], "arrive", "ARRIVED"),
        (["depart", "arrive"], "cancel", "ARRIVED"),
        (["depart", "arrive"], "depart", "ARRIVED"),
        (["depart", "arrive", "deliver"], "cancel", "DELIVERED"),
        (["cancel"], "depart", "CANCELLED"),
        (["cancel"], "cancel", "CANCELLED"),
    ],
)
def test_impossible_transitions_are_refused_at_the_ingress(
    live_server, services, path, action, current
):
    ref_id = create(live_server)
    for step in path:
        assert act(live_server, ref_id, step).status_code == 200
    jobs_before = services.db.jobs.count_documents({"ref_id": ref_id})
    r = act(live_server, ref_id, action, wait=0)
    assert r.status_code == 409
    assert r.headers["Content-Type"] == "application/problem+json"
    problem = r.json()
    assert problem["title"] == "Invalid status transition"
    target = {
        "depart": "DEPARTED",
        "arrive": "ARRIVED",
        "deliver": "DELIVERED",
        "cancel": "CANCELLED",
    }[action]
    assert problem["detail"] == f"Cannot transition from {current} to {target}"
    assert services.db.jobs.count_documents({"ref_id": ref_id}) == jobs_before  # nothing enqueued


def test_a_retry_of_a_transition_that_has_run_is_answered_its_job(live_server, services):
    """The client's first answer was lost (its ingress died after the publish) and
    the transition ran meanwhile: the retry with its Idempotency-Key is answered
    that job, not 409 because the booking has moved since (found by make
    cluster-chaos). Another key still gets the 409."""
    ref_id = create(live_server)
    url = f"{live_server}/api/bookings/{ref_id}/depart"
    keyed = {**OPERATOR, "Idempotency-Key": uuid.uuid4().hex, "Prefer": "wait=10"}
    first = requests.post(url, json={"location": "DEL"}, headers=keyed, timeout=15)
    assert first.status_code == 200 and details(live_server, ref_id)["status"] == "DEPARTED"
    again = requests.post(url, json={"location": "DEL"}, headers=keyed, timeout=15)
    assert again.status_code == 200, again.text
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["job_id"] == first.json()["job_id"]
    other = {**keyed, "Idempotency-Key": uuid.uuid4().hex}
    assert (
        requests.post(url, json={"location": "DEL"}, headers=other, timeout=15).status_code == 409
    )
    changed = requests.post(url, json={"location": "BOM"}, headers=keyed, timeout=15)
    assert changed.status_code == 422  # the key, with another body: reused, not replayed
    assert services.db.jobs.count_documents({"ref_id": ref_id}) == 2  # the create, one depart


def test_transition_bodies_are_validated(live_server):
    ref_id = create(live_server)
    for body in (
        {"location": ""},
        {"location": "x" * 101},
        {"notes": "x" * 501},
        {"flight_number": "not a flight"},
        {"reason": "only for cancel"},
        {"extra": 1},
        {"location": {"$ne": None}},
    ):
        r = act(live_server, ref_id, "depart", body, wait=0)
        assert r.status_code == 400, (body, r.text)
    assert act(live_server, ref_id, "cancel", {"reason": "x" * 501}, wait=0).status_code == 400
    assert (
        act(live_server, ref_id, "cancel", {"reason": "Customer request"}).json()["state"]
        == "succeeded"
    )


def test_fifty_concurrent_departs_make_exactly_one_transition(live_server, services):
    ref_id = create(live_server)
    with ThreadPoolExecutor(50) as pool:
        responses = list(pool.map(lambda _: act(live_server, ref_id, "depart", wait=0), range(50)))
    assert {r.status_code for r in responses} <= {202, 409}
    accepted = [r for r in responses if r.status_code == 202]
    outcomes = [wait_job(live_server, r.headers["Location"], timeout=60) for r in accepted]
    succeeded = [j for j in outcomes if j["state"] == "succeeded"]
    failed = [j for j in outcomes if j["state"] == "failed"]
    refused_at_door = [r for r in responses if r.status_code == 409]
    print(f"{len(accepted)} accepted, {len(refused_at_door)} refused at the door")
    assert len(succeeded) == 1
    assert len(failed) + len(refused_at_door) == 49
    for job in failed:
        assert job["error"]["status"] == 409
        assert job["error"]["detail"] == "Cannot transition from DEPARTED to DEPARTED"
    booking = details(live_server, ref_id)
    assert (booking["status"], booking["version"]) == ("DEPARTED", 2)
    assert [e["type"] for e in booking["events"]].count("STATUS_DEPARTED") == 1
    assert not services.redis.exists(booking_lock_key(ref_id))
    assert booking_lock_key(ref_id) not in [h["key"] for h in held_locks(services.redis)]


def test_a_transition_right_after_the_create_waits_for_it(live_server, worker):
    os.kill(worker.pid, signal.SIGSTOP)  # the create job stays queued
    try:
        created = requests.post(
            live_server + "/api/bookings", json=booking_body(), headers=CUSTOMER, timeout=10
        )
        ref_id = created.json()["ref_id"]
        departed = act(live_server, ref_id, "depart", {"location": "DEL"}, wait=0)
        assert departed.status_code == 202  # not a 404: the booking is on its way
    finally:
        os.kill(worker.pid, signal.SIGCONT)
    assert wait_job(live_server, departed.headers["Location"], timeout=30)["state"] == "succeeded"
    booking = details(live_server, ref_id)
    assert booking["status"] == "DEPARTED"
    assert [e["type"] for e in booking["events"]] == ["BOOKING_CREATED", "STATUS_DEPARTED"]


def test_a_random_ref_id_is_404_and_enqueues_nothing(live_server, services, worker, app):
    celery = app.extensions["celery"]
    name = queues.queue_name(queues.STATUS, services.settings.QUEUE_NAMESPACE)

    def depth():
        with celery.connection_for_write() as conn:
            return conn.default_channel.queue_declare(name, passive=True).message_count

    os.kill(worker.pid, signal.SIGSTOP)  # nothing may be consumed while we count
    try:
        before = depth()
        for ref_id in ("RG000000000", "RGZZZZZZZZZ", f"RG{int(time.time())}123", "nonsense"):
            r = act(
                live_server, ref_id, "depart", {"location": "Airport", "notes": "Departed"}, wait=0
            )
            assert r.status_code == 404
            assert r.headers["Content-Type"] == "application/problem+json"
        assert depth() == before
    finally:
        os.kill(worker.pid, signal.SIGCONT)


def test_redis_down_loses_no_transition(private_redis, isolated_stack):
    """Redis dies while a transition is queued: the job retries, then completes."""
    port, state, start_redis = private_redis
    stack = isolated_stack("redis", REDIS_URL=f"redis://127.0.0.1:{port}/0")
    stack.start_worker("redisfault")
    base = stack.start_ingress()
    ref_id = create(base)
    stop(state["proc"])  # Redis is gone
    r = act(base, ref_id, "depart", {"location": "DEL"}, wait=0)
    assert r.status_code == 202  # accepting needs MongoDB and RabbitMQ only
    time.sleep(2.0)
    job = requests.get(base + r.headers["Location"], headers=ADMIN, timeout=5).json()
    assert job["state"] in ("queued", "running")  # retrying, not failed, not lost
    state["proc"] = start_redis()
    job = wait_job(base, r.headers["Location"], timeout=60)
    assert job["state"] == "succeeded", job
    booking = details(base, ref_id)
    assert booking["status"] == "DEPARTED" and booking["version"] == 2
    assert [e["type"] for e in booking["events"]].count("STATUS_DEPARTED") == 1
    assert held_locks(stack.services.redis) == []
