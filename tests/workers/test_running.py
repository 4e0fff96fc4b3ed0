"""workers/running.py: a failed attempt's backoff, and where its retry waits."""

import time
import uuid

import pytest
from kombu import Connection

from core import queues
from tests.conftest import next_message
from workers.running import retry_countdown, retry_options


def test_every_retry_backoff_has_a_delay_queue_of_its_length():
    for retries in range(20):
        countdown = retry_countdown(retries)
        assert queues.retry_delay_ms(countdown) == countdown * 1000
    assert queues.retry_delay_ms(3600) == queues.RETRY_DELAYS_MS[-1]


@pytest.mark.slow(reason="waits out a one-second retry delay")
def test_a_retry_waits_in_its_delay_queue_then_returns_to_its_work_queue(quorum_queues):
    """With QUEUE_TYPE=quorum a retry waits in a delay queue instead of in the worker."""
    from celeryconfig import create_celery_app

    app = create_celery_app(quorum_queues)
    bookings = queues.queue_name(queues.BOOKINGS, quorum_queues.QUEUE_NAMESPACE)
    task_id = str(uuid.uuid4())
    sent = time.monotonic()
    options = retry_options(quorum_queues, queues.CREATE_BOOKINGS, retry_countdown(1))  # 1 s
    app.send_task(queues.CREATE_BOOKINGS, args=["job"], task_id=task_id, retries=2, **options)
    with Connection(quorum_queues.RABBITMQ_URL) as conn:
        message = next_message(conn, bookings)
        waited = time.monotonic() - sent
        conn.default_channel.basic_ack(message.delivery_tag)
    assert message.headers["id"] == task_id
    assert message.headers["retries"] == 2
    assert message.headers["eta"] is None  # nothing for the worker to hold
    assert 0.9 <= waited < 5, waited
