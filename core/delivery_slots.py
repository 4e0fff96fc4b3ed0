"""Which due deliveries a sweep sends, and each endpoint's slots.

Each endpoint has at most `max_in_flight` attempts at once (slots in Redis):
a receiver that hangs ties up that many senders, never all of them, so it
never slows another endpoint's deliveries.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import redis
from pymongo.database import Database

from core import deliveries

log = logging.getLogger(__name__)

# A delivery due, and its endpoint: (delivery id, endpoint id).
Due = tuple[str, str]


def due(
    db: Database, *, now: datetime, limit: int = 1000, excluding: frozenset[str] = frozenset()
) -> list[Due]:
    """The deliveries whose next attempt is due, oldest first, with their
    endpoints, but for those of `excluding` (some may be under way: their
    leases say so, and core.deliveries.claim passes them over)."""
    query: dict[str, Any] = {"state": deliveries.PENDING, "next_at": {"$lte": now}}
    if excluding:
        query["endpoint_id"] = {"$nin": sorted(excluding)}
    found = db.webhook_deliveries.find(query, {"endpoint_id": 1}).limit(limit)
    return [(d["_id"], d["endpoint_id"]) for d in found]


def sendable(
    client: redis.Redis, todo: list[Due], *, now: float, policy: deliveries.Policy
) -> list[str]:
    """Of `todo`, as many of each endpoint's as it has free slots: the rest stay
    due, untouched, for a later sweep (an endpoint that hangs keeps its
    deliveries waiting at the cost of one read per sweep, not a write each)."""
    return _sendable(client, todo, now=now, policy=policy)[0]


def _sendable(
    client: redis.Redis, todo: list[Due], *, now: float, policy: deliveries.Policy
) -> tuple[list[str], frozenset[str]]:
    """sendable(), and the endpoints of `todo` that had no room for all of theirs."""
    endpoints = sorted({endpoint for _, endpoint in todo})
    room = {
        endpoint: policy.max_in_flight - busy
        for endpoint, busy in (in_flight(client, endpoints, now) if endpoints else {}).items()
    }
    taken, full = [], set()
    for delivery_id, endpoint in todo:
        if room[endpoint] > 0:
            room[endpoint] -= 1
            taken.append(delivery_id)
        else:
            full.add(endpoint)
    return taken, frozenset(full)


def due_to_send(
    db: Database,
    client: redis.Redis,
    *,
    now: datetime,
    policy: deliveries.Policy,
    limit: int = 1000,
) -> list[str]:
    """What a sweep sends: the deliveries due, as many of each endpoint's as it
    has room for. The oldest come first, so an endpoint that hangs with a
    backlog past `limit` would fill every sweep's window with deliveries it has
    no room for: then the window is read again without it, and every other
    endpoint's due deliveries (retries, those no dispatch could hand out) go."""
    found = due(db, now=now, limit=limit)
    taken, full = _sendable(client, found, now=now.timestamp(), policy=policy)
    if len(found) == limit and full:
        others = due(db, now=now, limit=limit, excluding=full)
        taken += sendable(client, others, now=now.timestamp(), policy=policy)
    return list(dict.fromkeys(taken))


# A sorted set per endpoint: delivery id -> when its hold runs out. A sender
# that dies holding one loses it when the lease would have run out anyway.

_TAKE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[5])
return 1
"""


def slots_key(endpoint_id: str) -> str:
    return f"webhooks:slots:{endpoint_id}"


def take_slot(
    client: redis.Redis, endpoint_id: str, delivery_id: str, now: float, policy: deliveries.Policy
) -> bool:
    until = now + policy.lease_s
    taken = client.eval(
        _TAKE,
        1,
        slots_key(endpoint_id),
        now,
        until,
        policy.max_in_flight,
        delivery_id,
        int(policy.lease_s) + 1,
    )
    return bool(taken)


def give_slot(client: redis.Redis, endpoint_id: str, delivery_id: str) -> None:
    try:
        client.zrem(slots_key(endpoint_id), delivery_id)
    except redis.RedisError as exc:  # the hold runs out by itself
        log.warning("webhook slot not given back: %s", exc)


def in_flight(client: redis.Redis, endpoint_ids: list[str], now: float) -> dict[str, int]:
    """Attempts under way per endpoint."""
    pipe = client.pipeline(transaction=False)
    for endpoint_id in endpoint_ids:
        pipe.zcount(slots_key(endpoint_id), now, "+inf")
    return dict(zip(endpoint_ids, pipe.execute(), strict=True))
