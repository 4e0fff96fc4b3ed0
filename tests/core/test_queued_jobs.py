"""Short jobs' records (core.queued_jobs): which of a group's deliveries are
still to do, and their outcomes written to MongoDB once."""

from core import jobs, queued_jobs
from core.clock import utcnow
from core.ids import new_job_id, new_ref_id
from tests.core.test_group_commit import DATA, create_job_of


def queued_record(settings, job_type=queued_jobs.CREATE_JOB, **payload):
    job_id = new_job_id()
    ref_id = payload.setdefault("ref_id", new_ref_id())
    job = jobs.new_job(
        settings,
        job_id=job_id,
        job_type=job_type,
        payload={"request": DATA, **payload},
        now=utcnow(),
        links={"job": f"/api/jobs/{job_id}"},
        ref_id=ref_id,
        customer_id="c-1",
    )
    return queued_jobs.job_record(job)


def finished(record, **outcome):
    return {"_id": record["_id"], "record": record, "started_at": utcnow(), **outcome}


def test_still_to_do_skips_finished_discarded_unknown_and_repeated_jobs(services, settings):
    waiting = queued_record(settings)
    queued_jobs.hold_queued(services.redis, waiting, ttl_s=60)
    done = queued_record(settings)
    assert queued_jobs.finish_many(services.db, [finished(done, result={})], utcnow()) == [
        done["_id"]
    ]
    discarded = queued_record(settings)
    queued_jobs.discard_queued(services.redis, discarded, ttl_s=60)  # its 202 became a 503
    in_mongo = create_job_of(settings, {"ref_id": new_ref_id(), "request": DATA})
    jobs.record_job(services.db, settings, in_mongo)  # an Idempotency-Key's: no record
    deliveries = [
        (waiting["_id"], waiting),
        (done["_id"], done),  # a redelivery of a finished job
        (discarded["_id"], discarded),
        (in_mongo["_id"], None),
        (new_job_id(), None),  # unknown, without a record
        (waiting["_id"], waiting),  # the same message twice in one group
    ]
    todo = queued_jobs.still_to_do(services.db, services.redis, deliveries)
    assert todo == [
        {
            "_id": waiting["_id"],
            "payload": waiting["payload"],
            "customer_id": waiting["customer_id"],
            "record": waiting,
            "stored": False,
        },
        {
            "_id": in_mongo["_id"],
            "payload": in_mongo["payload"],
            "customer_id": in_mongo["customer_id"],
            "record": None,
            "stored": True,
        },
    ]


def test_finish_many_inserts_jobs_from_their_records_once(services, settings):
    first, second = queued_record(settings), queued_record(settings)
    now = utcnow()
    written = queued_jobs.finish_many(
        services.db,
        [finished(first, result={"n": 1}), finished(second, error={"status": 422})],
        now,
    )
    assert written == [first["_id"], second["_id"]]
    job = jobs.get_job(services.db, first["_id"])
    assert (job["state"], job["result"], job["type"]) == (
        "succeeded",
        {"n": 1},
        queued_jobs.CREATE_JOB,
    )
    # What the ingress assigned comes from the record.
    assert job["customer_id"] == "c-1" and job["ref_id"] == first["payload"]["ref_id"]
    assert job["created_at"] == queued_jobs.from_record(first)["created_at"]
    assert jobs.get_job(services.db, second["_id"])["state"] == "failed"
    # A redelivery's outcome for a finished job is refused; a new job beside it is written.
    third = queued_record(settings)
    again = queued_jobs.finish_many(
        services.db,
        [finished(first, error={"status": 500}), finished(third, result={"n": 3})],
        utcnow(),
    )
    assert again == [third["_id"]]
    job = jobs.get_job(services.db, first["_id"])
    assert (job["state"], job["result"], job["error"]) == ("succeeded", {"n": 1}, None)
    assert services.db.jobs.count_documents({"_id": first["_id"]}) == 1


def test_finish_many_finishes_a_job_recorded_in_mongodb(services, settings):
    recorded = create_job_of(settings, {"request": DATA})
    jobs.record_job(services.db, settings, recorded)
    outcome = {
        "_id": recorded["_id"],
        "record": None,
        "stored": True,
        "started_at": utcnow(),
        "result": {},
    }
    assert queued_jobs.finish_many(services.db, [outcome], utcnow()) == [recorded["_id"]]
    assert jobs.get_job(services.db, recorded["_id"])["state"] == "succeeded"
