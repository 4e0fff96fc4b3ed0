"""Distributed locks on Redis (redlock-py), their key names, and their metrics.

redlock-py is wrapped because, as measured, it turns retry_count=0 into 3,
sleeps after its last try, and reports a dead Redis as "not acquired". Here one
redlock attempt is made per try, the backoff is the spec's (100 ms x 1.5^n plus
0-100 ms jitter), and a Redis that does not answer is a ServiceUnavailable
(retried by the task), never "contention" (a 409).

The locks may live on several independent Redis masters (LOCK_REDIS_URLS,
Redlock proper): a lock is taken when a majority of them took it in time
(redlock-py's quorum, N // 2 + 1), so with three masters locks go on while any
two answer. A master that does not answer counts as one that did not lock; only
when fewer than a majority answer a PING is a failed try a ServiceUnavailable.
Lock metrics stay on the app's Redis (REDIS_URL), with every other figure.

Locks are an optimization for contention, not the correctness guarantee: the
writes they guard are fenced on (status, version), so a holder whose lock
expired cannot overwrite a newer state.
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import redis
from redlock import Lock, Redlock

from core.errors import REDIS_ERRORS, REDIS_UNREACHABLE, BookingLocked, LockHeld, ServiceUnavailable
from core.settings import Settings
from core.stats import percentiles

log = logging.getLogger(__name__)

# -- key names: every lock's, and the lock metrics' -----------------------------

LOCK_PREFIXES = ("booking:ref:", "flight:", "bulk:operation:", "singleton:")
FLIGHT_LOCK_TTL = 15
BULK_LOCK_TTL = 60


def booking_lock_key(ref_id: str) -> str:
    return f"booking:ref:{ref_id}"


def flight_lock_key(flight_id: str) -> str:
    return f"flight:{flight_id}"


def bulk_lock_key(operation: str, timestamp: int | str) -> str:
    return f"bulk:operation:{operation}:{timestamp}"


def singleton_key(job_type: str) -> str:
    """Held by the one job of `job_type` queued or running (core.coalesce)."""
    return f"singleton:{job_type}"


def lock_kind(key: str) -> str:
    """What a lock key guards: "booking", "flight", "bulk" or "singleton"."""
    return key.split(":", 1)[0]


LOCK_KINDS = tuple(lock_kind(prefix) for prefix in LOCK_PREFIXES)
# Every lock's figures, and each kind's apart (metrics:locks:<kind>...).
METRICS_KEY = "metrics:locks"  # hash, fixed fields (acquired, failed, errors, attempts, ...)
LATENCIES_KEY = "metrics:locks:acquire_ms"  # list, trimmed to LATENCY_SAMPLES
LATENCY_SAMPLES = 2000


def _metrics_keys(kind: str | None) -> tuple[str, str]:
    if kind is None:
        return METRICS_KEY, LATENCIES_KEY
    return f"{METRICS_KEY}:{kind}", f"{METRICS_KEY}:{kind}:acquire_ms"


def _held_error(key: str, detail: str) -> LockHeld:
    return BookingLocked(detail) if lock_kind(key) == "booking" else LockHeld(detail)


# -- backoff ----------------------------------------------------------------------

BACKOFF_BASE_MS = 100.0
BACKOFF_FACTOR = 1.5
BACKOFF_CAP_MS = 500.0  # 50 tries then wait ~27 s in all, the spec's "~30 s"
JITTER_MS = 100.0


def backoff_ms(attempt: int, jitter: Callable[[], float] = random.random) -> float:
    """Wait before try `attempt + 1` (attempt counts from 0): 100, 150, 225, 337 ... ms."""
    return min(BACKOFF_BASE_MS * BACKOFF_FACTOR**attempt, BACKOFF_CAP_MS) + jitter() * JITTER_MS


@dataclass(frozen=True)
class Held:
    key: str
    lock: Lock
    attempts: int
    waited_ms: float


class _Redlock(Redlock):
    """redlock-py with a master that does not answer (or refuses: OOM,
    READONLY) taken as one that did not lock: redlock-py raises
    MultipleRedlockException instead, even when a quorum locked (and leaves its
    keys set), and logs a traceback per dead master on every unlock.
    Unavailability is told apart by LockManager."""

    def lock_instance(self, server, resource, val, ttl):
        try:
            return super().lock_instance(server, resource, val, ttl)
        except REDIS_ERRORS as exc:
            log.debug("lock %s not taken on %s: %s", resource, server, exc)
            return False

    def unlock_instance(self, server, resource, val):
        try:
            server.eval(self.unlock_script, 1, resource, val)
        except REDIS_ERRORS as exc:
            log.debug("lock %s not released on %s (its TTL will): %s", resource, server, exc)


class LockManager:
    """Acquire and release Redis locks with the spec's retry policy.

    `client` is the app's Redis (metrics go there); `masters` the lock
    masters (core.services.connect_lock_masters), by default `client` alone."""

    def __init__(
        self,
        client: redis.Redis,
        settings: Settings,
        *,
        sleep=time.sleep,
        masters: Sequence[redis.Redis] | None = None,
    ):
        self.redis = client
        self.masters = list(masters or [client])
        self.quorum = len(self.masters) // 2 + 1
        self.max_attempts = settings.LOCK_MAX_ATTEMPTS
        self.default_ttl = settings.LOCK_DEFAULT_TTL
        self._sleep = sleep
        # One attempt per lock() call; the retry_delay must be truthy or
        # redlock-py substitutes its 0.2 s default, slept after the attempt.
        self._redlock = _Redlock(self.masters, retry_count=1, retry_delay=1e-6)

    def acquire(
        self, key: str, ttl_s: int | None = None, *, max_attempts: int | None = None
    ) -> Held:
        ttl_ms = int((ttl_s or self.default_ttl) * 1000)
        attempts = max_attempts or self.max_attempts
        started = time.perf_counter()
        for attempt in range(attempts):
            lock = self._redlock.lock(key, ttl_ms)
            if lock:
                waited = (time.perf_counter() - started) * 1000
                self._record(key, acquired=True, attempts=attempt + 1, waited_ms=waited)
                return Held(key, lock, attempt + 1, waited)
            self._raise_if_redis_is_down(key)
            if attempt + 1 < attempts:
                self._sleep(backoff_ms(attempt) / 1000)
        self._record(
            key, acquired=False, attempts=attempts, waited_ms=(time.perf_counter() - started) * 1000
        )
        raise _held_error(key, f"{key} stayed locked through {attempts} attempts.")

    def try_acquire(self, key: str, ttl_s: int | None = None) -> Held | None:
        """One attempt, no waiting: the lock, or None if someone holds it (a
        caller that will then wait for it through acquire() counts the wait there)."""
        started = time.perf_counter()
        lock = self._redlock.lock(key, int((ttl_s or self.default_ttl) * 1000))
        if not lock:
            self._raise_if_redis_is_down(key)
            return None
        waited = (time.perf_counter() - started) * 1000
        self._record(key, acquired=True, attempts=1, waited_ms=waited)
        return Held(key, lock, 1, waited)

    def release(self, held: Held) -> None:
        # Compare-and-delete on every master: a lock that expired and was taken
        # by someone else is theirs now, and stays. A master that does not
        # answer keeps its key until the TTL.
        self._redlock.unlock(held.lock)

    @contextlib.contextmanager
    def hold(self, key: str, ttl_s: int | None = None) -> Iterator[Held]:
        held = self.acquire(key, ttl_s)
        try:
            yield held
        finally:
            self.release(held)

    def held(self) -> list[dict[str, object]]:
        """held_locks() of the lock masters that answer and of the app's Redis
        (core.coalesce keeps its singleton claims there): each key held on any
        of them, with its longest TTL. ServiceUnavailable if none answers."""
        sources = [self.redis, *(m for m in self.masters if m is not self.redis)]
        ttls: dict[str, int] = {}
        answered = 0
        for source in sources:
            try:
                found = held_locks(source)
            except REDIS_UNREACHABLE:
                continue
            answered += 1
            for lock in found:
                ttls[lock["key"]] = max(ttls.get(lock["key"], 0), lock["ttl_ms"])
        if not answered:
            raise ServiceUnavailable("No Redis holding locks answers.")
        return [{"key": key, "ttl_ms": ttl} for key, ttl in sorted(ttls.items())]

    def _raise_if_redis_is_down(self, key: str) -> None:
        """A failed try is contention while a quorum of the masters answers."""
        errors = []
        for master in self.masters:
            try:
                master.ping()
            except REDIS_UNREACHABLE as exc:
                errors.append(exc)
        if len(self.masters) - len(errors) < self.quorum:
            self._record(key, acquired=False, attempts=1, waited_ms=0.0, error=True)
            raise ServiceUnavailable(
                f"Redis is unavailable for locking ({len(errors)} of {len(self.masters)}"
                f" lock masters down): {errors[-1]}"
            ) from errors[-1]

    def _record(
        self, key: str, *, acquired: bool, attempts: int, waited_ms: float, error: bool = False
    ) -> None:
        try:
            pipe = self.redis.pipeline(transaction=False)
            for figures, latencies in (_metrics_keys(None), _metrics_keys(lock_kind(key))):
                if error:
                    pipe.hincrby(figures, "errors", 1)
                    continue
                pipe.hincrby(figures, "acquired" if acquired else "failed", 1)
                pipe.hincrby(figures, "attempts", attempts)
                pipe.hincrbyfloat(figures, "wait_ms_total", round(waited_ms, 3))
                if acquired:
                    pipe.lpush(latencies, round(waited_ms, 3))
                    pipe.ltrim(latencies, 0, LATENCY_SAMPLES - 1)
            pipe.execute()
        except REDIS_ERRORS as exc:  # OOM or MISCONF too: metrics are best-effort
            log.warning("lock metrics not recorded: %s", exc)


def held_locks(client: redis.Redis) -> list[dict[str, object]]:
    """Lock keys held now with their remaining TTL (SCAN, never KEYS)."""
    keys = [
        key for prefix in LOCK_PREFIXES for key in client.scan_iter(match=prefix + "*", count=500)
    ]
    if not keys:
        return []
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.pttl(key)
    ttls = pipe.execute()
    return sorted(
        ({"key": key, "ttl_ms": ttl} for key, ttl in zip(keys, ttls, strict=True) if ttl > 0),
        key=lambda held: held["key"],
    )


def lock_metrics(
    client: redis.Redis, kind: str | None = None, held: list[dict[str, object]] | None = None
) -> dict[str, object]:
    """Acquisitions, failures, attempts and acquisition-time percentiles: of
    every lock, or of one kind's (lock_kind). `held`: held_locks(), if the
    caller read it already (it scans the keyspace)."""
    figures, latencies = _metrics_keys(kind)
    raw = client.hgetall(figures)
    samples = [float(x) for x in client.lrange(latencies, 0, -1)]
    acquired = int(raw.get("acquired", 0))
    failed = int(raw.get("failed", 0))
    return {
        "acquired": acquired,
        "failed": failed,
        "errors": int(raw.get("errors", 0)),
        "attempts": int(raw.get("attempts", 0)),
        "average_attempts": round(int(raw.get("attempts", 0)) / max(acquired + failed, 1), 3),
        "acquire_ms": percentiles(samples, (0.50, 0.95), digits=3, maximum=True),
        "held": sum(
            1
            for h in (held_locks(client) if held is None else held)
            if kind is None or lock_kind(str(h["key"])) == kind
        ),
    }
