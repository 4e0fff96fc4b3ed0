"""Operational figures, collected in every process and kept in Redis.

Every ingress process tallies its requests (count, status, latency) and adds
them to Redis once a second (core.flushing); every worker process records its
tasks (queue wait, run time) with one pipelined round trip per task or group.
Latency percentiles come from the last SAMPLES values per endpoint or task
type. Queue depths are sampled by a beat task (one sampler, not every ingress)
and kept as a short history per queue, so a backlog that keeps growing is
visible. Every host's memory in use (its container's limit when it has one) is
reported by its ingress and worker processes every few seconds.

Reading them back, summed over all processes, is core.figures; the advice
drawn from them, core.scaling; the drain rate behind a full queue's
Retry-After, core.backpressure.
"""

from __future__ import annotations

import json
import logging
import math
import socket
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import redis
from pymongo.database import Database

from core import deliveries, queues
from core.errors import REDIS_ERRORS
from core.flushing import PeriodicFlush
from core.settings import Settings

log = logging.getLogger(__name__)
QUEUE_DEPTH_HISTORY = 40  # samples kept per queue
SAMPLES = 1000  # latency samples kept per endpoint / task type
RPS_WINDOW_S = 60

# Every key here is bounded, whatever the traffic: hashes have fields from fixed
# sets (endpoint_name(), registered task types, customers), lists are trimmed,
# and the per-second counters expire.
REQUESTS = (
    "metrics:requests"  # hash: "<endpoint>|count", "<endpoint>|ms", "<endpoint>|status|<code>"
)
TASKS = "metrics:tasks"  # hash: "<type>|count", "<type>|failed" (registered task names)
# Webhook deliveries: hash "<endpoint_id>|attempts|failed_attempts|delivered|failed";
# a list of the latest delivered events' lags, commit to 2xx (ms).
WEBHOOKS = "metrics:webhooks"
WEBHOOK_LAG = "metrics:webhooks:lag"
WEBHOOK_COUNTS = ("delivered", "failed", "attempts", "failed_attempts")
# list: the pending deliveries as beat samples them with the queue depths
# ({"at", "messages"}, newest first, QUEUE_DEPTH_HISTORY of them).
WEBHOOK_BACKLOG = "metrics:webhooks:backlog"
# hash: "<customer_id>|count", "<customer_id>|errors" (4xx and 5xx): as many
# fields as customers, whom only the admin creates.
CUSTOMER_REQUESTS = "metrics:customers"
# hash: "<endpoint>|<reason>" -> requests the ingress shed (core.overload's
# reasons): as many fields as endpoint names times two.
SHED = "metrics:shed"
# hash: "<host>" -> "<fraction of memory used>|<unix time>": as many fields as
# hosts reported within MEMORY_FRESH_S (older ones are dropped when read).
MEMORY = "metrics:memory"
MEMORY_INTERVAL_S = 5.0  # how often each process reports its host's memory
MEMORY_FRESH_S = 60.0
# hash: "<program>" -> times `make run`'s supervisor restarted that process
# after it died (tools.supervisor_events): as many fields as programs in its
# configuration, each there from the program's first start (at 0).
PROCESS_RESTARTS = "metrics:process_restarts"
# counters "metrics:drained:<queue>:<second>" (drained_key), kept this many
# seconds: core.backpressure's drain rate is taken over them.
DRAIN_WINDOW_S = 10
# The backlog is counted over at most this many pending deliveries (one index
# scan of {state, next_at}): past it, the count says "at least".
WEBHOOK_BACKLOG_SCAN = 100_000


# Request metric names come from a fixed set, so no request can add a hash
# field or a latency list: "<method> <url rule>" for a known method on a matched
# rule, OTHER_ENDPOINT for everything else (made-up methods, unmatched paths).
KNOWN_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
OTHER_ENDPOINT = "(other)"


def endpoint_name(method: str, rule: str | None) -> str:
    if rule is None or method not in KNOWN_METHODS:
        return OTHER_ENDPOINT
    return f"{method} {rule}"


def queue_depth_key(queue: str) -> str:
    return f"metrics:queue_depth:{queue}"


def latency_key(endpoint: str) -> str:
    return f"metrics:latency:{endpoint}"


def rps_key(second: int) -> str:
    return f"metrics:rps:{second}"


def task_key(kind: str, task_type: str) -> str:
    return f"metrics:task_{kind}:{task_type}"


def drained_key(queue: str, second: int) -> str:
    return f"metrics:drained:{queue}:{second}"


# -- requests and tasks (hot path: requests tallied here, tasks one round trip) ----------


