"""Queue and task names: the contract between the ingress and the workers.

The ingress publishes by task name (it never imports worker code), so these
strings are the whole interface. Queues are grouped so that one slow kind of
work (bulk imports) cannot starve another (single bookings).
"""

from __future__ import annotations

BOOKINGS = "bookings"
STATUS = "status"
BULK = "bulk"
MAINTENANCE = "maintenance"
WEBHOOKS = "webhooks"
ALL_QUEUES = (BOOKINGS, STATUS, BULK, MAINTENANCE, WEBHOOKS)
# Worker groups: a client waits on interactive work, on background work nobody
# does, so each group has workers of its own and one never queues behind the other.
# Webhooks are background work with workers of their own (at a lower priority,
# as the background group): a receiver's pace is nobody's to wait for, and a
# long bulk import must not hold its deliveries back.
INTERACTIVE = (BOOKINGS, STATUS)
BACKGROUND = (BULK, MAINTENANCE)
OUTGOING = (WEBHOOKS,)

CREATE_BOOKINGS = "radiantgo.bookings.create"
TRANSITION_BOOKINGS = "radiantgo.bookings.transition"
IMPORT_FLIGHTS = "radiantgo.flights.import"
IMPORT_BOOKINGS = "radiantgo.bookings.bulk_create"
UPDATE_STATUSES = "radiantgo.bookings.bulk_status"
WARM_CACHE = "radiantgo.maintenance.warm_cache"  # the admin's, a job
WARM_CACHE_ON_SCHEDULE = "radiantgo.maintenance.warm_cache_on_schedule"  # beat's
NOOP = "radiantgo.maintenance.noop"
SAMPLE_QUEUE_DEPTHS = "radiantgo.maintenance.sample_queue_depths"
CHECK_LEDGER = "radiantgo.maintenance.check_ledger"  # beat's
RESEND_UNCONFIRMED = "radiantgo.maintenance.resend_unconfirmed"  # beat's
# Webhooks (core.notifications, core.deliveries): a dispatch is asked for
# after each committed write; beat's sweep every WEBHOOK_SWEEP_INTERVAL_S
# catches what no dispatch took, and the deliveries due for a retry.
DISPATCH_WEBHOOKS = "radiantgo.webhooks.dispatch"
SWEEP_WEBHOOKS = "radiantgo.webhooks.sweep"  # beat's

# Tasks that run in one go on a small payload: accepted without a MongoDB
# write, their queued record travels in the message (core.queued_jobs).
SHORT_TASKS = frozenset({CREATE_BOOKINGS, TRANSITION_BOOKINGS})

# Job type (shown to clients) and queue of each task.
TASKS = {
    CREATE_BOOKINGS: ("booking.create", BOOKINGS),
    TRANSITION_BOOKINGS: ("booking.transition", STATUS),
    IMPORT_FLIGHTS: ("flights.import", BULK),
    IMPORT_BOOKINGS: ("bookings.bulk_create", BULK),
    UPDATE_STATUSES: ("bookings.bulk_status", BULK),
    WARM_CACHE: ("cache.warm", MAINTENANCE),
    WARM_CACHE_ON_SCHEDULE: ("cache.warm_on_schedule", MAINTENANCE),
    NOOP: ("noop", MAINTENANCE),
    SAMPLE_QUEUE_DEPTHS: ("maintenance.sample_queue_depths", MAINTENANCE),
    CHECK_LEDGER: ("ledger.check", MAINTENANCE),
    RESEND_UNCONFIRMED: ("jobs.resend_unconfirmed", MAINTENANCE),
    DISPATCH_WEBHOOKS: ("webhooks.dispatch", WEBHOOKS),
    SWEEP_WEBHOOKS: ("webhooks.sweep", WEBHOOKS),
}


_TASK_OF_TYPE = {job_type: task for task, (job_type, _) in TASKS.items()}


def task_of(job_type: str) -> str:
    """The task that runs jobs of `job_type`."""
    return _TASK_OF_TYPE[job_type]


def max_length(queue: str, settings) -> int:
    """The backlog `queue` holds at most (core.settings QUEUE_MAX_*); a webhook
    message only asks for work whose state is in MongoDB, so one refused costs
    nothing the next sweep does not do."""
    return settings.QUEUE_MAX_INTERACTIVE if queue in INTERACTIVE else settings.QUEUE_MAX_BACKGROUND


def queue_arguments(queue: str, settings) -> dict[str, object]:
    """Declared with each queue: bounded, refusing publishes once full (the
    publisher sees a nack) rather than dropping the oldest message. With
    QUEUE_TYPE=quorum, a quorum queue that gives up on a message delivered
    QUEUE_DELIVERY_LIMIT times without an ack: dead-lettered into DEAD_LETTERS,
    or, for maintenance and webhooks (periodic work whose messages expire by
    design and are sent again by beat), dropped."""
    arguments: dict[str, object] = {
        "x-max-length": max_length(queue, settings),
        "x-overflow": "reject-publish",
    }
    if settings.QUEUE_TYPE == "quorum":
        arguments.update(
            {"x-queue-type": "quorum", "x-delivery-limit": settings.QUEUE_DELIVERY_LIMIT}
        )
        if queue not in (MAINTENANCE, WEBHOOKS):
            arguments.update(_dead_letter_to(queue_name(DEAD_LETTERS, settings.QUEUE_NAMESPACE)))
    return arguments


# QUEUE_TYPE=quorum only. Messages a work queue gave up on (QUEUE_DELIVERY_LIMIT),
# kept for the operator; nothing consumes them (README: Poison messages).
DEAD_LETTERS = "dead-letters"


def dead_letter_arguments() -> dict[str, object]:
    return {"x-queue-type": "quorum"}


def delay_name(delay_ms: int, namespace: str = "") -> str:
    """The delay queue, and its fanout exchange, of one step of the retry
    schedule (core.retries.STEPS_MS): with QUEUE_TYPE=quorum a retry waits
    there, then returns to its work queue, since a quorum queue's consumer
    cannot hold a message for later (that needs global QoS)."""
    return queue_name(f"retry-{delay_ms}ms", namespace)


def delay_arguments(delay_ms: int, work_exchange: str) -> dict[str, object]:
    """A delay queue: each message expires after `delay_ms` and is dead-lettered,
    with the routing key it was published with, to the work exchange. At least
    once: RabbitMQ keeps it until its work queue took it."""
    return {
        "x-queue-type": "quorum",
        "x-message-ttl": delay_ms,
        "x-overflow": "reject-publish",  # at-least-once dead-lettering requires it
        "x-dead-letter-exchange": work_exchange,
        "x-dead-letter-strategy": "at-least-once",
    }


def _dead_letter_to(dead_letter_queue: str) -> dict[str, object]:
    # The default exchange routes by queue name: no exchange of its own needed.
    return {
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": dead_letter_queue,
        "x-dead-letter-strategy": "at-least-once",
    }


def queue_name(queue: str, namespace: str = "") -> str:
    """The broker-side name; a namespace keeps test runs off a dev worker's queues."""
    return f"{namespace}.{queue}" if namespace else queue


def job_type(task_name: str) -> str:
    return TASKS[task_name][0]
