"""Celery configuration, built from RadiantGo's settings, and the Celery app.

The worker and the ingress's publisher are built by create_celery_app, from
this configuration alone, so they cannot disagree about queues, serialization
or delivery guarantees, and the ingress never imports worker code to publish.
Building an app opens no connection.
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from kombu import Exchange, Queue

from core import queues
from core.settings import Settings, load_settings

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
    retry backoff step, each behind a fanout exchange of its name, and the
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
        for ms in queues.RETRY_DELAYS_MS
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
        # refuse global QoS); retries wait in delay queues (workers.jobs).
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
            "check-cargo-ledger": {
                "task": queues.CHECK_LEDGER,
                "schedule": float(settings.LEDGER_CHECK_INTERVAL),
                "options": {"expires": float(settings.LEDGER_CHECK_INTERVAL)},
            },
            "sample-queue-depths": {
                "task": queues.SAMPLE_QUEUE_DEPTHS,
                "schedule": QUEUE_DEPTH_SAMPLE_INTERVAL,
                "options": {"expires": QUEUE_DEPTH_SAMPLE_INTERVAL},
            },
        },
    }
