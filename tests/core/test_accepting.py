"""core.accepting: the job recorded before its task is published, and nothing
left behind when the broker does not take it. The publish is the ingress's own
(ingress.submit.publish, through celeryconfig's app) to the real RabbitMQ, in a
queue namespace of this module's that no worker consumes, so each message can
be read back."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
import uuid

import kombu.pools
import pytest
from amqp.exceptions import NotFound

from core import accepting, coalesce, jobs, queued_jobs, queues
from core.errors import ServiceUnavailable
from core.ids import new_job_id
from core.services import connect_services
from core.settings import replace
from tools.processes import delete_queues, free_port


@pytest.fixture(scope="module")
def unconsumed(settings, services):
    """An app publishing into queues of their own, which nobody consumes."""
    from ingress import create_app

    alone = replace(settings, QUEUE_NAMESPACE=f"{settings.QUEUE_NAMESPACE}-accepting")
    own = connect_services(alone)  # the publish names its queue from the app's settings
    yield create_app(alone, services=own)
    delete_queues(alone)
    own.close()


def _publish(app):
    from ingress.submit import publish

    def publish_in_app(*args):
        with app.test_request_context():
            publish(*args)

    return publish_in_app


def _taken_message(app, task_name: str) -> dict:
    """The next message of `task_name`'s queue, taken off it."""
    settings = app.extensions["radiantgo"].settings
    queue = queues.queue_name(queues.TASKS[task_name][1], settings.QUEUE_NAMESPACE)
    with app.extensions["celery"].connection_for_write() as connection:
        message = connection.default_channel.basic_get(queue, no_ack=True)
    assert message is not None, f"nothing in {queue}"
    args, kwargs, _ = json.loads(message.body)
    return {"args": args, "kwargs": kwargs}


def _submission(task_name=queues.CREATE_BOOKINGS, **changes) -> accepting.Submission:
    ref_id = f"RG{uuid.uuid4().hex[:9].upper()}"
    fields = {
        "task_name": task_name,
        "body": {"origin": "DEL", "destination": "BLR", "pieces": 1, "weight_kg": 10.0},
        "links": {"booking": f"/api/bookings/{ref_id}"},
        "customer_id": "a-customer",
        "assigned": {"ref_id": ref_id},
    }
    return accepting.Submission(**{**fields, **changes})


def test_a_short_job_travels_whole_in_its_message_with_no_mongodb_write(unconsumed, services):
    accepted = accepting.accept_job(services, _publish(unconsumed), _submission())
    job_id = accepted.job["_id"]
    assert accepted.created and not accepted.replayed
    assert services.db.jobs.count_documents({"_id": job_id}) == 0
    assert queued_jobs.find_job(services.db, services.redis, job_id)["state"] == jobs.QUEUED
    message = _taken_message(unconsumed, queues.CREATE_BOOKINGS)
    assert message["args"] == [job_id]
    assert message["kwargs"]["job"]["payload"]["ref_id"] == accepted.job["payload"]["ref_id"]


def test_a_bulk_job_is_recorded_in_mongodb_and_its_message_carries_only_its_id(
    unconsumed, services
):
    body = {"updates": [{"ref_id": "RG000000001", "status": "DEPARTED"}]}
    submission = _submission(queues.UPDATE_STATUSES, body=body, links={}, bulk=True)
    accepted = accepting.accept_job(services, _publish(unconsumed), submission)
    stored = services.db.jobs.find_one({"_id": accepted.job["_id"]})
    assert stored["state"] == jobs.QUEUED
    assert json.loads(jobs.job_payload(body, as_text=True)["request_json"]) == body
    assert _taken_message(unconsumed, queues.UPDATE_STATUSES)["kwargs"] == {"payload": None}


def test_an_idempotency_key_answers_the_same_job_and_publishes_once(unconsumed, services):
    key = f"client POST /api/bookings {uuid.uuid4().hex}"
    submission = _submission(idempotency_key=key, fingerprint="same-request")
    first = accepting.accept_job(services, _publish(unconsumed), submission)
    again = accepting.accept_job(services, _publish(unconsumed), submission)
    assert (first.created, again.created, again.replayed) == (True, False, True)
    assert again.job["_id"] == first.job["_id"]
    _taken_message(unconsumed, queues.CREATE_BOOKINGS)
    settings = unconsumed.extensions["radiantgo"].settings
    queue = queues.queue_name(queues.BOOKINGS, settings.QUEUE_NAMESPACE)
    with unconsumed.extensions["celery"].connection_for_write() as connection:
        assert connection.default_channel.basic_get(queue, no_ack=True) is None


@pytest.mark.parametrize("task_name", [queues.CREATE_BOOKINGS, queues.IMPORT_BOOKINGS])
def test_a_broker_that_cannot_be_reached_leaves_nothing_behind(settings, services, task_name):
    from ingress import create_app

    nowhere = replace(
        settings,
        RABBITMQ_URL=f"amqp://guest:guest@127.0.0.1:{free_port()}//",
        BROKER_PUBLISH_RETRIES=0,
    )
    app = create_app(nowhere, services=services)  # publishes nowhere: no queue is declared
    submission = _submission(task_name, bulk=task_name != queues.CREATE_BOOKINGS)
    job_id = new_job_id()
    with pytest.raises(ServiceUnavailable):
        accepting.accept_job(services, _publish(app), submission, job_id=job_id)
    assert services.db.jobs.count_documents({"_id": job_id}) == 0
    assert queued_jobs.find_job(services.db, services.redis, job_id) is None


