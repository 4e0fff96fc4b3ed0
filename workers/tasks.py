"""Celery tasks: thin adapters from a message to a use case in core.work."""

from __future__ import annotations

import time
from functools import partial

from celery import shared_task

from celeryconfig import publish_job
from core import queues, work
from core.metrics import sample_queue_depths, sample_webhook_backlog
from workers import runtime, webhooks
from workers.batches import GroupCommit, run_group
from workers.running import run_job


@shared_task(base=GroupCommit, bind=True, name=queues.CREATE_BOOKINGS)
def create_bookings(self, requests) -> list[str]:
    return run_group(self, requests, work.create_bookings, work.abandon_creates)


@shared_task(base=GroupCommit, bind=True, name=queues.TRANSITION_BOOKINGS)
def transition_bookings(self, requests) -> list[str]:
    return run_group(self, requests, work.transition_bookings)


@shared_task(bind=True, name=queues.IMPORT_FLIGHTS)
def import_flights(self, job_id: str, payload: dict | None = None) -> None:
    run_job(self, job_id, payload, work.import_flights)


@shared_task(bind=True, name=queues.IMPORT_BOOKINGS)
def import_bookings(self, job_id: str, payload: dict | None = None) -> None:
    run_job(self, job_id, payload, work.import_bookings, work.abandon_import)


@shared_task(bind=True, name=queues.UPDATE_STATUSES)
def update_statuses(self, job_id: str, payload: dict | None = None) -> None:
    run_job(self, job_id, payload, work.update_statuses)


@shared_task(bind=True, name=queues.WARM_CACHE)
def warm_cache(self, job_id: str, payload: dict | None = None) -> None:
    """The admin's warm request, as a job."""
    run_job(self, job_id, payload, work.warm_cache)


@shared_task(name=queues.WARM_CACHE_ON_SCHEDULE, ignore_result=True)
def warm_cache_on_schedule() -> dict | None:
    """Beat's, every CACHE_WARM_INTERVAL: no job."""
    return work.warm_cache_on_schedule(runtime.worker_services())


@shared_task(name=queues.NOOP)
def noop(*args, **kwargs) -> None:
    """Does nothing: the broker-and-worker floor that benchmarks compare against."""


@shared_task(name=queues.RESEND_UNCONFIRMED, ignore_result=True)
def resend_unconfirmed() -> dict:
    """Beat's, every UNCONFIRMED_RESEND_S: jobs whose publish went unconfirmed, sent again."""
    publish = partial(publish_job, runtime.worker_app())
    return work.resend_unconfirmed(runtime.worker_services(), publish)


@shared_task(name=queues.CHECK_LEDGER, ignore_result=True)
def check_ledger() -> dict:
    """Beat's, every LEDGER_CHECK_INTERVAL: audit every flight's cargo space."""
    return work.check_ledger(runtime.worker_services())


@shared_task(bind=True, name=queues.SAMPLE_QUEUE_DEPTHS, ignore_result=True)
def sample_depths(self) -> None:
    svc = runtime.worker_services()
    with self.app.connection_for_read() as connection:
        sample_queue_depths(svc.redis, connection.default_channel, svc.settings, time.time())
    sample_webhook_backlog(svc.redis, svc.db, time.time())


@shared_task(name=queues.DISPATCH_WEBHOOKS, ignore_result=True)
def dispatch_webhooks() -> int:
    """Asked for after a committed write: its webhook deliveries made and sent."""
    return webhooks.send_soon(work.dispatch_webhooks(runtime.worker_services()))


@shared_task(name=queues.SWEEP_WEBHOOKS, ignore_result=True)
def sweep_webhooks() -> int:
    """Beat's, every WEBHOOK_SWEEP_INTERVAL_S: what no dispatch took, and the deliveries due."""
    return webhooks.send_soon(work.sweep_webhooks(runtime.worker_services()))
