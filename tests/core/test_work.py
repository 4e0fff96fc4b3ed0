"""core.work: each job type's use case, run in this process on the real stores
(the Celery tasks that adapt them are tested through a worker in tests/workers)."""

from __future__ import annotations

import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from core import awb, cache_keys, coalesce, jobs, queues, route_answers, warming, work
from core.clock import utcnow
from core.errors import NotReady
from core.ids import new_job_id, new_ref_id
from core.locks import BULK_LOCK_TTL, bulk_lock_key


def _job(services, task_name: str, body: dict, **assigned) -> dict:
    job = jobs.new_job(
        services.settings,
        job_id=new_job_id(),
        job_type=queues.job_type(task_name),
        payload=jobs.job_payload(body, as_text=True, **assigned),
        now=utcnow(),
        links={},
    )
    jobs.record_job(services.db, services.settings, job)
    return jobs.start_job(services.db, job["_id"], utcnow())  # as the worker takes it


def _schedule(prefix: str) -> list[dict]:
    day = datetime(2035, 3, 1, 6, tzinfo=UTC)
    return [
        {
            "flight_number": f"{prefix}{n:04d}",
            "airline": "Work Air",
            "origin": "KWA",
            "destination": "KWB",
            "departure_ts": (day + timedelta(hours=n)).isoformat(),
            "arrival_ts": (day + timedelta(hours=n + 2)).isoformat(),
        }
        for n in range(3)
    ]


def test_a_flight_import_stores_the_schedule_and_makes_cached_routes_stale(services):
    before = services.cache.generation(cache_keys.ROUTES_GENERATION)
    job = _job(services, queues.IMPORT_FLIGHTS, {"flights": _schedule("WK")}, accepted_at=1)
    result = work.import_flights(services, job)
    assert (result["succeeded"], result["failed"]) == (3, 0)
    assert services.db.flights.count_documents({"flight_number": {"$regex": "^WK"}}) == 3
    assert services.cache.generation(cache_keys.ROUTES_GENERATION) > before
    assert jobs.get_job(services.db, job["_id"])["progress"]["done"] == 3


def test_a_flight_import_waits_while_another_run_of_it_holds_its_lock(services):
    accepted_at = int(uuid.uuid4().int % 10**9)
    body = {"flights": _schedule("WL")}
    job = _job(services, queues.IMPORT_FLIGHTS, body, accepted_at=accepted_at)
    held = services.locks.acquire(bulk_lock_key("flights", accepted_at), BULK_LOCK_TTL)
    try:
        with pytest.raises(NotReady):
            work.import_flights(services, job)
    finally:
        services.locks.release(held)
    assert services.db.flights.count_documents({"flight_number": {"$regex": "^WL"}}) == 0


def test_created_bookings_are_answered_public_and_their_cache_told(services):
    ref_id = new_ref_id()
    key = cache_keys.booking_details_key(ref_id)
    services.redis.set(key, "stale", ex=60)
    job = {
        "_id": new_job_id(),
        "payload": {
            "request": {"origin": "KWA", "destination": "KWB", "pieces": 1, "weight_kg": 5.0},
            "ref_id": ref_id,
            "customer_id": None,
        },
    }
    [outcome] = work.create_bookings(services, [job])
    assert outcome["booking"]["ref_id"] == ref_id and "_id" not in outcome["booking"]
    assert services.db.bookings.count_documents({"ref_id": ref_id}) == 1
    assert services.redis.get(key) != "stale"


def test_a_create_accepted_without_an_awb_gets_one_from_its_worker(services):
    """The door could not issue one (MongoDB was out): the worker does."""
    ref_id = new_ref_id()
    request = {"origin": "KWA", "destination": "KWB", "pieces": 1, "weight_kg": 5.0}
    job = {"_id": new_job_id(), "payload": {"request": request, "ref_id": ref_id, "awb": None}}
    [outcome] = work.create_bookings(services, [job])
    issued = outcome["booking"]["awb"]
    assert issued.startswith(services.settings.AWB_PREFIX + "-")
    assert awb.broken_rule(issued) is None
    assert services.db.bookings.find_one({"ref_id": ref_id})["awb"] == issued


def test_beat_skips_its_warm_while_a_warm_job_holds_the_claim(services):
    warm = queues.job_type(queues.WARM_CACHE)
    assert coalesce.holder_or_claim(services.redis, warm, "a-job", 60, dict().get) is None
    try:
        assert work.warm_cache_on_schedule(services) is None
    finally:
        coalesce.release(services.redis, warm, "a-job")
    assert isinstance(work.warm_cache_on_schedule(services), dict)


def test_warming_warms_the_routes_searched_lately_and_no_others(services):
    """Beat's warm: the routes searched in the last WARM_RECENT_S (the configured
    and most searched ones aside), not the whole network."""
    quiet = replace(
        services, settings=replace(services.settings, POPULAR_ROUTES="", WARM_TOP_ROUTES=0)
    )
    services.redis.delete(route_answers.SEARCHED_AT, route_answers.SEARCHES, warming.WARMED)
    today = utcnow().date()
    route_answers.answer_search(
        services.db,
        services.cache,
        services.settings,
        origin="KSA",
        destination="KSB",
        day=today,
        limit=10,
    )
    long_ago = time.time() - 2 * services.settings.WARM_RECENT_S
    services.cache.touch(route_answers.SEARCHED_AT, "KSC-KSD", long_ago, capacity=10)
    services.redis.delete(cache_keys.route_key("KSA", "KSB", today))
    services.cache.flush_counts()  # as the ingress does every FLUSH_INTERVAL_S
    warmed = work.warm_popular_routes(quiet)
    assert warmed["routes"] == 1 and warmed["computed"] == 2
    assert services.redis.exists(cache_keys.route_key("KSA", "KSB", today))
    assert services.redis.exists(cache_keys.route_key("KSA", "KSB", today + timedelta(days=1)))
    assert not services.redis.exists(cache_keys.route_key("KSC", "KSD", today))


def test_space_given_back_by_an_abandoned_create_makes_warmed_routes_stale(services):
    """A give-back moves flights' space without a booking written: the warmer's
    change marker (the bookings generation) must move too."""
    job = {
        "_id": new_job_id(),
        "payload": {
            "request": {"origin": "KWA", "destination": "KWB", "pieces": 1, "weight_kg": 5.0},
            "ref_id": new_ref_id(),
        },
    }
    before = services.cache.generation(cache_keys.BOOKING_PAGES_GENERATION)
    work.abandon_creates(services, [job])
    assert services.cache.generation(cache_keys.BOOKING_PAGES_GENERATION) > before
