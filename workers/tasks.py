"""Celery tasks: thin adapters from a job id to a core function."""

from __future__ import annotations

import logging
import time

from celery import shared_task

from core import (
    bookings,
    bulk,
    coalesce,
    flights,
    group_commit,
    invalidation,
    jobs,
    queues,
    routes,
)
from core import cache as caches
from core.clock import utcnow
from core.errors import NotReady
from core.locks import BULK_LOCK_TTL, LockHeld, bulk_lock_key
from core.metrics import sample_queue_depths
from workers import runtime
from workers.batches import GroupCommit, run_group
from workers.jobs import run_job

log = logging.getLogger(__name__)


def invalidate_booking(svc, booking: dict) -> None:
    """After a committed booking write; best-effort (core.invalidation)."""
    invalidation.booking_written(svc.cache, booking, svc.settings.CACHE_TTL_BOOKINGS)


@shared_task(base=GroupCommit, bind=True, name=queues.CREATE_BOOKING)
def create_booking(self, requests) -> list[str]:
    return run_group(self, requests, create_bookings)


def create_bookings(svc, todo: list[dict]) -> list:
    created = group_commit.create_many(
        svc.db,
        svc.locks,
        [{**job["payload"], "job_id": job["_id"]} for job in todo],
        now=utcnow(),
        min_connection_minutes=svc.settings.MIN_CONNECTION_MINUTES,
    )
    return [_written(svc, outcome) for outcome in created]


@shared_task(base=GroupCommit, bind=True, name=queues.TRANSITION_BOOKING)
def transition_booking(self, requests) -> list[str]:
    return run_group(self, requests, transition_bookings)


def transition_bookings(svc, todo: list[dict]) -> list:
    moved = group_commit.transition_many(
        svc.db,
        svc.locks,
        svc.redis,
        [{**job["payload"], "job_id": job["_id"]} for job in todo],
        clock=utcnow,
    )
    return [_written(svc, outcome) for outcome in moved]


def _written(svc, outcome):
    """A job's result once its booking was written (its cache told), or its error."""
    if isinstance(outcome, Exception):
        return outcome
    invalidate_booking(svc, outcome)
    return {"booking": bookings.public_booking(outcome)}


@shared_task(bind=True, name=queues.IMPORT_FLIGHTS)
def import_flights(self, job_id: str, payload: dict | None = None) -> None:
    def work(svc, job):
        payload = job["payload"]
        items = jobs.job_request(payload)["flights"]
        # One importer per job at a time (a redelivery racing a slow first
        # delivery); every write is an upsert, so a rerun is harmless anyway.
        # A runner that died holds the lock until its TTL: the redelivery
        # retries the job with backoff rather than failing it as "locked".
        key = bulk_lock_key("flights", payload["accepted_at"])
        try:
            held = svc.locks.acquire(key, BULK_LOCK_TTL, max_attempts=BULK_LOCK_TRIES)
        except LockHeld:
            raise NotReady("Another run of this import holds its lock; retrying.") from None
        try:
            result = flights.import_flights(
                svc.db,
                svc.locks,
                items,
                chunk_size=svc.settings.BULK_CHUNK_SIZE,
                default_capacity_kg=svc.settings.DEFAULT_FLIGHT_CAPACITY_KG,
                total=len(items),
                on_progress=lambda progress: jobs.set_progress(svc.db, job_id, progress),
            )
        finally:
            svc.locks.release(held)
        invalidation.flights_imported(svc.cache)
        return result

    run_job(self, job_id, payload, work)


@shared_task(bind=True, name=queues.BULK_CREATE_BOOKINGS)
def bulk_create_bookings(self, job_id: str, payload: dict | None = None) -> None:
    def work(svc, job):
        request = jobs.job_request(job["payload"])
        result = bulk.create_bookings(
            svc.db,
            svc.locks,
            request["bookings"],
            customer_id=request.get("customer_id"),
            job_id=job_id,
            now=utcnow(),
            chunk_size=svc.settings.BULK_CHUNK_SIZE,
            min_connection_minutes=svc.settings.MIN_CONNECTION_MINUTES,
            on_progress=lambda progress: jobs.set_progress(svc.db, job_id, progress),
        )
        invalidation.bookings_written(svc.cache)
        return result

    run_job(self, job_id, payload, work)


@shared_task(bind=True, name=queues.BULK_UPDATE_STATUS)
def bulk_update_status(self, job_id: str, payload: dict | None = None) -> None:
    def work(svc, job):
        return bulk.update_statuses(
            svc.db,
            svc.locks,
            jobs.job_request(job["payload"])["updates"],
            job_id=job_id,
            clock=utcnow,
            queued_records=svc.redis,
            chunk_size=svc.settings.BULK_CHUNK_SIZE,
            on_changed=lambda booking: invalidate_booking(svc, booking),
            on_progress=lambda progress: jobs.set_progress(svc.db, job_id, progress),
        )

    run_job(self, job_id, payload, work)


BULK_LOCK_TRIES = 3


@shared_task(bind=True, name=queues.WARM_CACHE)
def warm_cache(self, job_id: str | None = None, payload: dict | None = None) -> dict | None:
    """Beat runs this every CACHE_WARM_INTERVAL (no job); the admin endpoint, as a job."""

    def work(svc, job):
        settings = svc.settings
        popular = routes.popular_routes(
            svc.cache, settings.POPULAR_ROUTES, settings.WARM_TOP_ROUTES
        )
        warmed = routes.warm_routes(
            svc.db,
            svc.cache,
            popular,
            today=utcnow().date(),
            min_connection_minutes=settings.MIN_CONNECTION_MINUTES,
            ttl=caches.space_ttl(settings.CACHE_TTL_ROUTES, settings.CACHE_TTL_BOOKINGS),
            max_routes=settings.WARM_MAX_ROUTES,
        )
        if job is not None:  # the next warm request starts a new job
            coalesce.release(svc.redis, WARM_JOB, job["_id"])
        return warmed

    if job_id is None:
        svc = runtime.services()
        held = coalesce.holder(svc.redis, WARM_JOB)
        if held is not None:
            log.info("warm job %s is queued or running: beat skips its turn", held)
            return None
        return work(svc, None)
    run_job(self, job_id, payload, work)
    return None


WARM_JOB = queues.job_type(queues.WARM_CACHE)


@shared_task(name=queues.NOOP)
def noop(*args, **kwargs) -> None:
    """Does nothing: the broker-and-worker floor that benchmarks compare against."""


@shared_task(bind=True, name=queues.SAMPLE_QUEUE_DEPTHS, ignore_result=True)
def sample_depths(self) -> None:
    svc = runtime.services()
    with self.app.connection_for_read() as connection:
        sample_queue_depths(svc.redis, connection.default_channel, svc.settings, time.time())
