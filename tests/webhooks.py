"""The `hooks` fixture (a stack with webhook workers and beat, and local
receivers) and helpers for webhook tests; loaded by tests/conftest.py."""

from __future__ import annotations

import time
import uuid

import pytest
from standardwebhooks.webhooks import Webhook

from core import notifications
from core.clock import utcnow
from core.webhook_endpoints import EVENT_TYPES, endpoint_document
from tests.conftest import bearer, new_customer
from tests.receivers import Receiver

EVERY_TYPE = set(EVENT_TYPES)


@pytest.fixture
def webhook_stack(isolated_stack, services):
    """A factory: webhook_stack(**overrides) -> a stack of its own (a worker
    on every queue, beat sweeping every half second, attempts timing out
    after 2 s unless overridden), with a factory of receivers (`receiver()`)
    and of endpoints (`endpoint(url=, owner=, ...)`), all closed at the end."""
    receivers: list[Receiver] = []
    endpoints: list[str] = []

    def make(**overrides):
        settings = {"WEBHOOK_SWEEP_INTERVAL_S": 0.5, "WEBHOOK_TIMEOUT_S": 2.0, **overrides}
        stack = isolated_stack(f"webhooks-{uuid.uuid4().hex[:6]}", **settings)
        # The suite runs no sweep: what earlier tests wrote is still in the
        # outboxes, news to nobody. A sweep with no endpoint would mark it so.
        for name in notifications.OUTBOXES:
            services.db[name].update_many(notifications.PENDING, {"$set": {"dispatched": True}})
        stack.start_worker("all")
        stack.start_beat()

        def receiver() -> Receiver:
            receivers.append(Receiver())
            return receivers[-1]

        def endpoint(**kwargs) -> str:
            endpoints.append(_endpoint(stack, **kwargs))
            return endpoints[-1]

        def customer() -> tuple[str, dict[str, str]]:
            """A customer of this test's own (no other test's late events are
            its): its id and its Authorization header."""
            made = new_customer(services.db, name="Webhook test customer")
            return made["customer_id"], bearer(made["api_key"])

        stack.receiver, stack.endpoint, stack.customer = receiver, endpoint, customer
        return stack

    yield make
    for made in receivers:
        made.close()
    services.db.webhook_endpoints.delete_many({"_id": {"$in": endpoints}})


@pytest.fixture
def hooks(webhook_stack):
    """The webhook stack with its default settings."""
    return webhook_stack()


def _endpoint(stack, *, url, owner, events=("*",), all_bookings=False, secrets=None) -> str:
    """An endpoint as the API stores it; its secret is `endpoint_secret(id)`."""
    doc = endpoint_document(
        owner, url, list(events), now=utcnow(), all_bookings=all_bookings, secrets=secrets
    )
    stack.services.db.webhook_endpoints.insert_one(doc)
    return doc["_id"]


def endpoint_secret(stack, endpoint_id: str) -> str:
    return stack.services.db.webhook_endpoints.find_one({"_id": endpoint_id})["secrets"][0][
        "secret"
    ]


def verified(receiver: Receiver, secret: str) -> list[dict]:
    """Every request `receiver` got, each signature checked (standardwebhooks
    raises on a bad one), as the JSON payloads."""
    hook = Webhook(secret)
    return [hook.verify(r.body, dict(r.headers.items())) for r in receiver.requests]


def wait_for(predicate, timeout: float = 20, what: str = "it"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"waited {timeout} s for {what}")


def post(client, path, body, headers) -> dict:
    """The accepted job, with `url` to poll it."""
    r = client.post(path, json=body, headers=headers)
    assert r.status_code == 202, r.get_data(as_text=True)
    return {**r.get_json(), "url": r.headers["Location"]}
