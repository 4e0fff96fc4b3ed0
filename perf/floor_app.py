"""The floor for an accept: the least an HTTP accept of a booking can do.

    gunicorn ... 'perf.floor_app:create_floor_app()'    (perf/bench_accept.py)

Served by the same gunicorn settings as the ingress (gthread, WEB_WORKERS x
WEB_THREADS), POST /floor parses the JSON body, publishes one Celery message
the way ingress/submit.publish does (same Celery app and celeryconfig: a
persistent message to the durable bookings queue of the namespace, the publish
broker-confirmed) and answers 202. No validation, no API key, no job record,
no metrics or rate limits: what is left is gunicorn, Flask and one confirmed
publish, which every accept must pay, so the ingress's throughput can only be
judged as a fraction of this one's.
"""

from __future__ import annotations

import uuid

from flask import Flask, jsonify, request

from celeryconfig import create_celery_app
from core import queues
from core.settings import load_settings


def create_floor_app() -> Flask:
    settings = load_settings()  # the environment tools.processes.child_env built
    celery = create_celery_app(settings)  # publisher confirms: celeryconfig
    queue = queues.queue_name(queues.BOOKINGS, settings.QUEUE_NAMESPACE)
    retry_policy = {
        "max_retries": settings.BROKER_PUBLISH_RETRIES,
        "interval_start": 0,
        "interval_step": 0.2,
        "interval_max": 0.5,
    }
    app = Flask(__name__)

    @app.post("/floor")
    def floor():
        request.get_json()
        job_id = uuid.uuid4().hex
        celery.send_task(
            queues.CREATE_BOOKINGS,
            args=[job_id],
            task_id=job_id,
            queue=queue,
            # As ingress/submit.publish: given, Celery skips its saferepr of the args.
            argsrepr=repr([job_id]),
            kwargsrepr="{}",
            retry=True,
            retry_policy=retry_policy,
            confirm_timeout=settings.BROKER_TIMEOUT_S,
        )
        return jsonify(job_id=job_id), 202

    return app
