"""Job records: what the ingress promised with a 202, and what became of it.

Two ways in, one way out:
- A short job (a booking's create or transition) is accepted without a
  MongoDB round trip: its queued record goes to Redis (hold_queued) and
  travels in the message, and the worker writes the job to MongoDB once, in
  its final state (finish_many). While it is queued, readers find it in Redis
  (find_job).
- Long jobs (imports, bulk, cache warming), and any job with an
  Idempotency-Key (whose claim must be durable), are recorded in MongoDB
  before their task is published; the worker moves them
  queued -> (running ->) succeeded | failed.
Either way the outcome is written with a conditional update, so a redelivered
message finds the job finished and does nothing twice. A job stays in MongoDB
until JOB_TTL_DAYS after it was accepted.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Collection
from datetime import UTC, datetime, timedelta
from typing import Any

import redis
from pymongo import UpdateOne
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from core import queues
from core.awb import claim_key, failed_key, taken
from core.db import insert_many_new
from core.errors import REDIS_ERRORS, IdempotencyKeyInProgress, IdempotencyKeyReused
from core.settings import Settings

QUEUED, RUNNING, SUCCEEDED, FAILED = "queued", "running", "succeeded", "failed"
FINISHED = (SUCCEEDED, FAILED)
# Published on Redis with the job id when a job finishes, for `Prefer: wait`.
JOB_FINISHED_CHANNEL = "jobs:finished"


def job_payload(body: dict[str, Any], *, as_text: bool = False, **assigned: Any) -> dict[str, Any]:
    """What a job stores: the request (as a document, or as JSON text for bulk
    requests whose items are still unvalidated) and what the ingress assigned."""
    if as_text:
        return {"request_json": json.dumps(body, separators=(",", ":")), **assigned}
    return {"request": body, **assigned}


def job_request(payload: dict[str, Any]) -> dict[str, Any]:
    """The request a job was accepted with, whichever way it was stored."""
    if "request_json" in payload:
        return json.loads(payload["request_json"])
    return payload["request"]


def request_fingerprint(method: str, path: str, body: Any) -> str:
    """What makes two requests "the same" for an Idempotency-Key."""
    canonical = json.dumps([method, path, body], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def scoped_key(client: str, endpoint: str, idempotency_key: str) -> str:
    """An Idempotency-Key as claimed: the client's own, for one endpoint, so two
    clients sending the same key never share a job or squat each other's keys."""
    return f"{client} {endpoint} {idempotency_key}"


def new_job(
    settings: Settings,
    *,
    job_id: str,
    job_type: str,
    payload: dict[str, Any],
    now: datetime,
    links: dict[str, str],
    ref_id: str | None = None,
    customer_id: str | None = None,
) -> dict[str, Any]:
    """A queued job submitted by `customer_id` (None: the admin, or a guest)."""
    doc: dict[str, Any] = {
        "_id": job_id,
        "type": job_type,
        "state": QUEUED,
        "payload": payload,
        "links": links,
        "created_at": now,
        "started_at": None,
        "finished_at": None,
        "result": None,
        "error": None,
        "customer_id": customer_id,
        "expire_at": now + timedelta(days=settings.JOB_TTL_DAYS),
    }
    if ref_id is not None:
        doc["ref_id"] = ref_id  # the booking this job is about (indexed)
    return doc


def record_job(
    db: Database,
    settings: Settings,
    doc: dict[str, Any],
    *,
    idempotency_key: str | None = None,
    fingerprint: str | None = None,
) -> tuple[dict[str, Any], bool]:
    """Insert queued job `doc` in MongoDB; returns (job, created).

    With an idempotency key, the key is claimed first in `idempotency_keys`
    (its `_id`, so concurrent duplicates race on the primary key: exactly one
    claim wins, and the others answer with the winner's job). The key is the
    caller's: see scoped_key.
    """
    job_id, now = doc["_id"], doc["created_at"]
    if idempotency_key is None:
        db.jobs.insert_one(doc)
        return doc, True
    window = timedelta(hours=settings.IDEMPOTENCY_TTL_HOURS)
    claim = {
        "_id": idempotency_key,
        "job_id": job_id,
        "fingerprint": fingerprint,
        "created_at": now,
        "expire_at": now + window,
    }
    for _ in range(3):
        try:
            db.idempotency_keys.insert_one(claim)
        except DuplicateKeyError:
            existing = _replay(db, idempotency_key, fingerprint, now, window)
            if existing is not None:
                return existing, False
            continue  # the old claim was stale and is gone: claim again
        try:
            db.jobs.insert_one(doc)
        except Exception:
            release_key(db, idempotency_key, job_id)
            raise
        return doc, True
    raise IdempotencyKeyInProgress("This Idempotency-Key is contended; retry the request.")


CLAIM_GRACE = timedelta(seconds=5)


