"""workers/running.py: a failed attempt's backoff, and where its retry waits."""

import time
import uuid

import pytest
from kombu import Connection

from core import queues
from core.settings import load_settings, replace
from tests.conftest import next_message
from workers.running import retry_options


def test_every_countdown_a_retry_can_have_is_a_delay_queue_of_its_length():
    """The countdown (classic queues) and the delay queue (quorum) of each
    retry come from one schedule: the queue a retry is published to is one
    the worker declares, and it waits there as long as the countdown says."""
    from celeryconfig import retry_queues

    classic = replace(load_settings({}), QUEUE_TYPE="classic", QUEUE_NAMESPACE="t")
    quorum = replace(classic, QUEUE_TYPE="quorum")
    declared = {q.name: q.queue_arguments["x-message-ttl"] for q in retry_queues(quorum)[:-1]}
    for retried in range(quorum.TASK_MAX_RETRIES + 10):
        countdown = retry_options(classic, queues.CREATE_BOOKINGS, retried)["countdown"]
        delayed = retry_options(quorum, queues.CREATE_BOOKINGS, retried)
        assert delayed["countdown"] == 0
        assert declared[delayed["exchange"]] == countdown * 1000, retried


@pytest.mark.slow(reason="waits out a one-second retry delay")
def test_a_retry_waits_in_its_delay_queue_then_returns_to_its_work_queue(quorum_queues):
    """With QUEUE_TYPE=quorum a retry waits in a delay queue instead of in the worker."""
    from celeryconfig import create_celery_app

    app = create_celery_app(quorum_queues)
    bookings = queues.queue_name(queues.BOOKINGS, quorum_queues.QUEUE_NAMESPACE)
    task_id = str(uuid.uuid4())
    sent = time.monotonic()
    options = retry_options(quorum_queues, queues.CREATE_BOOKINGS, 1)  # the second wait: 1 s
    app.send_task(queues.CREATE_BOOKINGS, args=["job"], task_id=task_id, retries=2, **options)
    with Connection(quorum_queues.RABBITMQ_URL) as conn:
        message = next_message(conn, bookings)
        waited = time.monotonic() - sent
        conn.default_channel.basic_ack(message.delivery_tag)
    assert message.headers["id"] == task_id
    assert message.headers["retries"] == 2
    assert message.headers["eta"] is None  # nothing for the worker to hold
    assert 0.9 <= waited < 5, waited
