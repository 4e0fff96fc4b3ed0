"""QUEUE_TYPE=quorum: quorum queues with a delivery limit and dead-lettering,
and retries that wait in delay queues instead of in the worker."""

from __future__ import annotations

import time
import uuid

import pytest
from amqp import Message
from amqp.exceptions import PreconditionFailed
from kombu import Connection

from core import queues
from core.settings import load_settings
from tools import stack
from tools.processes import delete_queues
from workers.jobs import retry_countdown, retry_options


@pytest.fixture
def quorum(settings):
    """This run's settings as QUEUE_TYPE=quorum, in a namespace of their own,
    with its queues declared as `make run` declares them."""
    isolated = load_settings(
        {},
        **{
            **settings.__dict__,
            "QUEUE_TYPE": "quorum",
            "QUEUE_DELIVERY_LIMIT": 3,
            "QUEUE_NAMESPACE": f"{settings.QUEUE_NAMESPACE}-quorum-{uuid.uuid4().hex[:4]}",
        },
    )
    stack.ensure_bounded_queues(isolated)
    yield isolated
    delete_queues(isolated)


def _get(conn, name: str, timeout: float = 10, missing_ok: bool = False):
    """The next message of queue `name` (not acked), waiting for it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        message = conn.default_channel.basic_get(name, no_ack=False)
        if message is not None:
            return message
        time.sleep(0.05)
    if missing_ok:
        return None
    raise AssertionError(f"no message in {name} after {timeout} s")


def test_every_retry_backoff_has_a_delay_queue_of_its_length():
    for retries in range(20):
        countdown = retry_countdown(retries)
        assert queues.retry_delay_ms(countdown) == countdown * 1000
    assert queues.retry_delay_ms(3600) == queues.RETRY_DELAYS_MS[-1]


def test_work_queues_are_quorum_queues_with_a_delivery_limit_and_dead_letters(quorum):
    """The broker's own check: redeclaring with the same arguments is accepted,
    with another type or delivery limit refused (PRECONDITION_FAILED)."""
    ns = quorum.QUEUE_NAMESPACE
    with Connection(quorum.RABBITMQ_URL) as conn:
        for q in queues.ALL_QUEUES:
            arguments = queues.queue_arguments(q, quorum)
            assert arguments["x-queue-type"] == "quorum"
            assert arguments["x-delivery-limit"] == 3
            if q == queues.MAINTENANCE:
                assert "x-dead-letter-exchange" not in arguments  # beat's expired messages
            else:
                assert arguments["x-dead-letter-routing-key"] == f"{ns}.dead-letters"
            name = queues.queue_name(q, ns)
            conn.channel().queue_declare(name, durable=True, auto_delete=False, arguments=arguments)
            for other in ({"x-queue-type": "classic"}, {"x-delivery-limit": 4}):
                with pytest.raises(PreconditionFailed):
                    conn.channel().queue_declare(
                        name, durable=True, auto_delete=False, arguments={**arguments, **other}
                    )


def test_a_poison_message_is_dead_lettered_after_the_delivery_limit(quorum):
    """A message given back (as a dying worker's channel gives back its
    unacked messages) more than QUEUE_DELIVERY_LIMIT times ends in dead-letters."""
    ns = quorum.QUEUE_NAMESPACE
    bookings = queues.queue_name(queues.BOOKINGS, ns)
    with Connection(quorum.RABBITMQ_URL) as conn:
        channel = conn.default_channel
        channel.basic_publish(Message(b"poison", delivery_mode=2), "", bookings)
        message, deliveries = _get(conn, bookings), 0  # a quorum queue commits it first
        while message is not None:
            deliveries += 1
            channel.basic_reject(message.delivery_tag, requeue=True)
            message = _get(conn, bookings, timeout=1, missing_ok=True)  # returned, or gone
        assert deliveries == quorum.QUEUE_DELIVERY_LIMIT + 1
        dead = _get(conn, queues.queue_name(queues.DEAD_LETTERS, ns))
        assert dead.body == b"poison"
        assert dead.headers["x-first-death-reason"] == "delivery_limit"
        assert dead.headers["x-first-death-queue"] == bookings


def test_a_retry_waits_in_its_delay_queue_then_returns_to_its_work_queue(quorum):
    from workers.celery_app import create_celery_app

    app = create_celery_app(quorum)
    bookings = queues.queue_name(queues.BOOKINGS, quorum.QUEUE_NAMESPACE)
    task_id = str(uuid.uuid4())
    sent = time.monotonic()
    options = retry_options(quorum, queues.CREATE_BOOKING, retry_countdown(1))  # 1 s
    app.send_task(queues.CREATE_BOOKING, args=["job"], task_id=task_id, retries=2, **options)
    with Connection(quorum.RABBITMQ_URL) as conn:
        message = _get(conn, bookings)
        waited = time.monotonic() - sent
        conn.default_channel.basic_ack(message.delivery_tag)
    assert message.headers["id"] == task_id
    assert message.headers["retries"] == 2
    assert message.headers["eta"] is None  # nothing for the worker to hold
    assert 0.9 <= waited < 5, waited
