"""Short jobs' queued records in Redis, and short jobs run in groups.

A short job (a booking's create or transition) is accepted without a MongoDB
round trip: its queued record goes to Redis (hold_queued) and travels in the
message; while it is queued, readers find it there (find_job). The worker
takes a group of them (still_to_do) and writes each job to MongoDB once, in
its final state (finish_many). Job documents themselves: core.jobs.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any

import redis
from pymongo import UpdateOne
from pymongo.database import Database

from core import queues
from core.awb import claim_key, failed_key, taken
from core.db import insert_many_new
from core.errors import REDIS_ERRORS
from core.jobs import (
    FAILED,
    FINISHED,
    JOB_FINISHED_CHANNEL,
    QUEUED,
    RUNNING,
    SUCCEEDED,
    get_job,
    storable,
)

# -- queued records in Redis (short jobs) ----------------------------------------------

# A short job's record while it is queued: the job as JSON, for JOB_TTL_DAYS
# (the bounded queues drain long before; the TTL only bounds a record whose
# worker never came). Once the job is in MongoDB the record lingers for
# FINISHED_RECORD_TTL_S, so a reader that missed MongoDB a moment before the
# worker's write still finds the job (queued: a moment stale, never wrong).
FINISHED_RECORD_TTL_S = 60
# What a record becomes when its publish failed (the client got a 503): a
# message the broker took after all (a lost confirm) is then dropped unrun.
DISCARDED = "discarded"
CREATE_JOB = queues.job_type(queues.CREATE_BOOKINGS)


def queued_key(job_id: str) -> str:
    return f"jobs:queued:{job_id}"


def creating_key(ref_id: str) -> str:
    """A booking being created: "<job_id> <customer_id>", set with the create's
    record and dropped when the create ends, so a transition accepted meanwhile
    is told "not ready" rather than "no such booking"."""
    return f"jobs:creating:{ref_id}"


def job_record(job: dict[str, Any]) -> dict[str, Any]:
    """`job` as JSON can carry it (in a message, in Redis): times as epoch ms."""
    record = dict(job)
    for name in ("created_at", "expire_at"):
        record[name] = int(job[name].timestamp() * 1000)
    for name in ("started_at", "finished_at"):
        record.pop(name, None)
    return record


def from_record(record: dict[str, Any]) -> dict[str, Any]:
    job = dict(record)
    for name in ("created_at", "expire_at"):
        job[name] = datetime.fromtimestamp(record[name] / 1000, UTC)
    job.setdefault("started_at", None)
    job.setdefault("finished_at", None)
    return job


def _awb(record: dict[str, Any]) -> str | None:
    """The AWB a create's record claims (core.awb); None for any other job."""
    return record["payload"].get("awb") if record["type"] == CREATE_JOB else None


def hold_queued(client: redis.Redis, record: dict[str, Any], ttl_s: int) -> None:
    """Keep a short job's queued record where find_job looks, and a create's
    claim on its AWB (one round trip). AwbTaken, and nothing kept, if another
    create holds that AWB."""
    pipe = client.pipeline(transaction=False)
    awb = _awb(record)
    if awb is not None:
        pipe.set(claim_key(awb), record["ref_id"], nx=True, ex=ttl_s)
    pipe.set(queued_key(record["_id"]), json.dumps(record, separators=(",", ":")), ex=ttl_s)
    if record["type"] == CREATE_JOB:
        owner = record.get("customer_id") or ""
        pipe.set(creating_key(record["ref_id"]), f"{record['_id']} {owner}", ex=ttl_s)
    claimed = pipe.execute()[0]
    if awb is not None and not claimed:
        # Never published, never answered: no one knows this job.
        client.delete(queued_key(record["_id"]), creating_key(record["ref_id"]))
        raise taken(awb)


def discard_queued(client: redis.Redis, record: dict[str, Any], ttl_s: int) -> None:
    """The publish failed: the job is not found, and never runs if delivered after all."""
    pipe = client.pipeline(transaction=False)
    pipe.set(queued_key(record["_id"]), DISCARDED, ex=ttl_s)
    if record["type"] == CREATE_JOB:
        pipe.delete(creating_key(record["ref_id"]))
    if _awb(record) is not None:
        pipe.delete(claim_key(_awb(record)))
    pipe.execute()


def release_queued(
    client: redis.Redis, records: list[dict[str, Any]], failed: Collection[str] = ()
) -> None:
    """After their outcomes are in MongoDB: records expire soon, creates are no
    longer pending, and their AWBs no longer claimed (a stored booking holds
    its AWB by the unique index; a failed create's, jobs `failed`, is free
    again, and names the failed create as long as its job is kept)."""
    pipe = client.pipeline(transaction=False)
    for record in records:
        pipe.expire(queued_key(record["_id"]), FINISHED_RECORD_TTL_S)
        if record["type"] == CREATE_JOB:
            pipe.delete(creating_key(record["ref_id"]))
        awb = _awb(record)
        if awb is not None:
            if record["_id"] in failed:  # before the claim goes: a reader sees one or the other
                pipe.set(failed_key(awb), record["ref_id"], pxat=record["expire_at"])
            pipe.delete(claim_key(awb))
        pipe.publish(JOB_FINISHED_CHANNEL, record["_id"])
    pipe.execute()


