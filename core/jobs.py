"""Job records: what the ingress promised with a 202, and what became of it.

Two ways in, one way out:
- A short job (a booking's create or transition) is accepted without a
  MongoDB round trip: its queued record goes to Redis and travels in the
  message, and the worker writes the job to MongoDB once, in its final state
  (core.queued_jobs).
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
from datetime import datetime, timedelta
from typing import Any

from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from core.errors import IdempotencyKeyInProgress, IdempotencyKeyReused
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


def start_job(
    db: Database, job_id: str, now: datetime, payload: dict[str, Any] | None = None
) -> dict[str, Any] | None:
    """Mark a long job running (clients watch its progress); return {"_id",
    "payload"} of a job still to do, None if nothing is left to do. A job unknown
    here (its 202 became a 503) or already finished (a redelivery) is skipped,
    and one found running was delivered to a worker that died: it runs again
    (every task is idempotent). Short jobs start in groups: core.queued_jobs.still_to_do."""
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
    must never keep a job from ending. (Short jobs: core.queued_jobs.finish_many.)"""
    update: dict[str, Any] = {
        "state": FAILED if error is not None else SUCCEEDED,
        "finished_at": now,
        "result": storable(result),
        "error": storable(error),
        "dispatched": False,  # its webhook, if any (core.notifications), written with it
    }
    unfinished = {"_id": job_id, "state": {"$in": [QUEUED, RUNNING]}}
    return db.jobs.update_one(unfinished, {"$set": update}).modified_count == 1


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


POLL_AFTER_MAX_S = 10


def poll_after(job: dict[str, Any], now: datetime) -> int:
    """Seconds a client should wait before polling an unfinished job again.

    One second while the job is young; then half its age, up to
    POLL_AFTER_MAX_S. A job that has waited long sits behind a backlog, and
    polling it every second only adds to the load that delays it (under
    load, the polls crowd out new requests). Half its age keeps what a client
    can learn late to half of what it has waited so far.
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
