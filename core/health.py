"""Service probes for /health: each a status and a latency, never an exception."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import pymongo
import redis
from pymongo.database import Database

log = logging.getLogger(__name__)

HEALTHY, DEGRADED, UNHEALTHY = "healthy", "degraded", "unhealthy"
# Workers refresh their heartbeat every WORKER_HEARTBEAT_INTERVAL seconds and
# count as alive for WORKER_ALIVE_WINDOW seconds after it.
WORKER_HEARTBEATS = "workers:heartbeats"
WORKER_HEARTBEAT_INTERVAL = 5.0
WORKER_ALIVE_WINDOW = 15.0


def probe(check: Callable[[], Any]) -> dict[str, Any]:
    """Run `check`; healthy with its latency, or unhealthy with the reason."""
    started = time.perf_counter()
    try:
        detail = check()
    except Exception as exc:  # a probe reports every failure, whatever its type
        log.warning("health probe failed: %s", exc)
        return {
            "status": UNHEALTHY,
            "latency_ms": None,
            "detail": f"{type(exc).__name__}: {exc}"[:200],
        }
    result = {"status": HEALTHY, "latency_ms": round((time.perf_counter() - started) * 1000, 2)}
    if detail:
        result["detail"] = detail
    return result


def ping_mongo(db: Database, timeout_s: float = 1.0) -> Callable[[], None]:
    def check() -> None:
        # Client-side operation timeout: bounds server selection too, so a
        # dead server answers in timeout_s, not serverSelectionTimeoutMS.
        with pymongo.timeout(timeout_s):
            db.command("ping")

    return check


def ping_redis(client: redis.Redis) -> Callable[[], None]:
    return lambda: client.ping() and None


def record_worker_heartbeat(client: redis.Redis, worker: str, now: float) -> None:
    pipe = client.pipeline()
    pipe.zadd(WORKER_HEARTBEATS, {worker: now})
    pipe.zremrangebyscore(WORKER_HEARTBEATS, "-inf", now - WORKER_ALIVE_WINDOW * 4)
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
    if any(services[name]["status"] != HEALTHY for name in critical):
        return UNHEALTHY
    if any(s["status"] != HEALTHY for s in services.values()):
        return DEGRADED
    return HEALTHY
