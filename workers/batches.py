"""Group commit: a task that takes up to GROUP_COMMIT_SIZE messages at a time
(celery-batches) and runs their jobs together, one write per collection.

Every guarantee of a single job (workers.running) holds for each message:
- it is acked only after the group's writes committed; one to try again is
  republished with its backoff first (as Celery's retry does), then acked;
- a redelivered message has one effect (core.group_commit keys every write);
- each job gets its own outcome, and its finished notice (Prefer: wait);
- every job ends: transient errors retry up to TASK_MAX_RETRIES, then fail
  (core.retries).
A group whose pool process died is requeued whole; a worker killed outright
leaves its unacked messages to RabbitMQ's redelivery.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable
from datetime import datetime
from queue import Queue
from typing import Any

from celery_batches import Batches, SimpleRequest
from celery_batches.trace import apply_batches_task
from kombu.exceptions import KombuError, OperationalError

from core import jobs, metrics, queued_jobs, queues, retries
from core.clock import utcnow
from core.errors import TRANSIENT_ERRORS, RadiantError
from core.services import Services
from core.settings import Settings
from workers import runtime, webhooks
from workers.running import instance, retry_options, unavailable, unexpected

log = logging.getLogger(__name__)

# The jobs still to do -> for each, in order, its result or the error that refused it.
WorkMany = Callable[[Services, list[dict[str, Any]]], list[dict[str, Any] | Exception]]
# What jobs that end failed on a give-up or a bug must undo before they end (core.work).
Abandon = Callable[[Services, list[dict[str, Any]]], None]


class GroupCommit(Batches):
    """celery-batches' Batches, sized from settings; each message acked or
    requeued as run_group answers, and a group lost with its pool process requeued."""

    abstract = True
    acks_late = True

    def Strategy(self, task, app, consumer):
        settings = app.conf.radiantgo_settings
        self.flush_every = settings.GROUP_COMMIT_SIZE
        self.flush_interval = settings.GROUP_COMMIT_WAIT_MS / 1000
        # Called again when the consumer restarts (a lost broker connection):
        # the flush timer died with the old consumer, and the messages still
        # buffered can no longer be acked on their closed channel (RabbitMQ
        # redelivers them). Start clean, or nothing is flushed on a timer again.
        if self._tref is not None:
            self._tref.cancel()
        self._tref = None
        self._buffer, self._pending, self._count = Queue(), Queue(), itertools.count(1)
        return super().Strategy(task, app, consumer)

    def flush(self, requests):
        def settle(requeue: Any) -> None:
            # A list from run_group; anything else means it never returned.
            again = set(requeue) if isinstance(requeue, list) else {r.id for r in requests}
            for request in requests:
                if request.id in again:
                    request.reject(requeue=True)
                else:
                    request.acknowledge()

        def lost(_exc_info: Any) -> None:
            settle(None)

        simple = [SimpleRequest.from_request(r) for r in requests]
        return self._pool.apply_async(
            apply_batches_task, (self, (simple,), 0, None), callback=settle, error_callback=lost
        )


def run_group(
    task: GroupCommit, requests: list[SimpleRequest], work: WorkMany, abandon: Abandon | None = None
) -> list[str]:
    """Run the jobs of `requests` through `work` and record their outcomes;
    returns the ids of the messages to requeue as they are (only when a retry
    could not be republished): every other message is acked. Jobs that end
    failed on a give-up or a bug go through `abandon` first."""
    started, began = utcnow(), time.perf_counter()
    by_id = {_job_id(r): r for r in requests}
    try:
        svc = runtime.worker_services()
        deliveries = [(_job_id(r), r.kwargs.get("job")) for r in requests]
        todo = queued_jobs.still_to_do(svc.db, svc.redis, deliveries)
        outcomes = _work(svc, todo, work)
        again, finished, abandoned = [], [], []
        for job, outcome in zip(todo, outcomes, strict=True):
            if _transient(outcome) and not _exhausted(by_id[job["_id"]], svc.settings):
                again.append(job)
                continue
            finished.append(_finished(job, outcome, started, svc.settings))
            if _unplanned(outcome):
                abandoned.append(job)
        _abandon(svc, abandon, abandoned)
        queued_jobs.finish_many(svc.db, finished, utcnow())
    except (*TRANSIENT_ERRORS, _GroupUnavailable) as exc:
        log.warning("a group of %d not committed, retrying: %s", len(requests), exc)
        return _fail_or_retry(task, requests, exc, abandon)
    _after_commit(svc, finished)
    _record(svc, task, requests, finished, time.perf_counter() - began)
    return _republish(task, [by_id[job["_id"]] for job in again])


class _GroupUnavailable(Exception):
    """A transient RadiantError raised for the whole group (a lock service down)."""


def _work(svc: Services, todo: list[dict[str, Any]], work: WorkMany) -> list[Any]:
    if not todo:
        return []
    try:
        return work(svc, todo)
    except RadiantError as exc:
        if exc.transient:
            raise _GroupUnavailable(exc.detail) from exc
        return [exc] * len(todo)
    except TRANSIENT_ERRORS:
        raise
    except Exception as exc:  # a bug, or data nobody foresaw: a retry would fail alike
        log.exception("a group failed on an unexpected error")
        return [exc] * len(todo)


def _unplanned(outcome: Any) -> bool:
    """A failure that may have left work half done: a give-up on a service
    down, or a bug (a refusal, such as a full flight, undoes its own work)."""
    if isinstance(outcome, RadiantError):
        return outcome.transient
    return isinstance(outcome, Exception)


def _abandon(svc: Services, abandon: Abandon | None, ended: list[dict[str, Any]]) -> None:
    """`abandon` the jobs about to end failed; a service down is raised (the
    group then retries or requeues), a bug is logged (core.ledger reports
    whatever was left)."""
    if abandon is None or not ended:
        return
    try:
        abandon(svc, ended)
    except (*TRANSIENT_ERRORS, _GroupUnavailable):
        raise
    except Exception as exc:  # the jobs' own failure is logged already, with its traceback
        if isinstance(exc, RadiantError) and exc.transient:
            raise _GroupUnavailable(exc.detail) from exc
        log.error("failed jobs not undone (the ledger check reports what they left): %r", exc)


def _job_id(request: SimpleRequest) -> str:
    return request.args[0]


def _transient(outcome: Any) -> bool:
    return isinstance(outcome, RadiantError) and outcome.transient


def _retries(request: SimpleRequest) -> int:
    return int((request.request_dict or {}).get("retries") or 0)


def _exhausted(request: SimpleRequest, settings: Settings) -> bool:
    return retries.exhausted(_retries(request), settings)


def _finished(
    job: dict[str, Any], outcome: Any, started: datetime, settings: Settings
) -> dict[str, Any]:
    finished = {
        "_id": job["_id"],
        "record": job["record"],
        "stored": job["stored"],
        "started_at": started,
    }
    if isinstance(outcome, RadiantError):
        if outcome.transient:
            outcome.detail = retries.gave_up(outcome.detail, settings)
        finished["error"] = outcome.to_problem(instance=instance(job["_id"]))
    elif isinstance(outcome, Exception):
        finished["error"] = unexpected(outcome, job["_id"])
    else:
        finished["result"] = outcome
    return finished


def _fail_or_retry(
    task: GroupCommit, requests: list[SimpleRequest], exc: Exception, abandon: Abandon | None
) -> list[str]:
    """The whole group met a service down: retry each message with its backoff;
    those out of retries are abandoned and fail (if that can be written; else
    requeued)."""
    settings = runtime.worker_settings()
    spent = [r for r in requests if _exhausted(r, settings)]
    requeue = _republish(task, [r for r in requests if not _exhausted(r, settings)])
    if spent:
        problem = unavailable(exc)
        problem.detail = retries.gave_up(problem.detail, settings)
        try:
            svc = runtime.worker_services()
            ids = [_job_id(r) for r in spent]
            found = svc.db.jobs.find({"_id": {"$in": ids}}, {"payload": 1, "state": 1})
            stored = {job["_id"]: job for job in found}
            _abandon(svc, abandon, _unfinished(spent, stored))
            finished = [
                {
                    "_id": _job_id(r),
                    "record": r.kwargs.get("job"),
                    "stored": _job_id(r) in stored,
                    "started_at": utcnow(),
                    "error": problem.to_problem(instance=instance(_job_id(r))),
                }
                for r in spent
            ]
            queued_jobs.finish_many(svc.db, finished, utcnow())
            _after_commit(svc, finished)
        except (*TRANSIENT_ERRORS, _GroupUnavailable):
            requeue += [r.id for r in spent]  # the failure is a write too: later
    return requeue


def _unfinished(
    requests: list[SimpleRequest], stored: dict[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    """The jobs of `requests` ({"_id", "payload"}) known and not finished yet."""
    unfinished = []
    for request in requests:
        job_id, record = _job_id(request), request.kwargs.get("job")
        job = stored.get(job_id)
        if job is not None and job["state"] not in jobs.FINISHED:
            unfinished.append({"_id": job_id, "payload": job["payload"]})
        elif job is None and record is not None:
            unfinished.append({"_id": job_id, "payload": record["payload"]})
    return unfinished


def _republish(task: GroupCommit, requests: list[SimpleRequest]) -> list[str]:
    """Each message again, after its backoff, with one more retry counted;
    the ids of those that could not be published (requeued as they are)."""
    failed = []
    for request in requests:
        retried = _retries(request)
        headers = request.request_dict or {}
        try:
            task.app.send_task(
                task.name,
                args=request.args,
                kwargs=request.kwargs,
                task_id=request.id,
                **retry_options(runtime.worker_settings(), task.name, retried),
                retries=retried + 1,
                headers={k: headers.get(k) for k in ("request_id", "enqueued_at")},
            )
        except (OperationalError, KombuError, OSError) as exc:
            log.warning("retry of %s not published, requeued: %s", request.id, exc)
            failed.append(request.id)
    return failed


def _after_commit(svc: Services, finished: list[dict[str, Any]]) -> None:
    """Best-effort, the outcomes being committed: records expire, notices go
    out, webhooks are dispatched."""
    webhooks.ask_dispatch(svc)
    records = [f["record"] for f in finished if f.get("record") is not None]
    try:
        if records:
            failed = {f["_id"] for f in finished if f.get("error") is not None}
            queued_jobs.release_queued(svc.redis, records, failed)
        for f in finished:
            if f.get("record") is None:
                svc.redis.publish(jobs.JOB_FINISHED_CHANNEL, f["_id"])
    except TRANSIENT_ERRORS as exc:
        log.warning("finished notices not sent (waiters poll): %s", exc)


def _record(
    svc: Services,
    task: GroupCommit,
    requests: list[SimpleRequest],
    finished: list[dict[str, Any]],
    seconds: float,
) -> None:
    now = time.time()
    waits = []
    for request in requests:
        enqueued = (request.request_dict or {}).get("enqueued_at")
        if isinstance(enqueued, int | float):
            waits.append((now - seconds - enqueued) * 1000)
    try:
        metrics.record_tasks(
            svc.redis,
            task.name.rsplit(".", 1)[-1],
            wait_ms=waits,
            run_ms=seconds * 1000 / max(1, len(requests)),
            count=len(requests),  # deliveries taken off the queue, redeliveries too
            failed=sum(1 for f in finished if f.get("error") is not None),
            queue=queues.queue_name(queues.TASKS[task.name][1], svc.settings.QUEUE_NAMESPACE),
            now=now,
        )
    except Exception as exc:  # metrics must never fail a group
        log.warning("group metrics not recorded: %s", exc)
