"""QUEUE_TYPE=quorum: quorum queues with a delivery limit and dead-lettering,
checked on the broker. Retries' delay queues: tests/workers/test_running.py."""

from __future__ import annotations

import pytest
from amqp import Message
from amqp.exceptions import PreconditionFailed
from kombu import Connection

from core import queues
from tests.conftest import next_message

pytestmark = pytest.mark.slow(reason="waits on RabbitMQ's delivery limit")


def test_work_queues_are_quorum_queues_with_a_delivery_limit_and_dead_letters(quorum_queues):
    """The broker's own check: redeclaring with the same arguments is accepted,
    with another type or delivery limit refused (PRECONDITION_FAILED)."""
    ns = quorum_queues.QUEUE_NAMESPACE
    with Connection(quorum_queues.RABBITMQ_URL) as conn:
        for q in queues.ALL_QUEUES:
            arguments = queues.queue_arguments(q, quorum_queues)
            assert arguments["x-queue-type"] == "quorum"
            assert arguments["x-delivery-limit"] == 3
            if q in (queues.MAINTENANCE, queues.WEBHOOKS):
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


def test_a_poison_message_is_dead_lettered_after_the_delivery_limit(quorum_queues):
    """A message given back (as a dying worker's channel gives back its
    unacked messages) more than QUEUE_DELIVERY_LIMIT times ends in dead-letters."""
    ns = quorum_queues.QUEUE_NAMESPACE
    bookings = queues.queue_name(queues.BOOKINGS, ns)
    with Connection(quorum_queues.RABBITMQ_URL) as conn:
        channel = conn.default_channel
        channel.basic_publish(Message(b"poison", delivery_mode=2), "", bookings)
        message, deliveries = next_message(conn, bookings), 0  # a quorum queue commits it first
        while message is not None:
            deliveries += 1
            channel.basic_reject(message.delivery_tag, requeue=True)
            message = next_message(conn, bookings, timeout=1, missing_ok=True)  # returned, or gone
        assert deliveries == quorum_queues.QUEUE_DELIVERY_LIMIT + 1
        dead = next_message(conn, queues.queue_name(queues.DEAD_LETTERS, ns))
        assert dead.body == b"poison"
        assert dead.headers["x-first-death-reason"] == "delivery_limit"
        assert dead.headers["x-first-death-queue"] == bookings
