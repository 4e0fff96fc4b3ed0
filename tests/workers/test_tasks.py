"""workers/tasks.py: the task bodies run in this process (Task.apply), and the
beat schedule celeryconfig gives them. End to end through a real worker:
tests/system."""

import logging

import pytest

from core import coalesce, jobs, queued_jobs, queues
from core.ids import new_ref_id
from tests.conftest import booking_body, recorded_job

WARM = queues.job_type(queues.WARM_CACHE)


@pytest.fixture
def tasks(settings):
    """workers.tasks, its Celery app installed as a worker process installs it."""
    from celeryconfig import create_celery_app
    from workers import runtime

    runtime.install(create_celery_app(settings))
    from workers import tasks

    return tasks


def test_the_task_run_twice_in_process_is_idempotent(tasks, services, settings):
    """The same task body executed twice (as after a lost ack) has one effect."""
    ref_id = new_ref_id()
    job_id = recorded_job(
        settings, services, "booking.create", {"request": booking_body(), "ref_id": ref_id}
    )
    payload = jobs.get_job(services.db, job_id)["payload"]
    tasks.create_bookings.apply(args=[job_id], kwargs={"payload": payload})
    finished = jobs.get_job(services.db, job_id)
    tasks.create_bookings.apply(args=[job_id], kwargs={"payload": payload})
    # Force the "worker died after writing, before acking" path: job back to running.
    services.db.jobs.update_one({"_id": job_id}, {"$set": {"state": "running"}})
    tasks.create_bookings.apply(args=[job_id])
    assert services.db.bookings.count_documents({"ref_id": ref_id}) == 1
    assert services.db.booking_events.count_documents({"booking_id": ref_id}) == 1
    assert jobs.get_job(services.db, job_id)["result"] == finished["result"]


def test_an_unexpected_exception_in_process_fails_the_job_and_logs_it(
    tasks, settings, services, caplog
):
    """A payload without its ref_id (a KeyError in the work)."""
    job_id = recorded_job(settings, services, "booking.create", {"request": booking_body()})
    payload = jobs.get_job(services.db, job_id)["payload"]
    with caplog.at_level(logging.ERROR, logger="workers.running"):
        tasks.create_bookings.apply(args=[job_id], kwargs={"payload": payload})
    job = jobs.get_job(services.db, job_id)
    assert job["state"] == "failed"
    assert job["error"]["status"] == 500 and "KeyError" in job["error"]["detail"]
    assert job["started_at"] is not None  # a short job, never marked running
    (logged,) = [r for r in caplog.records if r.exc_info]
    assert logged.exc_info[0] is KeyError  # the traceback is in the log
    # A redelivery of a finished job does nothing: it stays as it ended.
    tasks.create_bookings.apply(
        args=[job_id], kwargs={"payload": {**payload, "ref_id": new_ref_id()}}
    )
    assert jobs.get_job(services.db, job_id)["finished_at"] == job["finished_at"]
    assert services.db.bookings.count_documents({"job_id": job_id}) == 0


def test_beat_skips_its_turn_while_a_warm_job_holds_the_claim(tasks, app, services):
    assert coalesce.holder_or_claim(services.redis, WARM, "held-by-a-job", 60, dict().get) is None
    try:
        assert tasks.warm_cache_on_schedule.apply().get() is None  # skipped
    finally:
        coalesce.release(services.redis, WARM, "held-by-a-job")
    assert isinstance(tasks.warm_cache_on_schedule.apply().get(), dict)  # its turn: a warm ran


def test_beat_schedules_warming_more_often_than_routes_expire(settings):
    from celeryconfig import create_celery_app

    schedule = create_celery_app(settings).conf.beat_schedule
    entry = next(e for e in schedule.values() if e["task"] == queues.WARM_CACHE_ON_SCHEDULE)
    answer_ttl = min(settings.CACHE_TTL_ROUTES, settings.CACHE_TTL_BOOKINGS)
    assert entry["schedule"] == settings.CACHE_WARM_INTERVAL < answer_ttl


# -- jobs that give up after taking cargo space give it back ------------------------------


