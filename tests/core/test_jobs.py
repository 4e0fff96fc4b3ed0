from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest

from core import jobs
from core.clock import utcnow
from core.errors import IdempotencyKeyReused
from core.ids import new_job_id


def record(services, key=None, fingerprint="f1", now=None):
    job_id = new_job_id()
    job = jobs.new_job(
        services.settings,
        job_id=job_id,
        job_type="test",
        payload={"x": 1},
        now=now or utcnow(),
        links={"job": f"/api/jobs/{job_id}"},
    )
    return jobs.record_job(
        services.db, services.settings, job, idempotency_key=key, fingerprint=fingerprint
    )


def test_a_job_expires_after_job_ttl_days(services):
    job, created = record(services)
    assert created
    stored = jobs.get_job(services.db, job["_id"])
    assert stored["expire_at"] - stored["created_at"] == timedelta(days=7)
    ttl = [i for i in services.db.jobs.list_indexes() if "expireAfterSeconds" in i]
    assert ttl and ttl[0]["key"] == {"expire_at": 1}


def test_lifecycle_is_recorded_once(services):
    job, _ = record(services)
    now = utcnow()
    started = jobs.start_job(services.db, job["_id"], now, payload={"x": 1})
    assert started == {"_id": job["_id"], "payload": {"x": 1}}
    assert jobs.get_job(services.db, job["_id"])["state"] == "running"
    # A redelivery to a new worker while running runs again (the first died).
    assert jobs.start_job(services.db, job["_id"], now) is not None
    assert jobs.finish_job(services.db, job["_id"], now, result={"ok": 1})
    assert not jobs.finish_job(services.db, job["_id"], now, error={"status": 500})
    assert jobs.start_job(services.db, job["_id"], now) is None
    assert jobs.get_job(services.db, job["_id"])["result"] == {"ok": 1}


def test_unknown_job_is_not_started(services):
    assert jobs.start_job(services.db, new_job_id(), utcnow()) is None  # its 202 became a 503


def test_same_key_same_request_returns_the_first_job(services):
    key = new_job_id()
    first, created = record(services, key)
    again, created_again = record(services, key)
    assert created and not created_again
    assert again["_id"] == first["_id"]


def test_same_key_other_request_is_refused(services):
    key = new_job_id()
    record(services, key, fingerprint="a")
    with pytest.raises(IdempotencyKeyReused):
        record(services, key, fingerprint="b")


def test_an_expired_key_can_be_used_again(services):
    key = new_job_id()
    old, _ = record(services, key, now=utcnow() - timedelta(hours=25))
    new, created = record(services, key, fingerprint="other")
    assert created and new["_id"] != old["_id"]
    assert services.db.idempotency_keys.find_one({"_id": key})["job_id"] == new["_id"]


def test_claims_expire_after_the_window(services):
    key = new_job_id()
    record(services, key)
    claim = services.db.idempotency_keys.find_one({"_id": key})
    assert claim["expire_at"] - claim["created_at"] == timedelta(hours=24)
    ttl = [i for i in services.db.idempotency_keys.list_indexes() if "expireAfterSeconds" in i]
    assert ttl and ttl[0]["key"] == {"expire_at": 1}


def test_a_claim_whose_job_never_came_is_taken_over(services):
    key = new_job_id()
    services.db.idempotency_keys.insert_one(
        {
            "_id": key,
            "job_id": new_job_id(),
            "fingerprint": "f1",
            "created_at": utcnow() - timedelta(seconds=30),
            "expire_at": utcnow() + timedelta(hours=1),
        }
    )
    job, created = record(services, key)
    assert created and jobs.get_job(services.db, job["_id"]) is not None


def test_discarding_a_job_frees_its_key(services):
    key = new_job_id()
    job, _ = record(services, key)
    jobs.discard_job(services.db, job["_id"], key)
    assert jobs.get_job(services.db, job["_id"]) is None
    _, created = record(services, key, fingerprint="other")
    assert created


def test_concurrent_duplicates_make_one_job(services):
    key = new_job_id()
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda _: record(services, key), range(32)))
    assert len({job["_id"] for job, _ in results}) == 1
    assert sum(created for _, created in results) == 1
    assert services.db.idempotency_keys.count_documents({"_id": key}) == 1
    assert services.db.jobs.count_documents({"_id": results[0][0]["_id"]}) == 1


def test_clients_poll_every_second_then_back_off_with_the_jobs_age():
    created = utcnow()
    job = {"created_at": created}
    after = [jobs.poll_after(job, created + timedelta(seconds=s)) for s in (0, 3.9, 4, 9, 60)]
    assert after == [1, 1, 2, 4, jobs.POLL_AFTER_MAX_S]
