"""Waiting for a job to finish without polling MongoDB in a tight loop.

Workers publish each finished job's id on a Redis channel. One listener thread
per process fans those messages out to the threads waiting on that job. The
database stays the source of truth: a waiter re-reads the job when woken, and
every half second regardless, so a lost message (Redis restarting) costs at
most that half second.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import redis

from core.jobs import FINISHED, JOB_FINISHED_CHANNEL

log = logging.getLogger(__name__)
FALLBACK_POLL_S = 0.5


def notify_job_finished(client: redis.Redis, job_id: str) -> None:
    try:
        client.publish(JOB_FINISHED_CHANNEL, job_id)
    except redis.RedisError as exc:  # MISCONF, OOM, READONLY too: the notice is best-effort
        log.warning("job-finished notice not sent (waiters fall back to polling): %s", exc)


class WaitersBusy(Exception):
    """Every waiting slot of this process is taken: answer without waiting."""


class JobWaiter:
    def __init__(self, client: redis.Redis, max_waiters: int):
        self._redis = client
        # A waiter holds a web thread; the cap keeps some for everyone else.
        self._slots = threading.BoundedSemaphore(max_waiters)
        self.in_use = 0  # requests waiting now (read by tests and operators)
        self._waiters: dict[str, set[threading.Event]] = defaultdict(set)
        self._lock = threading.Lock()
        self._listener: threading.Thread | None = None

    def _start_listener(self) -> None:
        with self._lock:
            if self._listener is None or not self._listener.is_alive():
                self._listener = threading.Thread(
                    target=self._listen, name="job-waiter", daemon=True
                )
                self._listener.start()

    def _listen(self) -> None:
        while True:
            try:
                pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(JOB_FINISHED_CHANNEL)
                for message in pubsub.listen():
                    self._wake(message["data"])
            # ValueError: redis-py reading a socket its client closed under it
            # (the client's close() at shutdown). The thread must outlive it all.
            except (redis.ConnectionError, redis.TimeoutError, ValueError) as exc:
                log.warning("job waiter lost Redis, retrying: %s", exc)
                time.sleep(1.0)

    def _wake(self, job_id: str) -> None:
        with self._lock:
            events = list(self._waiters.get(job_id, ()))
        for event in events:
            event.set()

    def wait(
        self, job_id: str, timeout: float, load: Callable[[], dict[str, Any] | None]
    ) -> dict[str, Any] | None:
        """Return the job once finished, or as it stands after `timeout` seconds.

        Raises WaitersBusy at once when max_waiters requests already wait here."""
        if not self._slots.acquire(blocking=False):
            raise WaitersBusy
        with self._lock:
            self.in_use += 1
        try:
            return self._wait(job_id, timeout, load)
        finally:
            with self._lock:
                self.in_use -= 1
            self._slots.release()

    def _wait(
        self, job_id: str, timeout: float, load: Callable[[], dict[str, Any] | None]
    ) -> dict[str, Any] | None:
        self._start_listener()
        event = threading.Event()
        with self._lock:
            self._waiters[job_id].add(event)
        try:
            deadline = time.monotonic() + timeout
            while True:
                job = load()
                remaining = deadline - time.monotonic()
                if job is None or job["state"] in FINISHED or remaining <= 0:
                    return job
                event.wait(min(remaining, FALLBACK_POLL_S))
                event.clear()
        finally:
            with self._lock:
                waiters = self._waiters.get(job_id)
                if waiters is not None:
                    waiters.discard(event)
                    if not waiters:
                        del self._waiters[job_id]
