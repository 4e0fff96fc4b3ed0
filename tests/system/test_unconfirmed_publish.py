"""A publish whose confirm never comes: the broker may have taken the job.

The confirms are lost here, in this process only, where the ingress runs (the
test client): the broker-level publish either goes out and its confirm is
dropped, as when the connection dies or the confirm times out after the broker
took the message, or it goes nowhere. A real worker consumes the queue. Either
way the job is accepted (202), its Idempotency-Key keeps naming it, it runs
once, and a job that never reached the queue is sent again by beat's resend
(core.outbox)."""

from __future__ import annotations

import time
import uuid

import kombu.pools
import pytest
from amqp.channel import Channel

from celeryconfig import create_celery_app, publish_job
from core import outbox
from tests.conftest import CUSTOMER, booking_body, wait_job


@pytest.fixture
def lost_confirms(monkeypatch):
    """Every confirmed publish of this process loses its confirm; `sent` says
    whether the message itself still goes out. Returns the tries made. (A
    channel binds its publish when it opens, and kombu pools channels per
    broker URL: the pool is emptied when this starts and ends.)"""
    tries = []

    def install(*, sent: bool):
        def publish_without_confirm(channel, *args, **kwargs):
            kwargs.pop("confirm_timeout", None)
            tries.append(sent)
            if sent:
                channel._basic_publish(*args, **kwargs)
            raise TimeoutError("confirm lost (injected)")

        monkeypatch.setattr(Channel, "basic_publish_confirm", publish_without_confirm)
        kombu.pools.reset()
        return tries

    yield install
    monkeypatch.undo()
    kombu.pools.reset()


def _post(client, key=None):
    headers = {**CUSTOMER, **({"Idempotency-Key": key} if key else {})}
    return client.post("/api/bookings", json=booking_body(), headers=headers)


def test_a_lost_confirm_whose_message_ran_is_one_job_under_its_key(
    isolated_stack, services, lost_confirms
):
    stack = isolated_stack("lost-confirm", BROKER_PUBLISH_RETRIES=1)
    stack.start_worker("takes-it")
    client = stack.client()
    tries = lost_confirms(sent=True)
    key = str(uuid.uuid4())
    first = _post(client, key)
    assert len(tries) == 2  # the publish and its retry: two messages, neither confirmed
    assert first.status_code == 202, first.get_json()
    job_id, ref_id = first.get_json()["job_id"], first.get_json()["ref_id"]
    assert services.redis.zscore(outbox.UNCONFIRMED, job_id) is not None
    assert wait_job(client, first.headers["Location"], headers=CUSTOMER)["state"] == "succeeded"

    again = _post(client, key)  # the client's retry, confirms still lost
    assert again.status_code == 202 and again.get_json()["job_id"] == job_id
    assert again.headers["Idempotent-Replayed"] == "true" and len(tries) == 2
    assert services.db.bookings.count_documents({"ref_id": ref_id}) == 1
    assert services.db.bookings.count_documents({"job_id": job_id}) == 1

    # Beat's resend finds it ran: it is not sent again, and no longer held.
    resent = []
    outbox.resend_due(
        stack.services.db,
        stack.services.redis,
        lambda *message: resent.append(message[1]),
        now=time.time(),
        grace_s=0,
    )
    assert job_id not in resent and services.redis.zscore(outbox.UNCONFIRMED, job_id) is None


def test_a_job_whose_publish_never_reached_the_queue_is_sent_again_and_runs(
    isolated_stack, services, lost_confirms, monkeypatch
):
    stack = isolated_stack("lost-publish", BROKER_PUBLISH_RETRIES=0)
    stack.start_worker("runs-it")
    client = stack.client()
    lost_confirms(sent=False)
    r = _post(client)
    assert r.status_code == 202, r.get_json()
    job_id = r.get_json()["job_id"]
    assert client.get(r.headers["Location"], headers=CUSTOMER).get_json()["state"] == "queued"
    assert services.redis.zscore(outbox.UNCONFIRMED, job_id) is not None

    # Beat's resend, from a process whose confirms come (a maintenance worker's).
    monkeypatch.undo()
    kombu.pools.reset()
    app = create_celery_app(stack.settings)

    def publish(*message):
        publish_job(app, *message)

    sent = outbox.resend_due(
        stack.services.db, stack.services.redis, publish, now=time.time(), grace_s=0
    )
    assert sent["sent"] >= 1
    assert wait_job(client, r.headers["Location"], headers=CUSTOMER)["state"] == "succeeded"
    assert services.redis.zscore(outbox.UNCONFIRMED, job_id) is None
