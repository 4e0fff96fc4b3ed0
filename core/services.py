"""The per-process bundle of clients that views and tasks are handed.

Built by the Flask app factory and on Celery worker process start, never at
import: pymongo's pools do not survive a fork.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import redis
from pymongo import MongoClient
from pymongo.database import Database

from core.awb import SerialStock
from core.cache import Cache
from core.db import connect_mongo, database
from core.locks import LockManager
from core.settings import Settings


def connect_redis(
    settings: Settings, url: str | None = None, *, timeout_s: float | None = None
) -> redis.Redis:
    """A client of REDIS_URL, or of `url` with the same pool and timeouts
    (REDIS_TIMEOUT_S, or `timeout_s`)."""
    timeout_s = timeout_s or settings.REDIS_TIMEOUT_S
    return redis.Redis.from_url(
        url or settings.REDIS_URL,
        decode_responses=True,
        max_connections=settings.REDIS_POOL_SIZE,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        health_check_interval=30,
    )


def connect_lock_masters(settings: Settings) -> list[redis.Redis]:
    """Clients of LOCK_REDIS_URLS; none when that is unset (the locks then use
    the app's Redis client, and no second pool)."""
    if not settings.LOCK_REDIS_URLS:
        return []
    return [connect_redis(settings, url) for url in settings.lock_redis_urls]


@dataclass
class Services:
    settings: Settings
    mongo: MongoClient
    redis: redis.Redis
    lock_masters: list[redis.Redis] = field(default_factory=list)  # empty: `redis`
    db: Database = field(init=False)
    cache: Cache = field(init=False)
    locks: LockManager = field(init=False)
    awb_stock: SerialStock = field(init=False)  # this process's AWB serials (core.awb)

    def __post_init__(self) -> None:
        self.db = database(self.mongo)
        self.cache = Cache(self.redis)
        self.locks = LockManager(self.redis, self.settings, masters=self.lock_masters)
        self.awb_stock = SerialStock(
            self.db.awb_counters, self.settings.AWB_PREFIX, self.settings.AWB_BLOCK_SIZE
        )

    def close(self) -> None:
        self.mongo.close()
        self.redis.close()
        for master in self.lock_masters:
            master.close()


def connect_services(settings: Settings) -> Services:
    return Services(
        settings=settings,
        mongo=connect_mongo(settings),
        redis=connect_redis(settings),
        lock_masters=connect_lock_masters(settings),
    )
