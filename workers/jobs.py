"""The one way a task runs a job: start it, do the work, record the outcome.

Permanent errors fail the job with their problem; transient ones (a backing
service down) retry with backoff, and fail the job only when retries run out.
A message whose job is already finished (a redelivery) does nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import redis
from celery import Task
from pymongo.errors import ConnectionFailure, ExecutionTimeout

from core import jobs
from core.clock import utcnow
from core.errors import RadiantError, ServiceUnavailable
from core.services import Services
from core.waiting import notify_job_finished
from workers import runtime

log = logging.getLogger(__name__)

TRANSIENT = (ConnectionFailure, ExecutionTimeout, redis.ConnectionError, redis.TimeoutError)
MAX_RETRIES = 12
RETRY_BACKOFF_MAX_S = 30


def retry_countdown(retries: int) -> float:
    return min(2.0**retries * 0.5, RETRY_BACKOFF_MAX_S)


Work = Callable[[Services, dict[str, Any]], dict[str, Any]]


def run_job(
    task: Task,
    job_id: str,
    payload: dict[str, Any] | None,
    work: Work,
    *,
    mark_running: bool = True,
) -> None:
    """`mark_running=False` for short jobs: see core.jobs.start_job."""
    try:
        svc = runtime.services()  # the first call connects and ensures indexes
        started = utcnow()
        job = jobs.start_job(svc.db, job_id, started, payload, mark_running=mark_running)
        if job is None:
            log.info("job already finished or unknown; message dropped")
            return
        try:
            outcome = {"result": work(svc, job)}
        except RadiantError as exc:
            if exc.transient:
                raise
            outcome = {"error": exc.to_problem(instance=f"/api/jobs/{job_id}")}
        if not mark_running:
            outcome["started_at"] = started
        _finish(svc, job_id, **outcome)
    except RadiantError as exc:
        _retry_or_fail(task, job_id, exc)
    except TRANSIENT as exc:
        # Anywhere, finishing included: Celery would ack a failed task, and the
        # job would stay "running" forever. A retry redoes idempotent work.
        _retry_or_fail(task, job_id, ServiceUnavailable(f"{type(exc).__name__}: {exc}"))


def _retry_or_fail(task: Task, job_id: str, exc: RadiantError) -> None:
    if task.request.retries >= MAX_RETRIES:
        exc.detail = f"Gave up after {MAX_RETRIES} retries: {exc.detail}"
        _finish(runtime.services(), job_id, error=exc.to_problem(instance=f"/api/jobs/{job_id}"))
        return
    log.warning("transient failure, retrying: %s", exc.detail)
    raise task.retry(
        exc=exc, countdown=retry_countdown(task.request.retries), max_retries=MAX_RETRIES
    )


def _finish(svc: Services, job_id: str, **outcome: Any) -> None:
    if jobs.finish_job(svc.db, job_id, utcnow(), **outcome):
        notify_job_finished(svc.redis, job_id)
