"""What each job does once a worker takes it: the use cases that the Celery
tasks (workers/tasks.py) adapt, one function a job type.

Each takes the process's services and the job (or, for the group-committed
creates and transitions, the jobs of one group) and returns the job's result;
a RadiantError fails it, a transient one retries it (workers.running). Here, not
in the tasks, live the policies around the write: which lock a job holds, and
which caches a committed write makes stale (core.invalidation: best-effort,
never failing a job whose write committed).
"""

from __future__ import annotations

import functools
import logging
import time
from typing import Any

from core import (
    bookings,
    bulk,
    coalesce,
    deliveries,
    delivery_slots,
    egress,
    flights,
    group_commit,
    invalidation,
    jobs,
    ledger,
    metrics,
    notifications,
    outbox,
    queues,
    route_answers,
    signing,
    warming,
)
from core.clock import utcnow
from core.errors import LockHeld, NotReady
from core.locks import BULK_LOCK_TTL, bulk_lock_key
from core.services import Services

log = logging.getLogger(__name__)

Job = dict[str, Any]
Outcome = dict[str, Any] | Exception

# A redelivered import whose first run died holds its lock until the TTL: a few
# tries, then the job retries with backoff rather than failing as "locked".
BULK_LOCK_ATTEMPTS = 3
WARM_JOB = queues.job_type(queues.WARM_CACHE)


def create_bookings(svc: Services, todo: list[Job]) -> list[Outcome]:
    """A group of create jobs, committed together (core.group_commit). A
    create accepted while MongoDB was out came without an AWB: issued here."""
    items = [_request(job) for job in todo]
    for item in items:
        if not item.get("awb"):
            item["awb"] = svc.awb_stock.take()
    created = group_commit.create_bookings(
        svc.db,
        svc.locks,
        items,
        now=utcnow(),
        min_connection_minutes=svc.settings.MIN_CONNECTION_MINUTES,
    )
    return [_written(svc, outcome) for outcome in created]


def transition_bookings(svc: Services, todo: list[Job]) -> list[Outcome]:
    """A group of transition jobs, committed together (core.group_commit)."""
    moved = group_commit.transition_bookings(
        svc.db, svc.locks, svc.redis, [_request(job) for job in todo], clock=utcnow
    )
    return [_written(svc, outcome) for outcome in moved]


def abandon_creates(svc: Services, ended: list[Job]) -> None:
    """Create jobs ending failed on a give-up or a bug: their space goes back."""
    group_commit.abandon_creates(svc.db, svc.locks, [_request(job) for job in ended])
    invalidation.space_changed(svc.cache)


def _request(job: Job) -> dict[str, Any]:
    return {**job["payload"], "job_id": job["_id"], "submitter": job.get("customer_id")}


def _written(svc: Services, outcome: Outcome) -> Outcome:
    """A job's result once its booking was written (its cache told), or its error."""
    if isinstance(outcome, Exception):
        return outcome
    booking_written(svc, outcome)
    return {"booking": bookings.public_booking(outcome)}


def booking_written(svc: Services, booking: dict[str, Any]) -> None:
    invalidation.booking_written(svc.cache, booking, svc.settings.CACHE_TTL_BOOKINGS)


def import_flights(svc: Services, job: Job) -> dict[str, Any]:
    """Store a flight schedule, one importer per job at a time: a redelivery
    racing a slow first delivery waits its turn (every write is an upsert, so a
    rerun is harmless anyway)."""
    items = jobs.job_request(job["payload"])["flights"]
    key = bulk_lock_key("flights", job["payload"]["accepted_at"])
    try:
        held = svc.locks.acquire(key, BULK_LOCK_TTL, max_attempts=BULK_LOCK_ATTEMPTS)
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
            on_progress=_progress(svc, job),
        )
    finally:
        svc.locks.release(held)
    invalidation.flights_imported(svc.cache)
    return result


def import_bookings(svc: Services, job: Job) -> dict[str, Any]:
    """Create a bulk request's bookings, chunk by chunk (core.bulk)."""
    request = jobs.job_request(job["payload"])
    result = bulk.import_bookings(
        svc.db,
        svc.locks,
        request["bookings"],
        customer_id=request.get("customer_id"),
        job_id=job["_id"],
        now=utcnow(),
        chunk_size=svc.settings.BULK_CHUNK_SIZE,
        min_connection_minutes=svc.settings.MIN_CONNECTION_MINUTES,
        awbs=svc.awb_stock,
        on_progress=_progress(svc, job),
    )
    invalidation.bookings_written(svc.cache)
    return result


def abandon_import(svc: Services, job: Job) -> None:
    """A bulk create job ending failed on a give-up or a bug: its items' space goes back."""
    request = jobs.job_request(job["payload"])
    bulk.abandon_import(svc.db, svc.locks, request["bookings"], job_id=job["_id"])
    invalidation.space_changed(svc.cache)


