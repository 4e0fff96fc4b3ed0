"""Jobs whose publish the broker may have taken without confirming it.

A publish whose confirm never came (a timeout, a connection lost while
waiting) may have reached the queue or not; nobody can tell. Such a job is
neither discarded nor reported as refused: it is held here (a sorted set of
job ids by when its publish went unconfirmed), and beat sends it again
(resend_due) until a publish is confirmed or the job has run. A second
message of a job is harmless: a job that finished drops it, and every write
a job makes is keyed to run once (core.group_commit, core.jobs). So an
unconfirmed job runs at least once, like any other job its client was
answered 202 for, and its Idempotency-Key keeps naming it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import redis
from pymongo.database import Database

from core import jobs, queued_jobs, queues
from core.errors import PublishUnconfirmed, ServiceUnavailable

log = logging.getLogger(__name__)

# Sorted set: job id -> epoch seconds its last publish went unconfirmed.
UNCONFIRMED = "jobs:unconfirmed"
RESEND_BATCH = 500

# publish(task_name, job_id, payload, record), as core.accepting takes it.
Publish = Callable[[str, str, "dict[str, Any] | None", "dict[str, Any] | None"], None]


def hold(client: redis.Redis, job_id: str, now: float) -> None:
    client.zadd(UNCONFIRMED, {job_id: now})


def confirmed(client: redis.Redis, job_id: str) -> None:
    """The job's publish was confirmed (or it was dropped): nothing to send again."""
    client.zrem(UNCONFIRMED, job_id)


def held(client: redis.Redis) -> int:
    return client.zcard(UNCONFIRMED)


def resend_due(
    db: Database, client: redis.Redis, publish: Publish, *, now: float, grace_s: float
) -> dict[str, int]:
    """Publish again each job held for `grace_s` or more that is still queued
    (its first message may have run meanwhile); drop those confirmed now or
    no longer queued. Returns how many were sent, ended, or left for later."""
    counts = {"sent": 0, "ended": 0, "later": 0}
    for job_id in client.zrangebyscore(UNCONFIRMED, "-inf", now - grace_s, 0, RESEND_BATCH):
        message = _message(db, client, job_id)
        if message is None:
            client.zrem(UNCONFIRMED, job_id)
            counts["ended"] += 1
            continue
        try:
            publish(*message)
        except PublishUnconfirmed:
            client.zadd(UNCONFIRMED, {job_id: now})  # again, after another grace
            counts["later"] += 1
            continue
        except ServiceUnavailable as exc:  # the broker is down, or the queue full: next round
            log.warning("unconfirmed jobs not sent again yet: %s", exc.detail)
            counts["later"] += 1
            break
        client.zrem(UNCONFIRMED, job_id)
        counts["sent"] += 1
    return counts


def _message(
    db: Database, client: redis.Redis, job_id: str
) -> tuple[str, str, None, dict[str, Any] | None] | None:
    """The publish that sends `job_id` again, if it is still queued: a job
    MongoDB holds goes by its id alone (the worker reads it there), a short
    job with its queued record. None once it has run, or is gone."""
    stored = jobs.get_job(db, job_id)
    if stored is not None:
        if stored["state"] != jobs.QUEUED:
            return None
        return queues.task_of(stored["type"]), job_id, None, None
    raw = client.get(queued_jobs.queued_key(job_id))
    if raw is None or raw == queued_jobs.DISCARDED:
        return None
    record = json.loads(raw)
    return queues.task_of(record["type"]), job_id, None, record
