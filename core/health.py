"""Service probes for /health: each a status and a latency, never an exception."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import pymongo
import redis
from pymongo.database import Database

from core import monitoring
from core.errors import REDIS_ERRORS
from core.services import Services, connect_redis
from core.settings import Settings

log = logging.getLogger(__name__)

HEALTHY, DEGRADED, UNHEALTHY = "healthy", "degraded", "unhealthy"
# Workers refresh their heartbeat every WORKER_HEARTBEAT_INTERVAL seconds and
# count as alive for WORKER_ALIVE_WINDOW seconds after it.
WORKER_HEARTBEATS = "workers:heartbeats"
WORKER_HEARTBEAT_INTERVAL = 5.0
WORKER_ALIVE_WINDOW = 15.0
# A lock master's probe gives up after this long (at most REDIS_TIMEOUT_S): a
# PING takes well under a millisecond, and masters that hang are probed one
# after another within a round.
LOCK_PROBE_TIMEOUT_S = 0.5


def probe(name: str, check: Callable[[], Any]) -> dict[str, Any]:
    """Run `check`: healthy with its latency, or unhealthy (latency null).

    The answer is public, so it says no more than that: the reason (an
    exception's text can name hosts, users, paths) and any detail go to the log.
    """
    started = time.perf_counter()
    try:
        detail = check()
    except Exception as exc:  # a probe reports every failure, whatever its type
        log.warning("health probe %s failed: %s: %s", name, type(exc).__name__, exc)
        return {"status": UNHEALTHY, "latency_ms": None}
    if detail:
        log.debug("health probe %s: %s", name, detail)
    return {"status": HEALTHY, "latency_ms": round((time.perf_counter() - started) * 1000, 2)}


def probe_nodes(name: str, checks: Sequence[Callable[[], Any]], *, quorum: int) -> dict[str, Any]:
    """Probe each node of a service apart: healthy when all answer, degraded
    while at least `quorum` of them do, unhealthy below that.

    One node: probe() alone. Several: the slowest answering node's latency
    (null when none answered) and how many answered, as `nodes_up` of
    `nodes` (counts only: which node is down goes to the log).
    """
    if len(checks) == 1:
        return probe(name, checks[0])
    results = [probe(f"{name} node {n}", check) for n, check in enumerate(checks, 1)]
    latencies = [r["latency_ms"] for r in results if r["status"] == HEALTHY]
    if len(latencies) == len(results):
        status = HEALTHY
    elif len(latencies) >= quorum:
        status = DEGRADED
    else:
        status = UNHEALTHY
    return {
        "status": status,
        "latency_ms": max(latencies, default=None),
        "nodes_up": len(latencies),
        "nodes": len(results),
    }


class ProbeCache:
    """The last result of `run`, run again at most every `ttl` seconds per process.

    Thread-safe (gunicorn gthread): one thread runs the probes while the
    others wait for its result instead of probing too, so a burst of /health
    calls costs one round of probes. `runs` counts the rounds.
    """

    def __init__(self, run: Callable[[], Any], *, ttl: float = 1.0, clock=time.monotonic):
        self._run = run
        self._ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._result: Any = None
        self._fresh_until = float("-inf")
        self.runs = 0

    def get(self) -> Any:
        with self._lock:
            if self._clock() >= self._fresh_until:
                self.runs += 1
                self._result = self._run()
                self._fresh_until = self._clock() + self._ttl
            return self._result


class BrokerPing:
    """A round trip to the broker over one connection kept for the process.

    `connect()` returns an unopened kombu connection. Each ping makes the
    broker answer (a passive declare of the pre-declared `amq.direct`), so a
    dead broker shows at once, unlike a pooled socket that looks alive until
    its next write. A kept connection that fails (the broker restarted, or it
    dropped us) is replaced by a fresh one, tried once before the ping fails;
    a forked child opens its own. `opened` counts connections opened.
    """

    EXCHANGE = "amq.direct"  # AMQP 0-9-1: every broker declares it

    def __init__(self, connect: Callable[[], Any], *, timeout_s: float):
        self._connect = connect
        self._timeout_s = timeout_s
        self._lock = threading.Lock()
        self._connection: Any = None
        self._pid: int | None = None
        self.opened = 0

    def __call__(self) -> None:
        with self._lock:
            if self._connection is not None and self._pid == os.getpid():
                try:
                    return self._round_trip(self._connection)
                except Exception as exc:  # any failure: the kept connection is done for
                    log.info("kept broker connection failed (%s); opening a new one", exc)
            self._discard()
            self._connection = self._open()
            try:
                self._round_trip(self._connection)
            except Exception:
                self._discard()
                raise

    def close(self) -> None:
        """Close the kept connection (politely, while the broker answers)."""
        with self._lock:
            connection, self._connection = self._connection, None
            if connection is not None and self._pid == os.getpid():
                connection.release()

    def _open(self) -> Any:
        self.opened += 1
        self._pid = os.getpid()
        connection = self._connect()
        try:
            connection.ensure_connection(
                max_retries=1, interval_start=0, interval_step=0.1, timeout=self._timeout_s
            )
        except Exception:
            self._collect(connection)
            raise
        return connection

    def _round_trip(self, connection: Any) -> None:
        connection.default_channel.exchange_declare(self.EXCHANGE, "direct", passive=True)

    def _discard(self) -> None:
        connection, self._connection = self._connection, None
        # One inherited over fork shares its socket with the parent: dropped, not closed.
        if connection is not None and self._pid == os.getpid():
            self._collect(connection)

    @staticmethod
    def _collect(connection: Any) -> None:
        # Frees the socket without the closing handshake a dead broker never answers.
        try:
            connection.collect()
        except Exception as exc:  # a half-dead connection may fail in any way
            log.debug("dropping the broker probe's connection: %s", exc)


def ping_mongo(db: Database, timeout_s: float = 1.0) -> Callable[[], None]:
    def check() -> None:
        # Client-side operation timeout: bounds server selection too, so a
        # dead server answers in timeout_s, not serverSelectionTimeoutMS.
        with pymongo.timeout(timeout_s):
            db.command("ping")

    return check


def ping_redis(client: redis.Redis) -> Callable[[], None]:
    return lambda: client.ping() and None


def connect_lock_probes(settings: Settings) -> list[redis.Redis]:
    """Clients of the lock masters for their probes, made as the locks' own
    (core.services) but with LOCK_PROBE_TIMEOUT_S; none when LOCK_REDIS_URLS
    is unset (the locks are then on REDIS_URL, which has its own probe)."""
    if not settings.LOCK_REDIS_URLS:
        return []
    timeout_s = min(settings.REDIS_TIMEOUT_S, LOCK_PROBE_TIMEOUT_S)
    return [connect_redis(settings, url, timeout_s=timeout_s) for url in settings.lock_redis_urls]


def record_worker_heartbeat(client: redis.Redis, worker: str, now: float) -> None:
    pipe = client.pipeline()
    pipe.zadd(WORKER_HEARTBEATS, {worker: now})
    pipe.zremrangebyscore(WORKER_HEARTBEATS, "-inf", now - WORKER_ALIVE_WINDOW * 4)
    # Bounded in time too: once every worker has stopped, the set goes with them.
    pipe.expire(WORKER_HEARTBEATS, int(WORKER_ALIVE_WINDOW * 4))
    pipe.execute()


def live_workers(client: redis.Redis, now: float) -> list[str]:
    return client.zrangebyscore(WORKER_HEARTBEATS, now - WORKER_ALIVE_WINDOW, "+inf")


def count_workers(client: redis.Redis) -> Callable[[], str]:
    def check() -> str:
        workers = live_workers(client, time.time())
        if not workers:
            raise RuntimeError("no worker has sent a heartbeat recently")
        return f"{len(workers)} worker(s) alive"

    return check


def overall_status(services: dict[str, dict[str, Any]], critical: tuple[str, ...]) -> str:
    # A critical service is one whose every node is down: while one broker of
    # a cluster answers, clients fail over to it, and requests are accepted.
    if any(services[name]["status"] == UNHEALTHY for name in critical):
        return UNHEALTHY
    if any(s["status"] != HEALTHY for s in services.values()):
        return DEGRADED
    return HEALTHY


# Without MongoDB nothing can be read or recorded; without RabbitMQ nothing
# can be accepted. Redis or the workers being down only degrades service, and
# so do the lock masters (`locks`) with fewer than a quorum answering: no lock
# can be taken then, but requests are still accepted and reads served; the
# jobs that need a lock (creates, transitions) retry until a quorum is back.
CRITICAL = ("mongodb", "rabbitmq")


def check_services(
    svc: Services,
    ping_brokers: Sequence[Callable[[], Any]],
    lock_masters: Sequence[redis.Redis] = (),
) -> tuple[dict, int]:
    """One round of probes: the /health body and its status code.

    `ping_brokers`: a BrokerPing per RabbitMQ node (settings.broker_urls).
    `lock_masters`: connect_lock_probes(); with none, no `locks` entry.
    """
    checks = {
        "mongodb": probe("mongodb", ping_mongo(svc.db)),
        "redis": probe("redis", ping_redis(svc.redis)),
        # Some nodes answering is enough: clients fail over to them.
        "rabbitmq": probe_nodes("rabbitmq", ping_brokers, quorum=1),
        "workers": probe("workers", count_workers(svc.redis)),
    }
    if lock_masters:
        pings = [ping_redis(master) for master in lock_masters]
        # Redlock's quorum (core.locks): locks are taken while a majority answers.
        checks["locks"] = probe_nodes("locks", pings, quorum=len(pings) // 2 + 1)
    status = overall_status(checks, CRITICAL)
    body = {"status": status, "services": checks}
    if checks["redis"]["status"] == HEALTHY:
        try:
            body["metrics"] = monitoring.health_summary(
                svc.redis, svc.cache.hit_stats(), time.time()
            )
        except REDIS_ERRORS as exc:  # Redis went away since its probe: no figures this time
            log.warning("health metrics not read: %s", exc)
    return body, 503 if status == UNHEALTHY else 200
