"""Celery configuration, built from RadiantGo's settings, and the Celery app.

The worker and the ingress's publisher are built by create_celery_app, from
this configuration alone, so they cannot disagree about queues, serialization
or delivery guarantees, and the ingress never imports worker code to publish.
Building an app opens no connection.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable
from typing import Any

from amqp.exceptions import AccessRefused, MessageNacked
from celery import Celery
from kombu import Exchange, Queue
from kombu.exceptions import KombuError, OperationalError

from core import queues, retries
from core.errors import PublishUnconfirmed, QueueFull, ServiceUnavailable
from core.settings import Settings, load_settings

log = logging.getLogger(__name__)

# How often beat samples RabbitMQ's queue depths (seconds).
QUEUE_DEPTH_SAMPLE_INTERVAL = 15.0


# Background jobs run minutes each: a worker holds one at a time, so a second
# background worker (or a restarted one) takes the next.
BACKGROUND_PREFETCH = 1


def create_celery_app(settings: Settings | None = None) -> Celery:
    """The app the worker runs (workers.main) and the ingress publishes with (by task name)."""
    settings = settings or load_settings()
    app = Celery("radiantgo", set_as_current=False)
    app.conf.update(celery_config(settings))
    app.conf.radiantgo_settings = settings
    return app


def work_exchange(settings: Settings) -> Exchange:
    return Exchange(
        queues.queue_name("radiantgo", settings.QUEUE_NAMESPACE), type="direct", durable=True
    )


def retry_queues(settings: Settings) -> list[Queue]:
    """QUEUE_TYPE=quorum: the queues no worker consumes, declared by each worker
    at start (workers.runtime.Topology) and by `make run`: one delay queue per
    step of the retry schedule (core.retries), each behind a fanout exchange of its name, and the
    dead-letter queue. Classic queues need none: the worker holds a retry."""
    if settings.QUEUE_TYPE != "quorum":
        return []
    ns, target = settings.QUEUE_NAMESPACE, work_exchange(settings).name
    delays = [
        Queue(
            queues.delay_name(ms, ns),
            Exchange(queues.delay_name(ms, ns), type="fanout", durable=True),
            routing_key="",
            durable=True,
            queue_arguments=queues.delay_arguments(ms, target),
        )
        for ms in retries.STEPS_MS
    ]
    dead = Queue(
        queues.queue_name(queues.DEAD_LETTERS, ns),
        durable=True,
        queue_arguments=queues.dead_letter_arguments(),
    )
    return [*delays, dead]


def celery_config(settings: Settings) -> dict[str, Any]:
    ns = settings.QUEUE_NAMESPACE
    exchange = work_exchange(settings)
    return {
        "broker_url": settings.RABBITMQ_URL,
        # A 202 is a promise: the broker confirms each publish, to a durable
        # queue, as a persistent message, before the ingress answers.
        "broker_transport_options": {"confirm_publish": True},
        "broker_connection_timeout": settings.BROKER_TIMEOUT_S,
        "broker_connection_retry_on_startup": True,
        "broker_pool_limit": settings.WEB_THREADS + 4,
        "task_default_delivery_mode": "persistent",
        # QUEUE_TYPE (core.queues.queue_arguments): with quorum queues Celery
        # sees x-queue-type and sets its prefetch per consumer (quorum queues
        # refuse global QoS); retries wait in delay queues (workers.running).
        "task_default_queue_type": settings.QUEUE_TYPE,
        "task_create_missing_queue_type": settings.QUEUE_TYPE,
        "worker_detect_quorum_queues": True,
        "worker_consumer": "workers.runtime:Consumer",
        "task_queues": [
            Queue(
                queues.queue_name(q, ns),
                exchange,
                routing_key=q,
                durable=True,
                queue_arguments=queues.queue_arguments(q, settings),
            )
            for q in queues.ALL_QUEUES
        ],
        "task_routes": {
            name: {"queue": queues.queue_name(queue, ns), "routing_key": queue}
            for name, (_, queue) in queues.TASKS.items()
        },
        "task_default_queue": queues.queue_name(queues.MAINTENANCE, ns),
        "task_default_exchange": exchange.name,
        "task_default_routing_key": queues.MAINTENANCE,
        # JSON only: a pickle from the network is code execution.
        "task_serializer": "json",
        "accept_content": ["json"],
        "result_serializer": "json",
        # Job outcomes live in MongoDB (core.jobs), not in a Celery backend.
        "task_ignore_result": True,
        "result_backend": None,
        # At-least-once: ack after the task ran, redeliver if the worker died.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        # A full group per pool process (workers.batches); the background
        # worker takes one message at a time (BACKGROUND_PREFETCH).
        "worker_prefetch_multiplier": settings.GROUP_COMMIT_SIZE,
        "worker_send_task_events": True,
        "worker_hijack_root_logger": False,
        "worker_pool": settings.WORKER_POOL,
        "worker_concurrency": settings.WORKER_CONCURRENCY,
        "timezone": "UTC",
        "enable_utc": True,
        "beat_schedule": {
            # Shorter than CACHE_TTL_ROUTES, so popular routes never go cold.
            "warm-route-cache": {
                "task": queues.WARM_CACHE_ON_SCHEDULE,
                "schedule": float(settings.CACHE_WARM_INTERVAL),
                "options": {"expires": float(settings.CACHE_WARM_INTERVAL)},
            },
            "resend-unconfirmed-jobs": {
                "task": queues.RESEND_UNCONFIRMED,
                "schedule": float(settings.UNCONFIRMED_RESEND_S),
                "options": {"expires": float(settings.UNCONFIRMED_RESEND_S)},
            },
            "check-cargo-ledger": {
                "task": queues.CHECK_LEDGER,
                "schedule": float(settings.LEDGER_CHECK_INTERVAL),
                "options": {"expires": float(settings.LEDGER_CHECK_INTERVAL)},
            },
            "sweep-webhooks": {
                "task": queues.SWEEP_WEBHOOKS,
                "schedule": float(settings.WEBHOOK_SWEEP_INTERVAL_S),
                "options": {"expires": float(settings.WEBHOOK_SWEEP_INTERVAL_S)},
            },
            "sample-queue-depths": {
                "task": queues.SAMPLE_QUEUE_DEPTHS,
                "schedule": QUEUE_DEPTH_SAMPLE_INTERVAL,
                "options": {"expires": QUEUE_DEPTH_SAMPLE_INTERVAL},
            },
        },
    }


# Errors that say the message never reached the broker: nothing was taken.
# Anything else during a publish (a confirm that timed out, a connection that
# broke while it waited) may come after the broker took the message.
NOT_SENT = (ConnectionRefusedError, socket.gaierror, AccessRefused, MessageNacked)
ARGS_REPR_MAX = 1024
FULL_RETRY_AFTER_S = 300  # a full queue's Retry-After when nobody measured its drain


class _Attempts:
    """What the tries of one publish tell, as kombu reports each failure
    (its retry errback) and the last: whether any may have been taken."""

    def __init__(self) -> None:
        self.maybe_taken = False

    def failed(self, exc: BaseException, _interval: float = 0) -> None:
        if isinstance(exc, MessageNacked):
            raise _Nacked() from exc  # the broker's answer: no retry mends it
        if not isinstance(exc, NOT_SENT):
            self.maybe_taken = True


class _Nacked(Exception):
    """The queue refused a try (it holds its bound)."""


def publish_job(
    app: Celery,
    task_name: str,
    job_id: str,
    payload: dict[str, Any] | None,
    record: dict[str, Any] | None = None,
    *,
    request_id: str | None = None,
    full_retry_after: Callable[[str], int] | None = None,
) -> None:
    """Send `task_name` for `job_id` to its durable queue, with its payload or
    its whole queued record, and return once the broker confirmed it.

    Raises QueueFull when the queue refused it (its Retry-After from
    `full_retry_after(queue)`), ServiceUnavailable when no try reached the
    broker (nothing was taken), PublishUnconfirmed when a try may have been
    taken but none was confirmed (the job may run)."""
    settings: Settings = app.conf.radiantgo_settings
    group_queue = queues.TASKS[task_name][1]
    kwargs = {"job": record} if record is not None else {"payload": payload}
    attempts = _Attempts()
    try:
        app.send_task(
            task_name,
            args=[job_id],
            kwargs=kwargs,
            task_id=job_id,
            queue=queues.queue_name(group_queue, settings.QUEUE_NAMESPACE),
            # What Flower shows for the arguments. Given here, Celery skips its
            # saferepr of them: a quarter of the ingress's Python time (py-spy).
            argsrepr=repr([job_id]),
            kwargsrepr=_clipped_repr(kwargs),
            headers={"request_id": request_id, "enqueued_at": time.time()},
            retry=True,
            retry_policy={
                "max_retries": settings.BROKER_PUBLISH_RETRIES,
                "interval_start": 0,
                "interval_step": 0.2,
                "interval_max": 0.5,
                "errback": attempts.failed,
            },
            confirm_timeout=settings.BROKER_TIMEOUT_S,
        )
    except (_Nacked, OperationalError, KombuError, OSError) as exc:
        _raise_failed(exc, job_id, group_queue, settings, attempts, full_retry_after)


def _raise_failed(
    exc: Exception,
    job_id: str,
    group_queue: str,
    settings: Settings,
    attempts: _Attempts,
    full_retry_after: Callable[[str], int] | None,
) -> None:
    """The publish failed for good: say whether its job may run."""
    cause = exc.__cause__ if isinstance(exc, OperationalError | KombuError) else exc
    nacked = isinstance(exc, _Nacked) or isinstance(cause, MessageNacked)
    if not nacked and cause is not None and not isinstance(cause, NOT_SENT):
        attempts.maybe_taken = True  # the last try, which no errback saw
    if attempts.maybe_taken:  # even after a nack, an earlier try may be in the queue
        log.warning("publish of %s not confirmed, it may have been taken: %r", job_id, exc)
        raise PublishUnconfirmed(_unconfirmed(job_id)) from exc
    if nacked:
        bound = queues.max_length(group_queue, settings)
        raise QueueFull(
            f"The {group_queue} queue holds its whole backlog ({bound} jobs);"
            " nothing was enqueued.",
            retry_after=full_retry_after(group_queue) if full_retry_after else FULL_RETRY_AFTER_S,
        ) from exc
    log.warning("publish of %s failed, nothing was enqueued: %r", job_id, exc)
    raise ServiceUnavailable("The job queue is unavailable; nothing was enqueued.") from exc


def _unconfirmed(job_id: str) -> str:
    return f"The job queue did not confirm job {job_id}: it may have taken it."


def _clipped_repr(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= ARGS_REPR_MAX else text[: ARGS_REPR_MAX - 3] + "..."
