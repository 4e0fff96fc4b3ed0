"""Operational figures shared across processes through Redis.

Queue depths are sampled by a beat task (one sampler, not every ingress) and
kept as a short history per queue, so a backlog that keeps growing is visible.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

import redis

from core import queues
from core.settings import Settings

QUEUE_DEPTH_HISTORY = 40  # samples kept per queue


def queue_depth_key(queue: str) -> str:
    return f"metrics:queue_depth:{queue}"


class AmqpChannel(Protocol):
    def queue_declare(self, queue: str, passive: bool = ...) -> Any: ...


def sample_queue_depths(
    client: redis.Redis, channel: AmqpChannel, settings: Settings, now: float
) -> dict[str, dict[str, Any]]:
    samples = {}
    pipe = client.pipeline()
    for queue in queues.ALL_QUEUES:
        ok = channel.queue_declare(
            queue=queues.queue_name(queue, settings.QUEUE_NAMESPACE), passive=True
        )
        sample = {"at": now, "messages": ok.message_count, "consumers": ok.consumer_count}
        samples[queue] = sample
        pipe.lpush(queue_depth_key(queue), json.dumps(sample))
        pipe.ltrim(queue_depth_key(queue), 0, QUEUE_DEPTH_HISTORY - 1)
    pipe.execute()
    return samples


def queue_depth_history(client: redis.Redis, queue: str) -> list[dict[str, Any]]:
    """Newest first."""
    return [json.loads(raw) for raw in client.lrange(queue_depth_key(queue), 0, -1)]
