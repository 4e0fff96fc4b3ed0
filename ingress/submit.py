"""Accepting work: record the job, publish its task, answer 202 (or wait).

The order is the promise: the job is recorded before the task is published
(a short job in Redis, core.jobs; the others in MongoDB), and the publish is
broker-confirmed before we answer 202. If the broker cannot take the task,
the record is dropped and the client gets a 503.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from amqp.exceptions import MessageNacked
from flask import Response, current_app, request
from kombu.exceptions import KombuError, OperationalError

from core import coalesce, jobs, logs, metrics, queues
from core.cache import REDIS_ERRORS
from core.clock import utcnow
from core.errors import QueueFull, ServiceUnavailable, ValidationFailed
from core.ids import new_job_id
from core.waiting import WaitersBusy
from ingress.context import prefer_wait, publisher, services, waiter
from ingress.problems import problem_response
from ingress.security import client_key, current_principal

log = logging.getLogger(__name__)
IDEMPOTENCY_KEY_MAX = 255


def publish(
    task_name: str,
    job_id: str,
    payload: dict[str, Any] | None,
    record: dict[str, Any] | None = None,
) -> None:
    """Publish `task_name` for `job_id` with its payload, or its whole queued record.

    Raises QueueFull when the queue refused the message (it holds its bound)."""
    settings = services().settings
    group_queue = queues.TASKS[task_name][1]
    queue = queues.queue_name(group_queue, settings.QUEUE_NAMESPACE)
    kwargs = {"job": record} if record is not None else {"payload": payload}
    try:
        publisher().send_task(
            task_name,
            args=[job_id],
            kwargs=kwargs,
            task_id=job_id,
            queue=queue,
            # What Flower shows for the arguments. Given here, Celery skips its
            # saferepr of them: a quarter of the ingress's Python time (py-spy).
            argsrepr=repr([job_id]),
            kwargsrepr=_clipped_repr(kwargs),
            headers={"request_id": logs.bound().get("request_id"), "enqueued_at": time.time()},
            retry=True,
            retry_policy={
                "max_retries": settings.BROKER_PUBLISH_RETRIES,
                "interval_start": 0,
                "interval_step": 0.2,
                "interval_max": 0.5,
                "errback": lambda exc, _interval: _refused(exc, group_queue),
            },
            confirm_timeout=settings.BROKER_TIMEOUT_S,
        )
    except MessageNacked as exc:  # out of retries before the errback ran (none allowed)
        _refused(exc, group_queue)


def _refused(exc: Exception, queue: str) -> None:
    """A nack is the broker's answer (the queue is full), not a fault a retry
    could mend: raise QueueFull. Called by kombu before each publish retry."""
    if not isinstance(exc, MessageNacked):
        return
    svc = services()
    bound = queues.max_length(queue, svc.settings)
    try:
        rate = metrics.drain_rate(
            svc.redis, queues.queue_name(queue, svc.settings.QUEUE_NAMESPACE), time.time()
        )
        retry_after = metrics.retry_after_full(bound, rate)
    except REDIS_ERRORS:
        retry_after = metrics.RETRY_AFTER_FULL_MAX_S
    raise QueueFull(
        f"The {queue} queue holds its whole backlog ({bound} jobs); nothing was enqueued.",
        retry_after=retry_after,
    ) from exc


ARGS_REPR_MAX = 1024


def _clipped_repr(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= ARGS_REPR_MAX else text[: ARGS_REPR_MAX - 3] + "..."


def _idempotency_key() -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    key = key.strip().strip('"')
    if not key or len(key) > IDEMPOTENCY_KEY_MAX or not key.isprintable():
        raise ValidationFailed(
            f"Idempotency-Key must be 1..{IDEMPOTENCY_KEY_MAX} printable characters.",
            errors={"Idempotency-Key": ["Invalid header value."]},
        )
    return key


def submit_job(
    task_name: str,
    body: dict[str, Any],
    links: dict[str, str],
    *,
    bulk: bool = False,
    coalesce_for: int | None = None,
    **assigned: Any,
) -> Response:
    """Record and enqueue a job; answer with it as the client asked (202 or final).

    `body` is the validated request; `assigned` holds what the ingress decided
    for it (a booking's ref_id), stored with it as the job's payload. A short
    job (queues.SHORT_TASKS) is held in Redis and travels whole in the message
    (core.jobs); the others, and any with an Idempotency-Key, are recorded in
    MongoDB first. A bulk request's items are not validated yet (the worker
    reports each by index), so it is kept as JSON text, which MongoDB stores
    whatever it holds (a 2^70 integer, a "$where" key), and not sent in the
    message.

    With `coalesce_for` (seconds), one job of this type at a time: while one is
    queued or running, it is the answer (core.coalesce); the claim lasts at
    most that long.
    """
    svc = services()
    principal = current_principal()
    job_id = new_job_id()
    job_type = queues.job_type(task_name)
    if coalesce_for is not None:
        live = coalesce.holder_or_claim(
            svc.redis, job_type, job_id, coalesce_for, lambda held: _unfinished(svc, held)
        )
        if live is not None:
            return job_response(live, wait=prefer_wait(), accepted=True)
    key = _idempotency_key()
    if key is not None:
        key = jobs.scoped_key(client_key(), f"{request.method} {request.path}", key)
    job = jobs.new_job(
        svc.settings,
        job_id=job_id,
        job_type=job_type,
        payload=jobs.job_payload(body, as_text=bulk, **assigned),
        now=utcnow(),
        links={"job": f"/api/jobs/{job_id}", **links},
        ref_id=assigned.get("ref_id"),
        customer_id=principal.customer_id,
    )
    short = task_name in queues.SHORT_TASKS
    created, record = True, None
    if key is not None or not short:
        fingerprint = jobs.request_fingerprint(request.method, request.path, body)
        job, created = jobs.record_job(
            svc.db, svc.settings, job, idempotency_key=key, fingerprint=fingerprint
        )
    if short and created:
        record = _hold_queued(svc, jobs.job_record(job))
        if record is None and key is None:  # Redis is out: MongoDB holds it instead
            job, created = jobs.record_job(svc.db, svc.settings, job)
    logs.bind(job_id=job["_id"])
    if created:
        try:
            publish(task_name, job_id, None if bulk else job["payload"], record)
        except (QueueFull, OperationalError, KombuError, OSError) as exc:
            _discard(svc, job, record, key)
            if coalesce_for is not None:
                coalesce.release(svc.redis, job_type, job_id)
            log.warning("publish failed, answered 503: %s", exc)
            if isinstance(exc, QueueFull):
                raise
            raise ServiceUnavailable("The job queue is unavailable; nothing was enqueued.") from exc
    response = job_response(job, wait=prefer_wait(), accepted=True)
    if not created:
        response.headers["Idempotent-Replayed"] = "true"
    return response


def _record_ttl(svc) -> int:
    return svc.settings.JOB_TTL_DAYS * 86_400


def _hold_queued(svc, record: dict[str, Any]) -> dict[str, Any] | None:
    """The record, held in Redis; None if Redis is out (the job then goes to MongoDB)."""
    try:
        jobs.hold_queued(svc.redis, record, _record_ttl(svc))
    except REDIS_ERRORS as exc:
        log.warning("queued record not held in Redis, recorded in MongoDB: %s", exc)
        return None
    return record


def _discard(svc, job: dict[str, Any] | None, record: dict[str, Any] | None, key: str | None):
    if record is not None:
        try:
            jobs.discard_queued(svc.redis, record, _record_ttl(svc))
        except REDIS_ERRORS as exc:  # with no record, the job is unknown all the same
            log.warning("queued record not discarded: %s", exc)
    if job is not None and (record is None or key is not None):
        jobs.discard_job(svc.db, job["_id"], key)


def _unfinished(svc, job_id: str) -> dict[str, Any] | None:
    job = jobs.find_job(svc.db, svc.redis, job_id)
    return job if job is not None and job["state"] not in jobs.FINISHED else None


def accepted_body(job: dict[str, Any]) -> dict[str, Any]:
    body = {"job_id": job["_id"], "state": job["state"]}
    ref_id = (job.get("payload") or {}).get("ref_id")
    if ref_id:
        body["ref_id"] = ref_id
    body["links"] = job["links"]
    return body


def job_response(job: dict[str, Any], *, wait: int, accepted: bool) -> Response:
    """A job as HTTP: 202 while unfinished, its final state once done.

    With `wait`, block this thread (not the process: gunicorn runs gthread
    workers) until the job finishes or `wait` seconds pass.
    """
    svc = services()
    if wait and job["state"] not in jobs.FINISHED:
        try:
            reload = lambda: jobs.find_job(svc.db, svc.redis, job["_id"])  # noqa: E731
            job = waiter().wait(job["_id"], wait, reload) or job
        except WaitersBusy:
            wait = 0  # answered now, as without Prefer: wait (202 and Retry-After)
    # A POST answers 202 (a replayed one too) unless the client chose to wait.
    finished = job["state"] in jobs.FINISHED and (wait or not accepted)
    if not finished:
        body = accepted_body(job) if accepted else jobs.public_job(job)
        response = current_app.json.response(body)
        response.status_code = 202 if accepted else 200
        response.headers["Retry-After"] = str(jobs.poll_after(job, utcnow()))
        if accepted:
            response.headers["Location"] = job["links"]["job"]
    elif job["state"] == jobs.FAILED and accepted:
        error = dict(job["error"])
        error.update(job_id=job["_id"], links=job["links"])
        response = problem_response(error)
        response.headers["Location"] = job["links"]["job"]
    else:
        response = current_app.json.response(jobs.public_job(job))
        created = accepted and job["type"] == queues.job_type(queues.CREATE_BOOKING)
        response.status_code = 201 if created else 200
        if created:
            response.headers["Location"] = job["links"]["booking"]
    if wait:
        response.headers["Preference-Applied"] = f"wait={wait}"
    return response