class RequestTally:
    """This process's request figures, added to Redis once a second
    (core.flushing): recording a request costs no round trip."""

    def __init__(self, client: redis.Redis):
        self.redis = client
        self._lock = threading.Lock()
        self._counts: Counter[tuple[str, str]] = Counter()  # (hash, field) -> n
        self._ms: Counter[str] = Counter()  # endpoint -> summed ms
        self._latencies: dict[str, list[float]] = {}
        self._per_second: Counter[int] = Counter()
        self._memory_at = -math.inf  # when this process last reported its host's memory
        self._flusher = PeriodicFlush("request-metrics", self._write)

    def record(
        self,
        endpoint: str,
        status: int,
        ms: float,
        now: float,
        *,
        customer_id: str | None = None,
    ) -> None:
        self._flusher.start()
        with self._lock:
            if customer_id is not None:
                self._counts[(CUSTOMER_REQUESTS, f"{customer_id}|count")] += 1
                if status >= 400:
                    self._counts[(CUSTOMER_REQUESTS, f"{customer_id}|errors")] += 1
            self._counts[(REQUESTS, f"{endpoint}|count")] += 1
            self._counts[(REQUESTS, f"{endpoint}|status|{status}")] += 1
            self._ms[endpoint] += ms
            samples = self._latencies.setdefault(endpoint, [])
            if len(samples) < SAMPLES:
                samples.append(round(ms, 3))
            self._per_second[int(now)] += 1

    def record_shed(self, endpoint: str, reason: str) -> None:
        """A request shed at the door (core.overload), besides its record()."""
        with self._lock:
            self._counts[(SHED, f"{endpoint}|{reason}")] += 1

    def flush(self) -> None:
        """Add what was recorded so far to Redis (one pipeline), with the host's
        memory every MEMORY_INTERVAL_S; figures Redis refuses (down, OOM) are
        logged and dropped."""
        self._flusher.flush()

    def _write(self) -> None:
        now = time.time()
        with self._lock:
            counts, self._counts = self._counts, Counter()
            summed, self._ms = self._ms, Counter()
            latencies, self._latencies = self._latencies, {}
            per_second, self._per_second = self._per_second, Counter()
            memory_due = now - self._memory_at >= MEMORY_INTERVAL_S
            if memory_due:
                self._memory_at = now
        if not counts and not memory_due:
            return
        pipe = self.redis.pipeline(transaction=False)
        if memory_due:
            record_memory(pipe, now)
        for (key, field), n in counts.items():
            pipe.hincrby(key, field, n)
        for endpoint, ms in summed.items():
            pipe.hincrbyfloat(REQUESTS, f"{endpoint}|ms", round(ms, 3))
        for endpoint, samples in latencies.items():
            pipe.lpush(latency_key(endpoint), *samples)
            pipe.ltrim(latency_key(endpoint), 0, SAMPLES - 1)
        for second, n in per_second.items():
            pipe.incrby(rps_key(second), n)
            pipe.expire(rps_key(second), RPS_WINDOW_S * 2)
        try:
            pipe.execute()
        except REDIS_ERRORS as exc:
            log.warning("request metrics skipped: %s", exc)


def record_tasks(
    client: redis.Redis,
    task_type: str,
    *,
    wait_ms: list[float],
    run_ms: float,
    count: int = 1,
    failed: int = 0,
    queue: str | None = None,
    now: float | None = None,
) -> None:
    """`count` tasks of `task_type` taken off `queue` (one, or a group run
    together by workers.batches), in one round trip: counts, the waits known,
    each one's run time, and the drain rate a full queue's Retry-After comes
    from (with `queue`)."""
    pipe = client.pipeline(transaction=False)
    if queue is not None:
        key = drained_key(queue, int(now if now is not None else time.time()))
        pipe.incrby(key, count)
        pipe.expire(key, DRAIN_WINDOW_S * 2)
    pipe.hincrby(TASKS, f"{task_type}|count", count)
    if failed:
        pipe.hincrby(TASKS, f"{task_type}|failed", failed)
    if wait_ms:
        pipe.lpush(task_key("wait", task_type), *(round(w, 3) for w in wait_ms))
        pipe.ltrim(task_key("wait", task_type), 0, SAMPLES - 1)
    if count:
        pipe.lpush(task_key("run", task_type), *([round(run_ms, 3)] * count))
        pipe.ltrim(task_key("run", task_type), 0, SAMPLES - 1)
    pipe.execute()


def record_webhook(client: redis.Redis, outcome: Any, *, now: float) -> None:
    """One delivery attempt (core.deliveries.Outcome) in the webhook counters:
    per endpoint, attempts delivered, failed, given up; the lag from a
    delivered event's commit to its 2xx."""
    if outcome.attempt is None and outcome.state is None:
        return  # not attempted: taken by another sender, or waiting for a slot
    endpoint = outcome.endpoint_id or OTHER_ENDPOINT
    pipe = client.pipeline(transaction=False)
    if outcome.attempt is not None:
        pipe.hincrby(WEBHOOKS, f"{endpoint}|attempts", 1)
        if not outcome.attempt.ok:
            pipe.hincrby(WEBHOOKS, f"{endpoint}|failed_attempts", 1)
    if outcome.state == "delivered":
        pipe.hincrby(WEBHOOKS, f"{endpoint}|delivered", 1)
    elif outcome.state == "failed":
        pipe.hincrby(WEBHOOKS, f"{endpoint}|failed", 1)
    if outcome.lag_ms is not None:
        pipe.lpush(WEBHOOK_LAG, round(outcome.lag_ms, 3))
        pipe.ltrim(WEBHOOK_LAG, 0, SAMPLES - 1)
    pipe.execute()


