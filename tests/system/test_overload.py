"""Load shedding on a real gunicorn stack (ingress.serving's worker, one
process, an in-flight limit of one): past the limit a request is answered 503
`overloaded` with Retry-After at once, while the request in flight is still
being served, before its caller is even authenticated; the operators'
endpoints are still answered, and the request accepted still finishes."""

from __future__ import annotations

import threading
import time

import requests
from amqp.exceptions import NotFound

from celeryconfig import create_celery_app
from core import queues
from tests.conftest import booking_body, post_booking, wait_job


def ready_messages(settings, queue: str) -> int:
    """The queue's ready messages; 0 before the first publish has declared it."""
    with create_celery_app(settings).connection_for_write() as conn:
        name = queues.queue_name(queue, settings.QUEUE_NAMESPACE)
        try:
            return conn.default_channel.queue_declare(name, passive=True).message_count
        except NotFound:
            return 0


def test_past_the_limit_a_request_is_shed_at_once_and_the_accepted_one_finishes(
    isolated_stack, services
):
    stack = isolated_stack(
        "overload",
        WEB_WORKERS=1,
        OVERLOAD_MIN_LIMIT=1,
        OVERLOAD_INITIAL_LIMIT=1,
        OVERLOAD_MAX_LIMIT=1,
        OVERLOAD_RETRY_AFTER_S=2,
    )
    base = stack.start_ingress()
    # No worker yet: a create with Prefer: wait holds its thread (and the one
    # slot) until its wait ends, answering 202.
    held: dict[str, requests.Response] = {}
    holder = threading.Thread(
        target=lambda: held.setdefault("answer", post_booking(base, Prefer="wait=10"))
    )
    holder.start()
    deadline = time.monotonic() + 10
    while ready_messages(stack.settings, queues.BOOKINGS) < 1:  # its job is published: it waits
        assert time.monotonic() < deadline and holder.is_alive(), held
        time.sleep(0.05)
    # No credentials at all: shed before authentication, not a 401.
    shed = requests.post(base + "/api/bookings", json=booking_body(), timeout=15)
    read = requests.get(base + "/api/flights", timeout=15)  # reads are shed too
    assert holder.is_alive()  # answered while the slot was still held: at once
    for r in (shed, read):
        assert r.status_code == 503, r.text
        assert r.headers["Content-Type"] == "application/problem+json"
        assert r.headers["Retry-After"] == "2"
        assert r.json()["type"].endswith("/overloaded")
    # Operators' endpoints are never shed, even with the slot taken.
    assert requests.get(base + "/health", timeout=15).status_code in (200, 503)
    assert requests.get(base + "/api/openapi.json", timeout=15).status_code == 200
    holder.join(30)
    assert held["answer"].status_code == 202, held["answer"].text
    stack.start_worker("overload")
    assert wait_job(base, held["answer"].headers["Location"], timeout=60)["state"] == "succeeded"
