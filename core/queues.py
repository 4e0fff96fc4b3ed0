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
ALL_QUEUES = (BOOKINGS, STATUS, BULK, MAINTENANCE)
# Worker groups: a client waits on interactive work, on background work nobody
# does, so each group has workers of its own and one never queues behind the other.
INTERACTIVE = (BOOKINGS, STATUS)
BACKGROUND = (BULK, MAINTENANCE)

CREATE_BOOKING = "radiantgo.bookings.create"
TRANSITION_BOOKING = "radiantgo.bookings.transition"
IMPORT_FLIGHTS = "radiantgo.flights.import"
BULK_CREATE_BOOKINGS = "radiantgo.bookings.bulk_create"
BULK_UPDATE_STATUS = "radiantgo.bookings.bulk_status"
WARM_CACHE = "radiantgo.maintenance.warm_cache"
NOOP = "radiantgo.maintenance.noop"
SAMPLE_QUEUE_DEPTHS = "radiantgo.maintenance.sample_queue_depths"

# Tasks that run in one go on a small payload: accepted without a MongoDB
# write, their queued record travels in the message (core.jobs).
SHORT_TASKS = frozenset({CREATE_BOOKING, TRANSITION_BOOKING})

# Job type (shown to clients) and queue of each task.
TASKS = {
    CREATE_BOOKING: ("booking.create", BOOKINGS),
    TRANSITION_BOOKING: ("booking.transition", STATUS),
    IMPORT_FLIGHTS: ("flights.import", BULK),
    BULK_CREATE_BOOKINGS: ("bookings.bulk_create", BULK),
    BULK_UPDATE_STATUS: ("bookings.bulk_status", BULK),
    WARM_CACHE: ("cache.warm", MAINTENANCE),
    NOOP: ("noop", MAINTENANCE),
    SAMPLE_QUEUE_DEPTHS: ("maintenance.sample_queue_depths", MAINTENANCE),
}


def max_length(queue: str, settings) -> int:
    """The backlog `queue` holds at most (core.settings QUEUE_MAX_*)."""
    return settings.QUEUE_MAX_INTERACTIVE if queue in INTERACTIVE else settings.QUEUE_MAX_BACKGROUND


def queue_arguments(queue: str, settings) -> dict[str, object]:
    """Declared with each queue: bounded, refusing publishes once full (the
    publisher sees a nack) rather than dropping the oldest message."""
    return {"x-max-length": max_length(queue, settings), "x-overflow": "reject-publish"}


def queue_name(queue: str, namespace: str = "") -> str:
    """The broker-side name; a namespace keeps test runs off a dev worker's queues."""
    return f"{namespace}.{queue}" if namespace else queue


def job_type(task_name: str) -> str:
    return TASKS[task_name][0]
