"""Webhooks across a broker restart: milestones committed before, during and
after RabbitMQ is stopped are every one delivered, once each (a dispatch
cannot be asked for while the broker is down: beat's sweep finds them)."""

from __future__ import annotations

import shutil

import pytest

from tests.conftest import stored_booking
from tests.faults.test_faults import rabbitmqctl, tally
from tests.webhooks import endpoint_secret, verified, wait_for
from tools.processes import wait_for_port


@pytest.mark.skipif(not shutil.which("rabbitmqctl"), reason="needs a local RabbitMQ to restart")
@pytest.mark.heavy(reason="the machine's RabbitMQ restarted: ~12 s")
def test_a_broker_restart_loses_no_webhook(hooks, services):
    receiver = hooks.receiver()
    me, _ = hooks.customer()
    endpoint = hooks.endpoint(url=receiver.url(), owner=me, events=["booking.created"])
    made = [stored_booking(services, customer_id=me) for _ in range(10)]
    rabbitmqctl("stop_app")
    try:
        made += [stored_booking(services, customer_id=me) for _ in range(10)]
    finally:
        rabbitmqctl("start_app")
    assert wait_for_port("127.0.0.1", 5672, 60)
    made += [stored_booking(services, customer_id=me) for _ in range(10)]

    def received() -> list[str]:
        """The bookings made here whose webhook arrived (other tests' bookings
        of this customer may still have theirs to dispatch)."""
        got = [e["data"]["ref_id"] for e in verified(receiver, endpoint_secret(hooks, endpoint))]
        return [ref_id for ref_id in got if ref_id in set(made)]

    wait_for(lambda: set(made) <= set(received()), 90, "every booking's webhook")
    got = received()
    doubled = len(got) - len(set(got))  # at least once: a repeat would carry the same id
    tally(len(made), len(set(made) & set(got)), doubled)
    assert set(got) == set(made)
    # Claimed before each attempt: a restart sends nothing twice either.
    assert doubled == 0
