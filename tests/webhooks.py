"""The `hooks` fixture (a stack with webhook workers and beat, and local
receivers) and helpers for webhook tests; loaded by tests/conftest.py."""

from __future__ import annotations

import time
import uuid

import pytest
from standardwebhooks.webhooks import Webhook

from core import signing
from core.clock import utcnow
from tests.receivers import Receiver

EVERY_TYPE = {
    "booking.created",
    "booking.departed",
    "booking.arrived",
    "booking.delivered",
    "booking.cancelled",
    "booking.failed",
    "bulk.finished",
}


@pytest.fixture
def hooks(isolated_stack, services):
    """A stack of its own (a worker on every queue, beat sweeping every half
    second, attempts timing out after 2 s), and a factory of receivers."""
    stack = isolated_stack("webhooks", WEBHOOK_SWEEP_INTERVAL_S=0.5, WEBHOOK_TIMEOUT_S=2.0)
    stack.start_worker("all")
    stack.start_beat()
    receivers: list[Receiver] = []
    endpoints: list[str] = []

    def receiver() -> Receiver:
        receivers.append(Receiver())
        return receivers[-1]

    stack.receiver = receiver
    stack.endpoint = lambda **kwargs: endpoints.append(_endpoint(stack, **kwargs)) or endpoints[-1]
    yield stack
    for made in receivers:
        made.close()
    stack.services.db.webhook_endpoints.delete_many({"_id": {"$in": endpoints}})


def _endpoint(stack, *, url, owner, events=("*",), all_bookings=False, secrets=None) -> str:
    """An endpoint as the API stores it; its secret is `endpoint_secret(id)`."""
    now, endpoint_id = utcnow(), "ep_" + uuid.uuid4().hex[:16]
    secrets = secrets or [{"secret": signing.new_secret(), "created_at": now, "expires_at": None}]
    stack.services.db.webhook_endpoints.insert_one(
        {
            "_id": endpoint_id,
            "owner": owner,
            "url": url,
            "events": list(events),
            "description": "",
            "all_bookings": all_bookings,
            "enabled": True,
            "disabled_reason": None,
            "disabled_at": None,
            "failing_since": None,
            "secrets": secrets,
            "created_at": now,
            "updated_at": now,
            "version": 1,
        }
    )
    return endpoint_id


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
