"""Accepting a job: record it, publish its task, and keep the 202's promise.

The order is the promise: the job is recorded before its task is published,
and the publish is broker-confirmed before the client hears "accepted". If the
broker did not take the task, the record is dropped and the caller answers 503.
If it may have taken it without confirming (PublishUnconfirmed), nothing is
dropped: the job is held to be sent again until a publish is confirmed
(core.outbox), so it runs, and is accepted like any other; its Idempotency-Key
keeps naming it. Only if it cannot even be held does the client hear 503, with
the job named, since it may run all the same.

Where the record lives:
- a short job (queues.SHORT_TASKS: a create, a transition) is held in Redis and
  travels whole in its message; the worker writes it to MongoDB when it takes
  it (core.jobs). No MongoDB round trip on the accept path;
- the others, and any job with an Idempotency-Key (a durable claim), are
  recorded in MongoDB first;
- with Redis out, a short job is recorded in MongoDB instead.

The publish itself is the caller's (the ingress's Celery app): a function that
raises QueueFull when the queue refused the message, ServiceUnavailable when
the broker cannot be reached, PublishUnconfirmed when it may have taken it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from core import awb, coalesce, jobs, outbox, queued_jobs, queues
from core.clock import utcnow
from core.errors import REDIS_ERRORS, AwbTaken, PublishUnconfirmed
from core.ids import new_job_id
from core.services import Services

log = logging.getLogger(__name__)

# publish(task_name, job_id, payload, record): the payload, or the whole queued record
Publish = outbox.Publish


@dataclass(frozen=True)
class Submission:
    """A validated request to run `task_name`, as the ingress decided it.

    `assigned` is what the ingress chose for the job (a booking's ref_id and AWB),
    stored with the request as its payload. A `bulk` request's items are not
    validated yet (the worker reports each by index), so it is kept as JSON
    text, which MongoDB stores whatever it holds (a 2^70 integer, a "$where"
    key), and not sent in the message. With `idempotency_key` (already scoped
    to its client and endpoint), `fingerprint` says what "the same request" is.
    """

    task_name: str
    body: dict[str, Any]
    links: dict[str, str]
    customer_id: str | None
    assigned: dict[str, Any] = field(default_factory=dict)
    bulk: bool = False
    idempotency_key: str | None = None
    fingerprint: str | None = None


@dataclass(frozen=True)
class Accepted:
    job: dict[str, Any]
    created: bool  # False: an earlier job is the answer
    replayed: bool = False  # the earlier job is the one its Idempotency-Key names


def accept_job(
    svc: Services, publish: Publish, submission: Submission, *, job_id: str | None = None
) -> Accepted:
    """Record and publish a new job; or answer with the earlier job that an
    Idempotency-Key names. When the broker does not take the task, nothing is
    left behind and publish's error (QueueFull, ServiceUnavailable) goes on."""
    job = _new_job(svc, submission, job_id or new_job_id())
    key = submission.idempotency_key
    short = submission.task_name in queues.SHORT_TASKS
    created, record = True, None
    durable = key is not None or not short
    if durable:
        job, created = _record_held(svc, job, submission)
    if short and created:
        try:
            _check_awb_free(svc, submission)
            record = _hold_queued(svc, queued_jobs.job_record(job))
        except AwbTaken:
            if key is not None:  # recorded first, published never: forgotten
                _discard(svc, job, None, key)
            raise
        if record is None and key is None:  # Redis is out: MongoDB holds it instead
            job, created = jobs.record_job(svc.db, svc.settings, job)
    if created:
        try:
            publish(
                submission.task_name,
                job["_id"],
                None if submission.bulk else job["payload"],
                record,
            )
        except PublishUnconfirmed as exc:
            _hold_unconfirmed(svc, job, exc)
        except BaseException:
            _discard(svc, job, record, key)
            raise
        else:
            if durable:
                _confirmed(svc, job["_id"])
    return Accepted(job, created, replayed=not created)


def _record_held(
    svc: Services, job: dict[str, Any], submission: Submission
) -> tuple[dict[str, Any], bool]:
    """jobs.record_job, the new job held to be sent again (core.outbox) from
    before it is recorded until its publish is confirmed: should this process
    die in between, beat sends it. A replay's earlier job is left as it is."""
    _hold_until_confirmed(svc, job["_id"])
    try:
        recorded, created = jobs.record_job(
            svc.db,
            svc.settings,
            job,
            idempotency_key=submission.idempotency_key,
            fingerprint=submission.fingerprint,
        )
    except BaseException:
        _confirmed(svc, job["_id"])
        raise
    if not created:
        _confirmed(svc, job["_id"])
    return recorded, created


def _hold_until_confirmed(svc: Services, job_id: str) -> None:
    try:
        outbox.hold(svc.redis, job_id, time.time())
    except REDIS_ERRORS as exc:  # Redis out: accepted all the same, as before
        log.warning("job %s not held until its publish is confirmed: %s", job_id, exc)


def _confirmed(svc: Services, job_id: str) -> None:
    try:
        outbox.confirmed(svc.redis, job_id)
    except REDIS_ERRORS as exc:  # beat drops it once it has run
        log.warning("job %s still held as unconfirmed: %s", job_id, exc)


def _hold_unconfirmed(svc: Services, job: dict[str, Any], exc: PublishUnconfirmed) -> None:
    """Keep a job whose publish may have been taken, to be sent again; if it
    cannot be held, the 503 names the job, which may still run."""
    try:
        outbox.hold(svc.redis, job["_id"], time.time())
    except REDIS_ERRORS:
        log.error("unconfirmed job %s not held for sending again", job["_id"])
        exc.detail = (
            f"{exc.detail} It may run: poll {job['links']['job']}; a retry with the same"
            " Idempotency-Key answers with this job."
        )
        exc.extra.update(job_id=job["_id"], links=job["links"])
        raise exc from None
    log.warning("job %s held to be sent again: %s", job["_id"], exc.detail)


def accept_one_at_a_time(
    svc: Services, publish: Publish, submission: Submission, claim_s: int
) -> Accepted:
    """As accept_job, but one job of this type at a time: while one is queued or
    running, it is the answer (core.coalesce); the claim lasts at most `claim_s`."""
    job_type = queues.job_type(submission.task_name)
    job_id = new_job_id()
    live = coalesce.holder_or_claim(
        svc.redis, job_type, job_id, claim_s, lambda held: _unfinished(svc, held)
    )
    if live is not None:
        return Accepted(live, False)
    try:
        return accept_job(svc, publish, submission, job_id=job_id)
    except BaseException:
        coalesce.release(svc.redis, job_type, job_id)
        raise


def _new_job(svc: Services, submission: Submission, job_id: str) -> dict[str, Any]:
    return jobs.new_job(
        svc.settings,
        job_id=job_id,
        job_type=queues.job_type(submission.task_name),
        payload=jobs.job_payload(submission.body, as_text=submission.bulk, **submission.assigned),
        now=utcnow(),
        links={"job": f"/api/jobs/{job_id}", **submission.links},
        ref_id=submission.assigned.get("ref_id"),
        customer_id=submission.customer_id,
    )


def _check_awb_free(svc: Services, submission: Submission) -> None:
    """A create bringing its own AWB: AwbTaken if a stored booking holds it (a
    queued create's claim is checked as its record is held). Checked only for
    a new job: a replay of an Idempotency-Key is answered by its own job."""
    if "awb" in submission.body:
        awb.check_free(svc.db, submission.body["awb"])


def _record_ttl(svc: Services) -> int:
    return svc.settings.JOB_TTL_DAYS * 86_400


def _hold_queued(svc: Services, record: dict[str, Any]) -> dict[str, Any] | None:
    """The record, held in Redis; None if Redis is out (the job then goes to MongoDB)."""
    try:
        queued_jobs.hold_queued(svc.redis, record, _record_ttl(svc))
    except REDIS_ERRORS as exc:
        log.warning("queued record not held in Redis, recorded in MongoDB: %s", exc)
        return None
    return record


def _discard(
    svc: Services, job: dict[str, Any], record: dict[str, Any] | None, key: str | None
) -> None:
    if record is not None:
        try:
            queued_jobs.discard_queued(svc.redis, record, _record_ttl(svc))
        except REDIS_ERRORS as exc:  # with no record, the job is unknown all the same
            log.warning("queued record not discarded: %s", exc)
    if record is None or key is not None:
        jobs.discard_job(svc.db, job["_id"], key)
    _confirmed(svc, job["_id"])


def _unfinished(svc: Services, job_id: str) -> dict[str, Any] | None:
    job = queued_jobs.find_job(svc.db, svc.redis, job_id)
    return job if job is not None and job["state"] not in jobs.FINISHED else None