def find_job(db: Database, client: redis.Redis, job_id: str) -> dict[str, Any] | None:
    """A job wherever it is now: in MongoDB once a worker wrote it (or if it was
    recorded there when accepted), else as its queued record in Redis."""
    job = get_job(db, job_id)
    if job is not None:
        return job
    try:
        raw = client.get(queued_key(job_id))
    except REDIS_ERRORS:  # with Redis out, short jobs are recorded in MongoDB
        return None
    if raw is None or raw == DISCARDED:
        return None
    return from_record(json.loads(raw))


# -- many at once (group commit) ------------------------------------------------------


def still_to_do(
    db: Database, client: redis.Redis, deliveries: list[tuple[str, dict[str, Any] | None]]
) -> list[dict[str, Any]]:
    """Of (job_id, queued record or None) deliveries, the jobs still to do, each as
    {"_id", "payload", "customer_id" (its submitter), "record", "stored"}, with
    one MongoDB read and one Redis read: not finished in MongoDB (a
    redelivery), not discarded (its 202 became a 503), once each. A job without
    a record (accepted while Redis was out) is read from MongoDB, and one
    MongoDB does not know is dropped."""
    ids = [job_id for job_id, _ in deliveries]
    stored = {
        job["_id"]: job
        for job in db.jobs.find({"_id": {"$in": ids}}, {"state": 1, "payload": 1, "customer_id": 1})
    }
    unstored = [record["_id"] for job_id, record in deliveries if record and job_id not in stored]
    discarded: set[str] = set()
    if unstored:
        try:
            states = client.mget([queued_key(job_id) for job_id in unstored])
            discarded = {
                job_id for job_id, raw in zip(unstored, states, strict=True) if raw == DISCARDED
            }
        except REDIS_ERRORS:
            # With Redis out the jobs run: a discarded job delivered after all
            # (a lost confirm, then Redis failing too) is rarer than the jobs a
            # Redis outage would otherwise fail.
            pass
    todo, seen = [], set()
    for job_id, record in deliveries:
        job = stored.get(job_id)
        if job_id in seen or job_id in discarded or (job is not None and job["state"] in FINISHED):
            continue
        if job is None and record is None:
            continue  # unknown: its 202 became a 503
        seen.add(job_id)
        source = record if record is not None else job
        todo.append(
            {
                "_id": job_id,
                "payload": source["payload"],
                "customer_id": source.get("customer_id"),
                "record": record,
                "stored": job is not None,
            }
        )
    return todo


def finish_many(db: Database, outcomes: list[dict[str, Any]], now: datetime) -> list[str]:
    """Record many jobs' outcomes (finish_job for each of {"_id", "record",
    "stored", "started_at", and "result" or "error"}) with one insert of the
    jobs MongoDB does not hold yet (a short job's, from its record) and one
    conditional update of those it holds. Returns the ids written: those it
    inserted (less those an earlier delivery had inserted), and all it asked to
    update (a bulk update does not say which matched an unfinished job)."""
    inserts, updates = [], []
    for outcome in outcomes:
        final: dict[str, Any] = {
            "state": FAILED if outcome.get("error") is not None else SUCCEEDED,
            "finished_at": now,
            "started_at": outcome["started_at"],
            "result": storable(outcome.get("result")),
            "error": storable(outcome.get("error")),
        }
        if outcome.get("error") is not None:
            final["dispatched"] = False  # its booking.failed webhook (core.notifications)
        record = outcome.get("record")
        if record is not None and not outcome.get("stored"):
            inserts.append((outcome["_id"], {**from_record(record), **final}))
        else:
            unfinished = {"_id": outcome["_id"], "state": {"$in": [QUEUED, RUNNING]}}
            updates.append((outcome["_id"], UpdateOne(unfinished, {"$set": final})))
    written = [job_id for job_id, _ in updates]
    if updates:
        db.jobs.bulk_write([update for _, update in updates], ordered=False)
    if inserts:
        # Refused: an earlier delivery wrote it.
        refused = set(insert_many_new(db.jobs, [doc for _, doc in inserts]))
        written += [job_id for n, (job_id, _) in enumerate(inserts) if n not in refused]
    return written


def pending_create(db: Database, client: redis.Redis, ref_id: str) -> dict[str, Any] | None:
    """The create of booking `ref_id` while it is queued or running ({"customer_id"}):
    by its mark in Redis, else as a job recorded in MongoDB (an Idempotency-Key's,
    or one accepted while Redis was out)."""
    try:
        held = client.get(creating_key(ref_id))
    except REDIS_ERRORS:
        held = None
    if held is not None:
        _job_id, _, owner = held.partition(" ")
        return {"customer_id": owner or None}
    # Equality on the indexed field alone: with more fields in the filter the
    # embedded server's planner falls back to a collection scan (measured).
    for job in db.jobs.find({"ref_id": ref_id}, {"type": 1, "state": 1, "customer_id": 1}):
        if job["type"] == CREATE_JOB and job["state"] in (QUEUED, RUNNING):
            return {"customer_id": job.get("customer_id")}
    return None