@pytest.fixture
def giving_up(tasks, services, settings, monkeypatch):
    """The worker's services with no retries left and a database whose first
    bookings insert fails (AutoReconnect): after the space was taken."""
    from types import SimpleNamespace

    from core.settings import replace
    from tests.faulty import FaultyDatabase
    from workers import runtime

    spent = replace(settings, TASK_MAX_RETRIES=0)
    faulty = FaultyDatabase(services.db, fail_on="bookings.insert_many")
    svc = SimpleNamespace(
        settings=spent,
        db=faulty,
        redis=services.redis,
        cache=services.cache,
        locks=services.locks,
        awb_stock=services.awb_stock,
    )
    monkeypatch.setattr(runtime, "worker_services", lambda: svc)
    monkeypatch.setattr(runtime, "worker_settings", lambda: spent)
    return faulty


def _flight(services, tag: str) -> str:
    from tests.core.test_reservations import new_flight

    return new_flight(services, 1000, origin="GUA", destination="GUB", hour=10)


def _ledger_of(services, fid):
    from core import ledger

    (found,) = ledger.audit(services.db, [fid])
    return found


def test_a_create_that_gives_up_after_taking_space_gives_it_back(
    tasks, giving_up, services, settings
):
    fid = _flight(services, "GU")
    body = booking_body(origin="GUA", destination="GUB", weight_kg=100, flight_ids=[fid])
    job_id = recorded_job(
        settings, services, "booking.create", {"request": body, "ref_id": new_ref_id()}
    )
    payload = jobs.get_job(services.db, job_id)["payload"]
    tasks.create_bookings.apply(args=[job_id], kwargs={"payload": payload})
    assert giving_up.writes.count("bookings.insert_many") == 1  # the fault was met
    job = jobs.get_job(services.db, job_id)
    assert job["state"] == "failed" and job["error"]["detail"].startswith("Gave up after 0")
    found = _ledger_of(services, fid)
    assert (found.booked_g, found.reserved_g, found.marked) == (0, 0, [])


def test_a_bulk_create_that_gives_up_after_taking_space_gives_it_back(
    tasks, giving_up, services, settings
):
    import json

    fid = _flight(services, "GB")
    items = [booking_body(origin="GUA", destination="GUB", weight_kg=100, flight_ids=[fid])] * 3
    request = {"bookings": items}
    job_id = recorded_job(
        settings,
        services,
        queues.job_type(queues.IMPORT_BOOKINGS),
        {"request_json": json.dumps(request)},
    )
    tasks.import_bookings.apply(args=[job_id])
    assert giving_up.writes.count("bookings.insert_many") == 1
    job = jobs.get_job(services.db, job_id)
    assert job["state"] == "failed" and job["error"]["detail"].startswith("Gave up after 0")
    found = _ledger_of(services, fid)
    assert (found.booked_g, found.reserved_g, found.marked) == (0, 0, [])


def test_beat_audits_the_cargo_ledger_and_keeps_its_totals(tasks, settings, services):
    from celeryconfig import create_celery_app
    from core import ledger

    schedule = create_celery_app(settings).conf.beat_schedule
    entry = next(e for e in schedule.values() if e["task"] == queues.CHECK_LEDGER)
    assert entry["schedule"] == settings.LEDGER_CHECK_INTERVAL
    services.redis.delete(ledger.LAST_CHECK)
    totals = tasks.check_ledger.apply().get()
    assert totals["flights_checked"] > 0
    assert ledger.last_check(services.redis)["flights_checked"] == totals["flights_checked"]


def test_beat_sends_unconfirmed_jobs_again(tasks, settings, services):
    """The task beat runs: a held job still queued is published again, confirmed,
    and no longer held (into this session's bookings queue, for the session's
    worker if a test started it)."""
    import time

    from celeryconfig import create_celery_app
    from core import outbox

    schedule = create_celery_app(settings).conf.beat_schedule
    entry = next(e for e in schedule.values() if e["task"] == queues.RESEND_UNCONFIRMED)
    assert entry["schedule"] == settings.UNCONFIRMED_RESEND_S
    payload = {"request": booking_body(), "ref_id": new_ref_id()}
    job_id = recorded_job(settings, services, queued_jobs.CREATE_JOB, payload)
    services.redis.zadd(outbox.UNCONFIRMED, {job_id: time.time() - 3600})
    assert tasks.resend_unconfirmed.apply().get()["sent"] >= 1
    assert services.redis.zscore(outbox.UNCONFIRMED, job_id) is None