def record_restarts(client: redis.Redis, restarts: dict[str, int]) -> None:
    """Add `restarts` (program -> restarts since the last call; 0 makes the
    program's counter exist, so a scraper sees its first restart as a rise)."""
    pipe = client.pipeline(transaction=False)
    for program, n in restarts.items():
        pipe.hincrby(PROCESS_RESTARTS, program, n)
    pipe.execute()


# -- queue depths and the webhook backlog (beat samples them) ----------------------------


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


def sample_webhook_backlog(client: redis.Redis, db: Database, now: float) -> int:
    """The pending webhook deliveries, added to their history as a queue's
    depth is (beat's, with the queue depths); returns how many."""
    backlog, _ = webhook_backlog(db, datetime.fromtimestamp(now, UTC))
    pending = sum(entry["pending"] for entry in backlog.values())
    pipe = client.pipeline(transaction=False)
    pipe.lpush(WEBHOOK_BACKLOG, json.dumps({"at": now, "messages": pending}))
    pipe.ltrim(WEBHOOK_BACKLOG, 0, QUEUE_DEPTH_HISTORY - 1)
    pipe.execute()
    return pending


def webhook_backlog(db: Database, now: datetime) -> tuple[dict[str, dict[str, int]], bool]:
    """Pending deliveries per endpoint ("pending"), and of them the ones due
    ("due": their senders' backlog; the others wait for a retry). One scan of
    the {state, next_at} index over at most WEBHOOK_BACKLOG_SCAN deliveries;
    returns (endpoint_id -> counts, whether the scan stopped there)."""
    rows = db.webhook_deliveries.aggregate(
        [
            {"$match": {"state": deliveries.PENDING}},
            {"$limit": WEBHOOK_BACKLOG_SCAN},
            {
                "$group": {
                    "_id": "$endpoint_id",
                    "pending": {"$sum": 1},
                    "due": {"$sum": {"$cond": [{"$lte": ["$next_at", now]}, 1, 0]}},
                }
            },
        ]
    )
    backlog = {row["_id"]: {"pending": row["pending"], "due": row["due"]} for row in rows}
    return backlog, sum(entry["pending"] for entry in backlog.values()) >= WEBHOOK_BACKLOG_SCAN


# -- memory ------------------------------------------------------------------------------


def memory_used(root: Path = Path("/")) -> float | None:
    """Fraction of the memory this process may use that is in use: its
    container's (cgroup v2 or v1) when it has a limit below the host's memory,
    else the host's (/proc/meminfo). None where neither can be read. `root`:
    where /proc and /sys are (tests pass a folder of their own)."""
    try:
        with open(root / "proc/meminfo") as meminfo:
            values = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in meminfo}
        total, available = values["MemTotal"], values["MemAvailable"]
    except (OSError, KeyError, ValueError, IndexError):
        return None
    limited = _cgroup_memory(root)
    if limited is not None and limited[1] < total:
        used, limit = limited
        return round(used / limit, 4)
    return round(1 - available / total, 4)


# (limit, usage, stat file, the page cache the kernel reclaims first) per cgroup version
_CGROUPS = (
    ("sys/fs/cgroup/memory.max", "sys/fs/cgroup/memory.current", "sys/fs/cgroup/memory.stat",
     "inactive_file"),
    ("sys/fs/cgroup/memory/memory.limit_in_bytes", "sys/fs/cgroup/memory/memory.usage_in_bytes",
     "sys/fs/cgroup/memory/memory.stat", "total_inactive_file"),
)  # fmt: skip


def _cgroup_memory(root: Path) -> tuple[int, int] | None:
    """(bytes in use, limit) of this process's cgroup, when it has a limit. In
    use: its working set, the usage less the inactive page cache the kernel
    reclaims first (what `docker stats` shows)."""
    for limit_file, usage_file, stat_file, inactive in _CGROUPS:
        try:
            raw = (root / limit_file).read_text().strip()
            if raw == "max":
                return None
            limit, usage = int(raw), int((root / usage_file).read_text())
            stat = dict(line.split() for line in (root / stat_file).read_text().splitlines())
            return max(0, usage - int(stat.get(inactive, 0))), limit
        except (OSError, ValueError):
            continue
    return None


def record_memory(client: redis.Redis, now: float, host: str | None = None) -> None:
    """This host's memory_used() under its name (a pipeline's caller executes it)."""
    used = memory_used()
    if used is None:
        return
    client.hset(MEMORY, host or socket.gethostname(), f"{used}|{now}")
    client.expire(MEMORY, int(MEMORY_FRESH_S * 2))  # gone once every process has stopped
