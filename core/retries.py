"""The retry schedule of a job that failed on a transient error (a backing
service down or refusing): how long each retry waits, and when to give up.

The one definition: the worker's countdown (workers.jobs.retry_options), the
delay queues a retry waits in with QUEUE_TYPE=quorum (their names and TTLs,
celeryconfig.retry_queues) and the group commit's republish (workers.batches)
all read it. The wait doubles from FIRST_MS up to LAST_MS, without jitter: a
delay queue's TTL is fixed, so a retry can only wait one of its steps.
"""

from __future__ import annotations

FIRST_MS = 500
LAST_MS = 30_000


def _steps() -> tuple[int, ...]:
    steps = [FIRST_MS]
    while steps[-1] < LAST_MS:
        steps.append(min(steps[-1] * 2, LAST_MS))
    return tuple(steps)


# Each wait a retry can have, in milliseconds: one delay queue each.
STEPS_MS = _steps()


def delay_ms(retries: int) -> int:
    """The wait before retry number `retries` + 1 (`retries` already made)."""
    return STEPS_MS[min(retries, len(STEPS_MS) - 1)]


def countdown_s(retries: int) -> float:
    return delay_ms(retries) / 1000


def exhausted(retries: int, settings) -> bool:
    """Whether a job that has been retried `retries` times fails now instead
    (TASK_MAX_RETRIES)."""
    return retries >= settings.TASK_MAX_RETRIES


def gave_up(detail: str, settings) -> str:
    """The problem detail of a job that failed for want of retries."""
    return f"Gave up after {settings.TASK_MAX_RETRIES} retries: {detail}"