def test_one_at_a_time_answers_the_job_still_queued(unconsumed, services):
    submission = _submission(queues.WARM_CACHE, body={}, links={}, assigned={})
    first = accepting.accept_one_at_a_time(services, _publish(unconsumed), submission, 60)
    try:
        second = accepting.accept_one_at_a_time(services, _publish(unconsumed), submission, 60)
        assert first.created and not second.created and not second.replayed
        assert second.job["_id"] == first.job["_id"]
        _taken_message(unconsumed, queues.WARM_CACHE)
    finally:  # the session's warm jobs must not find this one, never run, holding the claim
        coalesce.release(services.redis, queues.job_type(queues.WARM_CACHE), first.job["_id"])


def test_a_refusal_after_an_unconfirmed_try_holds_the_job_instead_of_discarding_it(
    settings, services, monkeypatch
):
    """The first try's confirm is lost, the retry is nacked (the queue is full):
    the first may be in the queue, so the job is kept to be sent again."""
    from amqp.channel import Channel

    from core import outbox
    from ingress import create_app
    from tools.stack import ensure_bounded_queues

    full = replace(
        settings,
        QUEUE_NAMESPACE=f"{settings.QUEUE_NAMESPACE}-full",
        QUEUE_MAX_INTERACTIVE=1,
        BROKER_PUBLISH_RETRIES=1,
    )
    ensure_bounded_queues(full)
    app = create_app(full, services=services)
    real, tries = Channel.basic_publish_confirm, []

    def first_confirm_lost(channel, *args, **kwargs):
        """Once armed (tries holds a mark), the first try's confirm is lost."""
        if not tries or len(tries) > 1:
            return real(channel, *args, **kwargs)
        tries.append("lost")
        kwargs.pop("confirm_timeout", None)
        channel._basic_publish(*args, **kwargs)
        raise TimeoutError("confirm lost (injected)")

    # A channel binds its publish when it opens, and kombu pools channels per
    # broker URL across apps: the pool is emptied, before and after.
    monkeypatch.setattr(Channel, "basic_publish_confirm", first_confirm_lost)
    kombu.pools.reset()
    try:
        accepting.accept_job(services, _publish(app), _submission())  # the queue is full now
        tries.append("armed")
        accepted = accepting.accept_job(services, _publish(app), _submission())
        job_id = accepted.job["_id"]
        assert tries == ["armed", "lost"] and accepted.created
        assert queued_jobs.find_job(services.db, services.redis, job_id)["state"] == jobs.QUEUED
        assert services.redis.zscore(outbox.UNCONFIRMED, job_id) is not None
        services.redis.zrem(outbox.UNCONFIRMED, job_id)  # no worker here to run it
    finally:
        monkeypatch.undo()
        kombu.pools.reset()
        delete_queues(full)


def test_a_job_whose_ingress_died_before_publishing_is_sent_by_beat(unconsumed, services):
    """The ingress is SIGKILLed after recording a job with an Idempotency-Key and
    before publishing it (a real process, killed in its publish). The client's
    retry with the key is answered that job, 202: beat must send it, or it is
    queued for ever (seen in make cluster-chaos, an ingress group SIGKILLed)."""
    from core import outbox
    from ingress import create_app

    settings = unconsumed.extensions["radiantgo"].settings
    # An app of its own: a test before may have closed kombu's pools under `unconsumed`.
    ingress = connect_services(settings)
    app = create_app(settings, services=ingress)
    key = f"client POST /api/bookings {uuid.uuid4().hex}"
    submission = _submission(idempotency_key=key, fingerprint="same-request")
    pid = os.fork()
    if pid == 0:  # the ingress: its own clients (pymongo is not fork-safe), then killed
        try:
            own = connect_services(settings)
            kill = lambda *_: os.kill(os.getpid(), signal.SIGKILL)  # noqa: E731
            accepting.accept_job(own, kill, submission)
        finally:
            os._exit(1)  # not reached when killed; never back into pytest
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL

    retried = accepting.accept_job(ingress, _publish(app), submission)
    assert retried.replayed and retried.job["state"] == jobs.QUEUED
    job_id = retried.job["_id"]
    grace = settings.UNCONFIRMED_RESEND_S
    outbox.resend_due(
        ingress.db, ingress.redis, _publish(app), now=time.time() + grace, grace_s=grace
    )
    sent = []
    queue = queues.queue_name(queues.BOOKINGS, settings.QUEUE_NAMESPACE)
    connect = app.extensions["celery"].connection_for_write
    # NotFound: the queue was never declared, so nothing was ever sent.
    with connect() as connection, contextlib.suppress(NotFound):
        while message := connection.default_channel.basic_get(queue, no_ack=True):
            sent.append(json.loads(message.body)[0][0])
    ingress.close()
    assert job_id in sent
    assert services.redis.zscore(outbox.UNCONFIRMED, job_id) is None  # sent: no longer held
