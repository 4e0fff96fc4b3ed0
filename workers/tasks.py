"""Celery tasks: thin adapters from a job id to a core function."""

from __future__ import annotations

import time

from celery import shared_task

from core import bookings, cache, queues, transitions
from core.clock import utcnow
from core.metrics import sample_queue_depths
from workers import runtime
from workers.jobs import run_job


def invalidate_booking(svc, booking: dict) -> None:
    """After a booking write: its details and every cached list page are stale."""
    key = cache.booking_details_key(booking["ref_id"])
    svc.cache.invalidate_versioned(key, booking["version"], svc.settings.CACHE_TTL_BOOKINGS)
    svc.cache.bump_generation(cache.BOOKING_PAGES_GENERATION)


@shared_task(bind=True, name=queues.CREATE_BOOKING)
def create_booking(self, job_id: str, payload: dict | None = None) -> None:
    def work(svc, job):
        payload = job["payload"]
        booking = bookings.create_booking(
            svc.db, ref_id=payload["ref_id"], data=payload["request"], job_id=job_id, now=utcnow()
        )
        invalidate_booking(svc, booking)
        return {"booking": bookings.public_booking(booking)}

    run_job(self, job_id, payload, work)


@shared_task(bind=True, name=queues.TRANSITION_BOOKING)
def transition_booking(self, job_id: str, payload: dict | None = None) -> None:
    def work(svc, job):
        payload = job["payload"]
        booking = transitions.transition_booking(
            svc.db,
            svc.locks,
            ref_id=payload["ref_id"],
            target=payload["target"],
            job_id=job_id,
            data=payload["request"],
            now=utcnow(),
        )
        invalidate_booking(svc, booking)
        return {"booking": bookings.public_booking(booking)}

    run_job(self, job_id, payload, work)


@shared_task(name=queues.NOOP)
def noop(*args, **kwargs) -> None:
    """Does nothing: the broker-and-worker floor that benchmarks compare against."""


@shared_task(bind=True, name=queues.SAMPLE_QUEUE_DEPTHS, ignore_result=True)
def sample_depths(self) -> None:
    svc = runtime.services()
    with self.app.connection_for_read() as connection:
        sample_queue_depths(svc.redis, connection.default_channel, svc.settings, time.time())
