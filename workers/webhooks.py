"""The webhook senders of a worker process, and the dispatch a write asks for.

An attempt is a wait on someone else's server (up to WEBHOOK_TIMEOUT_S), not
work: each process of the webhooks worker sends WEBHOOK_CONCURRENCY attempts
at once on threads of its own, and its Celery tasks (dispatch, sweep) only
hand it delivery ids and return. The threads never touch the broker (Celery's
thread pool is not used: see WORKER_POOL). Nothing is lost with a process that
dies holding ids here: each delivery is pending in MongoDB, and the sweep
hands it out again once the lease of an attempt under way has run out.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from core import deliveries, notifications, queues, work
from core.services import Services
from workers import runtime

log = logging.getLogger(__name__)
# Ids waiting for a sender in this process, at most BACKLOG_PER_SENDER per
# sender: past that a sweep leaves the rest to the other processes (or later).
BACKLOG_PER_SENDER = 64
_lock = threading.Lock()
_state: dict[str, object] = {"pid": None, "executor": None, "queued": set(), "events": None}
_endpoints_seen: dict[str, float] = {"at": 0.0, "any": 0.0}


def send_soon(delivery_ids: list[str]) -> int:
    """Hand `delivery_ids` to this process's senders; returns how many were taken."""
    settings = runtime.worker_settings()
    with _lock:
        if _state["pid"] != os.getpid():  # a fresh process (after fork)
            _state.update(
                pid=os.getpid(),
                executor=ThreadPoolExecutor(
                    settings.WEBHOOK_CONCURRENCY, thread_name_prefix="webhook"
                ),
                queued=set(),
                events=deliveries.EventCache(),
            )
        queued: set[str] = _state["queued"]  # type: ignore[assignment]
        room = settings.WEBHOOK_CONCURRENCY * BACKLOG_PER_SENDER - len(queued)
        taken = [i for i in dict.fromkeys(delivery_ids) if i not in queued][: max(0, room)]
        queued.update(taken)
        executor: ThreadPoolExecutor = _state["executor"]  # type: ignore[assignment]
    for delivery_id in taken:
        executor.submit(_send, delivery_id)
    return len(taken)


def _send(delivery_id: str) -> None:
    try:
        work.send_webhook(runtime.worker_services(), delivery_id, _state["events"])
    except Exception:  # its lease runs out and the sweep sends it again
        log.exception("webhook delivery %s not sent", delivery_id)
    finally:
        with _lock:
            _state["queued"].discard(delivery_id)  # type: ignore[union-attr]


def ask_dispatch(svc: Services) -> None:
    """After a committed write: ask the webhooks worker to dispatch now, if any
    endpoint could want it and nobody asked since the last dispatch.
    Best-effort: the sweep dispatches what no message asked for."""
    try:
        now = time.monotonic()
        if now - _endpoints_seen["at"] > notifications.ENDPOINTS_LOOKED_AT_S:
            _endpoints_seen.update(at=now, any=float(notifications.any_endpoint(svc.db)))
        if _endpoints_seen["any"] and notifications.ask_dispatch(svc.redis):
            runtime.worker_app().send_task(
                queues.DISPATCH_WEBHOOKS, expires=svc.settings.WEBHOOK_SWEEP_INTERVAL_S * 5
            )
    except Exception as exc:
        log.warning("webhook dispatch not asked for (the sweep will): %s", exc)
