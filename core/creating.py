"""A booking between its 202 and its document: the job that creates it.

A client holds a booking's reference from the moment its create is accepted,
before a worker has stored the booking. Until then the create's job says
whether the booking is still coming (queued, running) or never will (failed).
"""

from __future__ import annotations

from typing import Any

import redis
from pymongo.database import Database

from core import queued_jobs
from core.errors import REDIS_ERRORS


def create_job(db: Database, client: redis.Redis, ref_id: str) -> dict[str, Any] | None:
    """The job creating booking `ref_id`, wherever it is now (core.queued_jobs.find_job);
    None if there is none: never accepted, discarded, or expired (JOB_TTL_DAYS)."""
    try:
        held = client.get(
            queued_jobs.creating_key(ref_id)
        )  # "<job_id> <customer_id>" while it runs
    except REDIS_ERRORS:  # with Redis out, creates are recorded in MongoDB
        held = None
    if held is not None:
        return queued_jobs.find_job(db, client, held.partition(" ")[0])
    # Equality on the indexed field alone: with more fields in the filter the
    # embedded server's planner falls back to a collection scan (core.jobs).
    for job in db.jobs.find({"ref_id": ref_id}):
        if job["type"] == queued_jobs.CREATE_JOB:
            return job
    return None
