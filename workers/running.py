"""The one way a task runs a job: start it, do the work, record the outcome.

Every job the ingress accepted ends, succeeded or failed; none is left queued
or running once its message is acked:
- permanent errors fail the job with their problem;
- transient ones (a backing service down or refusing) retry with backoff, and
  fail the job only when TASK_MAX_RETRIES run out (core.retries);
- any other exception is a bug, or data nobody foresaw: a retry would fail
  alike, so the job fails at once with a 500 problem, its traceback logged.
A message whose job is already finished (a redelivery) does nothing.

What a task does after its write committed (cache invalidation, notices) is
best-effort (core.invalidation), so it cannot turn done work into a failure.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from celery import Task

from core import jobs, queues, retries
from core.clock import utcnow
from core.errors import TRANSIENT_ERRORS, InternalError, RadiantError, ServiceUnavailable
from core.services import Services
from core.settings import Settings
from core.waiting import notify_job_finished
from workers import runtime, webhooks

log = logging.getLogger(__name__)


def retry_options(settings: Settings, task_name: str, retried: int) -> dict[str, Any]:
    """How the retry of a job retried `retried` times already is published to
    run after its wait (core.retries). Classic queues: a countdown (an ETA the
    worker holds, raising its global prefetch). Quorum queues have no global
    QoS, so a held ETA would take a prefetch slot: the retry waits instead in
    the delay queue of its step, whose TTL dead-letters it back, with its
    routing key, to its work queue (core.queues.delay_arguments)."""
    if settings.QUEUE_TYPE != "quorum":
        return {"countdown": retries.countdown_s(retried)}
    namespace = settings.QUEUE_NAMESPACE
    return {
        "countdown": 0,  # no ETA: it runs as soon as it is back
        "exchange": queues.delay_name(retries.delay_ms(retried), namespace),
        "routing_key": queues.TASKS[task_name][1],
    }


Work = Callable[[Services, dict[str, Any]], dict[str, Any]]
# What a job that ends failed on a give-up or a bug must undo before it ends (core.work).
Abandon = Callable[[Services, dict[str, Any]], None]


def run_job(
    task: Task,
    job_id: str,
    payload: dict[str, Any] | None,
    work: Work,
    abandon: Abandon | None = None,
) -> None:
    """A long job (an import, a bulk job, a cache warm), recorded in MongoDB when
    accepted and marked running here. Creates and transitions run in groups
    (workers.batches)."""
    try:
        svc = runtime.worker_services()
        job = jobs.start_job(svc.db, job_id, utcnow(), payload)
        if job is None:
            log.info("job already finished or unknown; message dropped")
            return
        try:
            outcome = {"result": work(svc, job)}
        except RadiantError as exc:
            if exc.transient:
                raise
            outcome = {"error": exc.to_problem(instance=instance(job_id))}
        except TRANSIENT_ERRORS:
            raise
        except Exception as exc:
            log.exception("job failed on an unexpected error")
            _abandon(svc, job_id, abandon)
            outcome = {"error": unexpected(exc, job_id)}
        _finish(svc, job_id, **outcome)
    except RadiantError as exc:
        _retry_or_fail(task, job_id, exc, abandon)
    except TRANSIENT_ERRORS as exc:
        # Anywhere, finishing included: Celery would ack a failed task, and the
        # job would stay "running" forever. A retry redoes idempotent work.
        _retry_or_fail(task, job_id, unavailable(exc), abandon)
    except Exception as exc:
        # Outside the work (starting the job, or recording its outcome): the
        # job must end all the same.
        log.exception("job failed on an unexpected error")
        _fail(task, job_id, unexpected(exc, job_id))


def _abandon(svc: Services, job_id: str, abandon: Abandon | None) -> None:
    """Undo what the failing job may have left half done; best-effort: what it
    cannot undo (a service down, a bug) the ledger check reports."""
    if abandon is None:
        return
    try:
        job = jobs.get_job(svc.db, job_id)
        if job is not None:
            abandon(svc, job)
    except Exception as exc:  # the job's own failure is logged already, with its traceback
        log.error("failed job not undone (the ledger check reports what it left): %r", exc)


def instance(job_id: str) -> str:
    return f"/api/jobs/{job_id}"


def unavailable(exc: Exception) -> ServiceUnavailable:
    return ServiceUnavailable(f"{type(exc).__name__}: {exc}")


def unexpected(exc: Exception, job_id: str) -> dict[str, Any]:
    """The problem a job fails with on an exception nobody raised on purpose.

    Its type only: the message may quote client data (which the log has)."""
    return InternalError(
        f"The job failed on an unexpected {type(exc).__name__}; the worker's log has the details."
    ).to_problem(instance=instance(job_id))


def _fail(task: Task, job_id: str, problem: dict[str, Any]) -> None:
    try:
        _finish(runtime.worker_services(), job_id, error=problem)
    except TRANSIENT_ERRORS as exc:  # recording the failure is a commit too: retried
        _retry_or_fail(task, job_id, unavailable(exc))


def _retry_or_fail(
    task: Task, job_id: str, exc: RadiantError, abandon: Abandon | None = None
) -> None:
    settings = runtime.worker_settings()
    if retries.exhausted(task.request.retries, settings):
        exc.detail = retries.gave_up(exc.detail, settings)
        svc = runtime.worker_services()
        _abandon(svc, job_id, abandon)
        _finish(svc, job_id, error=exc.to_problem(instance=instance(job_id)))
        return
    log.warning("transient failure, retrying: %s", exc.detail)
    raise task.retry(
        exc=exc,
        max_retries=settings.TASK_MAX_RETRIES,
        **retry_options(settings, task.name, task.request.retries),
    )


def _finish(svc: Services, job_id: str, **outcome: Any) -> None:
    if jobs.finish_job(svc.db, job_id, utcnow(), **outcome):
        notify_job_finished(svc.redis, job_id)
        webhooks.ask_dispatch(svc)