def _replay(
    db: Database, key: str, fingerprint: str | None, now: datetime, window: timedelta
) -> dict[str, Any] | None:
    """The job a live claim on `key` stands for; None once a stale claim is dropped."""
    claim = db.idempotency_keys.find_one({"_id": key})
    if claim is None:
        return None
    if claim["created_at"] < now - window:  # expired, the TTL monitor has not run yet
        release_key(db, key, claim["job_id"])
        return None
    if claim.get("fingerprint") != fingerprint:
        raise IdempotencyKeyReused(
            "This Idempotency-Key was already used with a different request."
        )
    # The winner inserts its job right after its claim: give it a moment.
    for _ in range(50):
        job = db.jobs.find_one({"_id": claim["job_id"]})
        if job is not None:
            return job
        time.sleep(0.01)
    if claim["created_at"] < now - CLAIM_GRACE:  # its claimer died before recording
        release_key(db, key, claim["job_id"])
        return None
    raise IdempotencyKeyInProgress("A request with this Idempotency-Key is in progress.")


def key_claimed(db: Database, key: str) -> bool:
    """Whether a request with this (scoped) Idempotency-Key was accepted before."""
    return db.idempotency_keys.count_documents({"_id": key}, limit=1) > 0


def release_key(db: Database, key: str, job_id: str) -> None:
    """Drop a claim, only if it is still the one for `job_id`."""
    db.idempotency_keys.delete_one({"_id": key, "job_id": job_id})


def discard_job(db: Database, job_id: str, idempotency_key: str | None = None) -> None:
    """Forget a job whose task could not be published (the client got a 503)."""
    db.jobs.delete_one({"_id": job_id, "state": QUEUED})
    if idempotency_key is not None:
        release_key(db, idempotency_key, job_id)


def get_job(db: Database, job_id: str) -> dict[str, Any] | None:
    return db.jobs.find_one({"_id": job_id})


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
CREATE_JOB = queues.job_type(queues.CREATE_BOOKING)


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


def start_job(
    db: Database, job_id: str, now: datetime, payload: dict[str, Any] | None = None
) -> dict[str, Any] | None:
    """Mark a long job running (clients watch its progress); return {"_id",
    "payload"} of a job still to do, None if nothing is left to do. A job unknown
    here (its 202 became a 503) or already finished (a redelivery) is skipped,
    and one found running was delivered to a worker that died: it runs again
    (every task is idempotent). Short jobs start in groups: still_to_do."""
    result = db.jobs.update_one(
        {"_id": job_id, "state": QUEUED},
        {"$set": {"state": RUNNING, "started_at": now}},
    )
    if result.modified_count == 1 and payload is not None:
        return {"_id": job_id, "payload": payload}
    job = db.jobs.find_one({"_id": job_id}, {"payload": 1, "state": 1, "customer_id": 1})
    if job is None or job["state"] in FINISHED:
        return None
    return job


def finish_job(
    db: Database,
    job_id: str,
    now: datetime,
    *,
    result: dict[str, Any] | None = None,
    error: dict[str, Any] | None = None,
) -> bool:
    """Record a long job's outcome once; False if it was already finished.

    The outcome is made storable first (see storable): client text it echoes
    must never keep a job from ending. (Short jobs: finish_many.)"""
    update: dict[str, Any] = {
        "state": FAILED if error is not None else SUCCEEDED,
        "finished_at": now,
        "result": storable(result),
        "error": storable(error),
        "dispatched": False,  # its webhook, if any (core.notifications), written with it
    }
    unfinished = {"_id": job_id, "state": {"$in": [QUEUED, RUNNING]}}
    return db.jobs.update_one(unfinished, {"$set": update}).modified_count == 1


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


def storable(value: Any) -> Any:
    """`value` as BSON can store it: text that is not valid Unicode (a lone
    surrogate) backslash-escaped, keys made strings without NUL bytes.

    A job's outcome echoes what clients sent: a bulk item's ref_id, unknown
    field names and list indexes in a problem's errors. JSON lets all of those
    through, and BSON refuses them (UnicodeEncodeError, InvalidDocument)."""
    if isinstance(value, str):
        return _text(value)
    if isinstance(value, dict):
        return {_text(str(k)).replace("\x00", "\\u0000"): storable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [storable(v) for v in value]
    return value


def _text(text: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def set_progress(db: Database, job_id: str, progress: dict[str, int]) -> None:
    db.jobs.update_one({"_id": job_id, "state": RUNNING}, {"$set": {"progress": progress}})


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


POLL_AFTER_MAX_S = 10


def poll_after(job: dict[str, Any], now: datetime) -> int:
    """Seconds a client should wait before polling an unfinished job again.

    One second while the job is young; then half its age, up to
    POLL_AFTER_MAX_S. A job that has waited long sits behind a backlog, and
    polling it every second only adds to the load that delays it (Locust,
    status updates at 10x the spec's peak: 10.7 polls per job, and the polls
    crowded out the POSTs). Half its age keeps what a client can learn late
    to half of what it has waited so far.
    """
    age = (now - job["created_at"]).total_seconds()
    return max(1, min(POLL_AFTER_MAX_S, int(age // 2)))


def public_job(job: dict[str, Any]) -> dict[str, Any]:
    body = {
        "job_id": job["_id"],
        "type": job["type"],
        "state": job["state"],
        "created_at": job["created_at"],
        "started_at": job.get("started_at"),
        "finished_at": job.get("finished_at"),
        "result": job.get("result"),
        "error": job.get("error"),
        "links": job.get("links") or {},
    }
    if "progress" in job:
        body["progress"] = job["progress"]
    return body