def update_statuses(svc: Services, job: Job) -> dict[str, Any]:
    """Apply a bulk request's status updates in order (core.bulk)."""
    return bulk.update_statuses(
        svc.db,
        svc.locks,
        jobs.job_request(job["payload"])["updates"],
        job_id=job["_id"],
        clock=utcnow,
        queued_records=svc.redis,
        chunk_size=svc.settings.BULK_CHUNK_SIZE,
        on_changed=lambda booking: booking_written(svc, booking),
        on_progress=_progress(svc, job),
        submitter=job.get("customer_id"),
    )


def _progress(svc: Services, job: Job):
    return lambda progress: jobs.set_progress(svc.db, job["_id"], progress)


def warm_cache(svc: Services, job: Job) -> dict[str, Any]:
    """The admin's warm job; once it ran, the next warm request starts a new one."""
    warmed = warm_popular_routes(svc)
    coalesce.release(svc.redis, WARM_JOB, job["_id"])
    return warmed


def warm_cache_on_schedule(svc: Services) -> dict[str, Any] | None:
    """Beat's turn (every CACHE_WARM_INTERVAL); skipped while an admin's warm
    job is queued or running, which does the same work."""
    held = coalesce.holder(svc.redis, WARM_JOB)
    if held is not None:
        log.info("warm job %s is queued or running: beat skips its turn", held)
        return None
    return warm_popular_routes(svc)


def warm_popular_routes(svc: Services) -> dict[str, Any]:
    """Keep the searches clients make cached for the days they ask about most:
    the configured and most searched routes, and those searched lately."""
    settings = svc.settings
    now = time.time()
    wanted = route_answers.popular_routes(
        svc.cache, settings.POPULAR_ROUTES, settings.WARM_TOP_ROUTES
    )
    lately = route_answers.searched_lately(
        svc.cache, now - settings.WARM_RECENT_S, settings.WARM_MAX_ROUTES
    )
    return warming.warm_routes(
        svc.db,
        svc.cache,
        list(dict.fromkeys([*wanted, *lately])),
        today=utcnow().date(),
        min_connection_minutes=settings.MIN_CONNECTION_MINUTES,
        ttl=route_answers.search_ttl(settings),
        refresh_s=settings.WARM_REFRESH_S,
        now=now,
    )


def check_ledger(svc: Services) -> dict[str, Any]:
    """Audit every flight's cargo space; its totals are kept for the performance endpoint."""
    now = utcnow()
    return ledger.totals(ledger.check(svc.db, svc.redis, now), now)


def resend_unconfirmed(svc: Services, publish: outbox.Publish) -> dict[str, int]:
    """Send again the jobs whose publish the broker may have taken unconfirmed."""
    grace = svc.settings.UNCONFIRMED_RESEND_S
    return outbox.resend_due(svc.db, svc.redis, publish, now=time.time(), grace_s=grace)


# -- webhooks ------------------------------------------------------------------------


def dispatch_webhooks(svc: Services) -> list[str]:
    """Turn what the outboxes hold into deliveries (core.notifications): those
    to send now (as many of each endpoint's as it has free slots)."""
    notifications.dispatch_asked(svc.redis)
    made = notifications.dispatch_all(svc.db, now=utcnow())
    return delivery_slots.sendable(
        svc.redis, made, now=time.time(), policy=webhook_policy(svc.settings)
    )


def sweep_webhooks(svc: Services) -> list[str]:
    """Beat's: dispatch what no dispatch took; the deliveries due now (new ones,
    retries, and those whose sender died holding them) to send now."""
    notifications.dispatch_all(svc.db, now=utcnow())
    policy = webhook_policy(svc.settings)
    return delivery_slots.due_to_send(svc.db, svc.redis, now=utcnow(), policy=policy)


def send_webhook(
    svc: Services, delivery_id: str, events: deliveries.EventCache | None = None
) -> deliveries.Outcome:
    """One delivery's due attempt, signed, by the settings' policy."""
    settings = svc.settings
    outcome = deliveries.send(
        svc.db,
        svc.redis,
        delivery_id,
        clock=utcnow,
        post=functools.partial(
            egress.post,
            allow_private=settings.WEBHOOK_ALLOW_PRIVATE,
            timeout_s=settings.WEBHOOK_TIMEOUT_S,
            ca_file=settings.WEBHOOK_CA_FILE or None,
        ),
        sign=signing.headers,
        policy=webhook_policy(settings),
        events=events,
    )
    try:
        metrics.record_webhook(svc.redis, outcome, now=time.time())
    except Exception as exc:  # counters must never fail a delivery
        log.warning("webhook metrics not recorded: %s", exc)
    return outcome


def webhook_policy(settings) -> deliveries.Policy:
    return deliveries.Policy(
        timeout_s=settings.WEBHOOK_TIMEOUT_S,
        disable_after_s=settings.WEBHOOK_DISABLE_AFTER_H * 3600,
        max_in_flight=settings.WEBHOOK_MAX_IN_FLIGHT,
    )
