"""Accepting work over HTTP: the request made a Submission, handed to
core.accepting (which records the job before it publishes), and the job as the
answer: 202 and its URL, or, with `Prefer: wait=N`, its final state.

`publish` is the ingress's side of the promise: the Celery app built by
celeryconfig sends the task by name, broker-confirmed (celeryconfig.publish_job);
a nack (the queue holds its bound) is QueueFull, an unreachable broker
ServiceUnavailable, a publish the broker may have taken without confirming it
PublishUnconfirmed.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from flask import Response, current_app, request

from celeryconfig import publish_job
from core import accepting, backpressure, jobs, logs, queued_jobs, queues
from core.clock import utcnow
from core.errors import REDIS_ERRORS, ValidationFailed
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
    """Publish `task_name` for `job_id` with its payload, or its whole queued
    record, broker-confirmed (celeryconfig.publish_job): QueueFull when the
    queue refused it, with a Retry-After from how fast the queue drains."""
    publish_job(
        publisher(),
        task_name,
        job_id,
        payload,
        record,
        request_id=logs.bound().get("request_id"),
        full_retry_after=_full_retry_after,
    )


def _full_retry_after(queue: str) -> int:
    """Seconds until `queue` has drained what it holds, at the rate it drained lately."""
    svc = services()
    bound = queues.max_length(queue, svc.settings)
    try:
        rate = backpressure.drain_rate(
            svc.redis, queues.queue_name(queue, svc.settings.QUEUE_NAMESPACE), time.time()
        )
        return backpressure.retry_after_full(bound, rate)
    except REDIS_ERRORS:
        return backpressure.RETRY_AFTER_FULL_MAX_S


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
    """Accept a job for `body` (the validated request) and answer with it as the
    client asked (202, or its final state). `assigned` holds what the ingress
    decided for it (a booking's ref_id). With `coalesce_for` (seconds), one job
    of this type at a time (core.accepting.accept_one_at_a_time)."""
    submission = accepting.Submission(
        task_name,
        body,
        links,
        current_principal().customer_id,
        assigned,
        bulk=bulk,
        **_idempotency(body),
    )
    svc = services()
    if coalesce_for is not None:
        accepted = accepting.accept_one_at_a_time(svc, publish, submission, coalesce_for)
    else:
        accepted = accepting.accept_job(svc, publish, submission)
    logs.bind(job_id=accepted.job["_id"])
    response = job_response(accepted.job, wait=prefer_wait(), accepted=True)
    if accepted.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return response


def retried_after_acceptance(body: dict[str, Any]) -> bool:
    """Whether this request repeats one accepted before under its Idempotency-Key:
    it is answered that job, whatever has happened since (the job may have run)."""
    claim = _idempotency(body)
    return bool(claim) and jobs.key_claimed(services().db, claim["idempotency_key"])


def _idempotency(body: dict[str, Any]) -> dict[str, str]:
    """The request's Idempotency-Key, scoped to its client and endpoint, and
    what makes a second request with it "the same"; nothing without one."""
    key = _idempotency_key()
    if key is None:
        return {}
    endpoint = f"{request.method} {request.path}"
    return {
        "idempotency_key": jobs.scoped_key(client_key(), endpoint, key),
        "fingerprint": jobs.request_fingerprint(request.method, request.path, body),
    }


def accepted_body(job: dict[str, Any]) -> dict[str, Any]:
    body = {"job_id": job["_id"], "state": job["state"]}
    payload = job.get("payload") or {}
    for name in ("ref_id", "awb"):  # a create's booking, as the ingress named it
        if payload.get(name):
            body[name] = payload[name]
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
            reload = lambda: queued_jobs.find_job(svc.db, svc.redis, job["_id"])  # noqa: E731
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
        created = accepted and job["type"] == queues.job_type(queues.CREATE_BOOKINGS)
        response.status_code = 201 if created else 200
        if created:
            response.headers["Location"] = job["links"]["booking"]
    if wait:
        response.headers["Preference-Applied"] = f"wait={wait}"
    return response
