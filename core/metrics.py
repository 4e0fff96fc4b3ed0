"""Operational figures, collected in every process and aggregated in Redis.

Every ingress process tallies its requests (count, status, latency) and adds
them to Redis once a second (core.flushing); every worker process records its
tasks (queue wait, run time) with one pipelined round trip per task or group.
Readers see the sum over all processes (another process's last second late).
Latency percentiles come from the last SAMPLES values per endpoint or task
type. Queue depths are sampled by a beat task (one sampler, not every ingress)
and kept as a short history per queue, so a backlog that keeps growing is
visible. Every host's memory in use (its container's limit when it has one) is
reported by its ingress and worker processes every few seconds.
"""

from __future__ import annotations

import itertools
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

from core import deliveries, locks, queues, sizing
from core.cache import USERS
from core.errors import REDIS_ERRORS
from core.flushing import PeriodicFlush
from core.settings import Settings
from core.stats import percentiles

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
# hash: "<customer_id>|count", "<customer_id>|errors" (4xx and 5xx): as many
# fields as customers, whom only the admin creates.
# Webhook deliveries: hash "<endpoint_id>|attempts|failed_attempts|delivered|failed";
# a list of the latest delivered events' lags, commit to 2xx (ms).
WEBHOOKS = "metrics:webhooks"
WEBHOOK_LAG = "metrics:webhooks:lag"
# list: the pending deliveries as beat samples them with the queue depths
# ({"at", "messages"}, newest first, QUEUE_DEPTH_HISTORY of them).
WEBHOOK_BACKLOG = "metrics:webhooks:backlog"
CUSTOMER_REQUESTS = "metrics:customers"
# hash: "<endpoint>|<reason>" -> requests the ingress shed (core.overload's
# reasons): as many fields as endpoint names times two.
SHED = "metrics:shed"
TOP_CUSTOMERS = 20
# hash: "<host>" -> "<fraction of memory used>|<unix time>": as many fields as
# hosts reported within MEMORY_FRESH_S (older ones are dropped when read).
MEMORY = "metrics:memory"
MEMORY_INTERVAL_S = 5.0  # how often each process reports its host's memory
MEMORY_FRESH_S = 60.0
# hash: "<program>" -> times `make run`'s supervisor restarted that process
# after it died (tools.supervisor_events): as many fields as programs in its
# configuration, each there from the program's first start (at 0).
PROCESS_RESTARTS = "metrics:process_restarts"

# The spec's alerting thresholds, the one source of scalingRecommendations'
# checks and messages; deploy/prometheus/alerts.yml and the dashboard state the
# same numbers (tests/test_alerts.py checks). Constants, not settings: a
# deployment's override would part the app's advice from Prometheus' alerts.
P95_LIMIT_MS = 1000
CACHE_HIT_RATE_FLOOR = 0.70
LOCK_ACQUIRE_LIMIT_MS = 500
ERROR_RATE_LIMIT = 0.01
MEMORY_LIMIT = 0.80
GROWING_SAMPLES = 4  # consecutive rising queue-depth samples that mean "falling behind"
MIN_SAMPLE = 20  # below this many observations a rate says nothing
# Pending webhook deliveries past which the webhooks are behind: deliveries
# due now mean too few senders, deliveries waiting for a retry failing receivers.
WEBHOOK_BACKLOG_LIMIT = 10_000
# The endpoints shown one by one (the largest backlogs); the others are summed
# as OTHER_ENDPOINT on /metrics.
TOP_WEBHOOK_ENDPOINTS = 20
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


# -- backpressure ---------------------------------------------------------------------

DRAIN_WINDOW_S = 10  # the drain rate is the tasks taken off a queue over this many seconds
RETRY_AFTER_FULL_MAX_S = 300


def drain_rate(client: redis.Redis, queue: str, now: float) -> float:
    """Tasks per second the workers took off `queue` lately."""
    return sum(_drained_per_second(client, queue, now)) / DRAIN_WINDOW_S


def peak_drain_rate(client: redis.Redis, queue: str, now: float) -> float:
    """The most tasks the workers took off `queue` in one second lately: what
    they can do when busy. The mean over the window is what they were given,
    and after a quiet spell it would call a short burst hours of backlog."""
    return float(max(_drained_per_second(client, queue, now), default=0))


def _drained_per_second(client: redis.Redis, queue: str, now: float) -> list[int]:
    """The tasks taken off `queue` in each of the last DRAIN_WINDOW_S whole seconds."""
    second = int(now)
    keys = [drained_key(queue, second - n) for n in range(1, DRAIN_WINDOW_S + 1)]
    return [int(v) if v else 0 for v in client.mget(keys)]


def retry_after_full(backlog: int, rate: float) -> int:
    """Seconds until the workers have worked off a full queue's `backlog` at `rate`
    (the longest wait when nothing drains): a client that comes back then finds room,
    and clients that all came back sooner would only be refused again."""
    if rate <= 0:
        return RETRY_AFTER_FULL_MAX_S
    return max(1, min(RETRY_AFTER_FULL_MAX_S, math.ceil(backlog / rate)))


# -- recording (hot path: requests tallied here, tasks one round trip) -----------------


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


def shed_counters(client: redis.Redis) -> dict[str, dict[str, int]]:
    """endpoint -> {reason: requests shed}, every process's, since the counters began."""
    counters: dict[str, dict[str, int]] = {}
    for field, n in client.hgetall(SHED).items():
        endpoint, _, reason = field.rpartition("|")
        counters.setdefault(endpoint, {})[reason] = int(n)
    return counters


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


def restart_figures(client: redis.Redis) -> dict[str, int]:
    """Restarts per supervised program, by name."""
    return {p: int(n) for p, n in sorted(client.hgetall(PROCESS_RESTARTS).items())}


# -- queue depths -------------------------------------------------------------------------


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


def queue_depth_history(
    client: redis.Redis, queue: str, *, key: str | None = None
) -> list[dict[str, Any]]:
    """Newest first (`key`: a history kept elsewhere, as the webhook backlog's)."""
    return [json.loads(raw) for raw in client.lrange(key or queue_depth_key(queue), 0, -1)]


def is_growing(history: list[dict[str, Any]]) -> bool:
    """True when the last GROWING_SAMPLES samples rose each time (newest first)."""
    depths = [sample["messages"] for sample in history[:GROWING_SAMPLES]]
    return len(depths) == GROWING_SAMPLES and all(a > b for a, b in itertools.pairwise(depths))


def growth(history: list[dict[str, Any]]) -> tuple[float, float] | None:
    """(messages/s, over how many seconds) the queue grew across its last
    GROWING_SAMPLES samples (newest first); None unless it is growing."""
    if not is_growing(history):
        return None
    newest, oldest = history[0], history[GROWING_SAMPLES - 1]
    seconds = max(newest["at"] - oldest["at"], 1e-3)
    return (newest["messages"] - oldest["messages"]) / seconds, seconds


# -- reading ---------------------------------------------------------------------------------


def request_figures(client: redis.Redis, now: float) -> dict[str, Any]:
    raw = client.hgetall(REQUESTS)
    endpoints: dict[str, dict[str, Any]] = {}
    for field, value in raw.items():
        endpoint, _, rest = field.partition("|")
        entry = endpoints.setdefault(endpoint, {"count": 0, "ms": 0.0, "statuses": {}})
        if rest == "count":
            entry["count"] = int(value)
        elif rest == "ms":
            entry["ms"] = float(value)
        elif rest.startswith("status|"):
            entry["statuses"][rest.split("|", 1)[1]] = int(value)
    seconds = [rps_key(int(now) - s) for s in range(RPS_WINDOW_S)]  # this second included
    recent = sum(int(v or 0) for v in client.mget(seconds))
    pipe = client.pipeline(transaction=False)
    for endpoint in endpoints:
        pipe.lrange(latency_key(endpoint), 0, -1)
    samples = pipe.execute()
    total = total_ms = 0
    result = {}
    for (endpoint, entry), values in zip(endpoints.items(), samples, strict=True):
        count = entry["count"]
        total += count
        total_ms += entry["ms"]
        client_errors = sum(n for s, n in entry["statuses"].items() if s.startswith("4"))
        server_errors = sum(n for s, n in entry["statuses"].items() if s.startswith("5"))
        result[endpoint] = {
            "count": count,
            "latency_ms": {
                **percentiles([float(v) for v in values]),
                "average": round(entry["ms"] / count, 2) if count else None,
            },
            "errors": {
                "client": client_errors,
                "server": server_errors,
                "by_status": {s: n for s, n in sorted(entry["statuses"].items()) if s[0] in "45"},
            },
            "error_rate": round(server_errors / count, 4) if count else 0.0,
        }
    return {
        "total": total,
        "average_ms": round(total_ms / total, 2) if total else 0.0,
        "requests_per_second": round(recent / RPS_WINDOW_S, 2),
        "endpoints": result,
    }


def customer_figures(client: redis.Redis) -> dict[str, dict[str, int]]:
    """Requests and error answers per customer, the TOP_CUSTOMERS busiest first."""
    figures: dict[str, dict[str, int]] = {}
    for field, value in client.hgetall(CUSTOMER_REQUESTS).items():
        customer_id, _, kind = field.partition("|")
        figures.setdefault(customer_id, {"requests": 0, "errors": 0})
        figures[customer_id]["requests" if kind == "count" else "errors"] = int(value)
    busiest = sorted(figures.items(), key=lambda item: -item[1]["requests"])[:TOP_CUSTOMERS]
    return dict(busiest)


def task_figures(client: redis.Redis) -> dict[str, Any]:
    raw = client.hgetall(TASKS)
    types = sorted({field.partition("|")[0] for field in raw})
    pipe = client.pipeline(transaction=False)
    for task_type in types:
        pipe.lrange(task_key("wait", task_type), 0, -1)
        pipe.lrange(task_key("run", task_type), 0, -1)
    lists = pipe.execute()
    figures = {}
    for i, task_type in enumerate(types):
        figures[task_type] = {
            "count": int(raw.get(f"{task_type}|count", 0)),
            "failed": int(raw.get(f"{task_type}|failed", 0)),
            "queue_wait_ms": percentiles([float(v) for v in lists[2 * i]]),
            "run_ms": percentiles([float(v) for v in lists[2 * i + 1]]),
        }
    return figures


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


def memory_by_host(client: redis.Redis, now: float) -> dict[str, float]:
    """The fraction of memory in use of every host that reported it lately;
    hosts silent for MEMORY_FRESH_S (stopped, replaced) are dropped."""
    fresh, stale = {}, []
    for host, value in client.hgetall(MEMORY).items():
        used, _, at = value.partition("|")
        if now - float(at) <= MEMORY_FRESH_S:
            fresh[host] = float(used)
        else:
            stale.append(host)
    if stale:
        client.hdel(MEMORY, *stale)
    return dict(sorted(fresh.items()))


def overall_hit_rate(kinds: dict[str, dict[str, Any]]) -> tuple[float | None, int]:
    """Over the data caches. API key lookups are left out: one per keyed request,
    nearly all hits, they would drown a failing route cache in the spec's alert."""
    data = [k for kind, k in kinds.items() if kind != USERS]
    hits = sum(k["hits"] for k in data)
    lookups = hits + sum(k["misses"] for k in data)
    return (round(hits / lookups, 4) if lookups else None), lookups


def recommendations(figures: dict[str, Any]) -> list[dict[str, str]]:
    """The spec's thresholds, applied to the figures of performance_figures()."""
    advice = []
    for endpoint, entry in figures["requests"]["endpoints"].items():
        p95 = entry["latency_ms"]["p95"]
        if p95 is not None and p95 > P95_LIMIT_MS:
            advice.append(
                {
                    "type": "scale_up",
                    "component": "backend",
                    "reason": f"P95 response time {p95:.0f} ms on {endpoint} (> {P95_LIMIT_MS} ms)",
                    "priority": "HIGH",
                }
            )
        if entry["count"] >= MIN_SAMPLE and entry["error_rate"] > ERROR_RATE_LIMIT:
            advice.append(
                {
                    "type": "investigate",
                    "component": "backend",
                    "reason": f"Error rate {entry['error_rate']:.1%} on {endpoint}"
                    f" (> {ERROR_RATE_LIMIT:.0%})",
                    "priority": "HIGH",
                }
            )
    unbalanced = (figures.get("ledger") or {}).get("flights_unbalanced")
    if unbalanced:
        advice.append(
            {
                "type": "repair_ledger",
                "component": "database",
                "reason": f"{unbalanced} flights' cargo space does not match their reservations"
                " and bookings: `make ledger` names them, `make ledger-repair` sets them right",
                "priority": "HIGH",
            }
        )
    rate, lookups = figures["cache"]["hit_rate"], figures["cache"]["lookups"]
    if rate is not None and lookups >= MIN_SAMPLE and rate < CACHE_HIT_RATE_FLOOR:
        advice.append(
            {
                "type": "optimize_caching",
                "component": "cache",
                "reason": f"Cache hit rate {rate:.1%} (< {CACHE_HIT_RATE_FLOOR:.0%})",
                "priority": "MEDIUM",
            }
        )
    slow_locks = slow_lock_kinds(figures["locks"])
    if slow_locks:
        advice.append(
            {
                "type": "reduce_contention",
                "component": "locks",
                "reason": "Lock acquisition P95 "
                + ", ".join(
                    f"{p95:.0f} ms " + ("over all locks" if kind == "all" else f"on {kind} locks")
                    for kind, p95 in slow_locks.items()
                )
                + f" (> {LOCK_ACQUIRE_LIMIT_MS} ms)",
                "priority": "HIGH",
            }
        )
    memory = figures["memory"]
    hosts = memory.get("by_host") or {"this host": memory["used"]}
    for host, used in hosts.items():
        if used is not None and used > MEMORY_LIMIT:
            advice.append(
                {
                    "type": "scale_up",
                    "component": "memory",
                    "reason": f"Memory {used:.0%} used on {host} (> {MEMORY_LIMIT:.0%})",
                    "priority": "HIGH",
                }
            )
    for queue, entry in figures["queues"].items():
        if entry["growing"]:
            rate, seconds = entry["growth_per_s"], entry["growing_for_s"]
            add = sizing.workers_to_add(queue, rate)
            advice.append(
                {
                    "type": "scale_workers",
                    "component": f"queue:{queue}",
                    "reason": f"The {queue} queue has grown for {seconds:.0f} s at {rate:.1f}/s"
                    f" (now {entry['messages']}): add {add} {queue} worker process"
                    f"{'es' if add > 1 else ''} (each works off"
                    f" ~{sizing.JOBS_PER_PROCESS_S[queue]:.0f}/s, core.sizing)",
                    "priority": "HIGH",
                }
            )
    hooks = figures.get("webhooks")
    advice_on_hooks = webhook_advice(hooks) if hooks else None
    if advice_on_hooks is not None:
        advice.append(advice_on_hooks)
    return advice


def slow_lock_kinds(lock_stats: dict[str, Any]) -> dict[str, float]:
    """Acquisition p95 over the limit: of all locks, and of each kind, since
    one contended flight can hide among many quick booking locks."""
    figures = {"all": lock_stats, **lock_stats.get("by_kind", {})}
    p95s = {kind: f["acquire_ms"]["p95"] for kind, f in figures.items()}
    return {
        kind: p95 for kind, p95 in p95s.items() if p95 is not None and p95 > LOCK_ACQUIRE_LIMIT_MS
    }


def lock_figures(client: redis.Redis, held: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Every lock's figures (core.locks.lock_metrics), and each kind's apart
    under by_kind: flight locks contend per flight, booking locks per booking.
    `held`: LockManager.held(), when the locks live on other masters than `client`."""
    if held is None:
        held = locks.held_locks(client)  # one scan of the keyspace for all of them
    return {
        **locks.lock_metrics(client, held=held),
        "by_kind": {kind: locks.lock_metrics(client, kind, held) for kind in locks.LOCK_KINDS},
    }


def queue_figures(client: redis.Redis) -> dict[str, Any]:
    figures = {}
    for queue in queues.ALL_QUEUES:
        history = queue_depth_history(client, queue)
        latest = history[0] if history else {}
        grew = growth(history)
        figures[queue] = {
            "messages": latest.get("messages"),
            "consumers": latest.get("consumers"),
            "sampled_at": latest.get("at"),
            "growing": grew is not None,
            "growth_per_s": round(grew[0], 2) if grew else None,
            "growing_for_s": round(grew[1], 1) if grew else None,
            "history": [s["messages"] for s in history[:10]],
        }
    return figures


# -- webhooks ------------------------------------------------------------------------

WEBHOOK_COUNTS = ("delivered", "failed", "attempts", "failed_attempts")


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


def webhook_counters(client: redis.Redis) -> dict[str, dict[str, int]]:
    """WEBHOOK_COUNTS per endpoint, as record_webhook counted them."""
    counters: dict[str, dict[str, int]] = {}
    for field, value in client.hgetall(WEBHOOKS).items():
        endpoint, _, kind = field.partition("|")
        if kind in WEBHOOK_COUNTS:
            counters.setdefault(endpoint, dict.fromkeys(WEBHOOK_COUNTS, 0))[kind] = int(value)
    return counters


def webhook_figures(client: redis.Redis, db: Database, now: float) -> dict[str, Any]:
    """Deliveries, failures, backlog and attempts under way: in total, and for
    the TOP_WEBHOOK_ENDPOINTS endpoints with the largest backlog; the lag from
    an event's commit to its 2xx; whether the backlog keeps growing."""
    counters = webhook_counters(client)
    backlog, capped = webhook_backlog(db, datetime.fromtimestamp(now, UTC))
    ids = sorted(set(counters) | set(backlog))
    flying = deliveries.in_flight(client, ids, now) if ids else {}
    empty = dict.fromkeys(WEBHOOK_COUNTS, 0)
    per = {
        endpoint: {
            **counters.get(endpoint, empty),
            "backlog": backlog.get(endpoint, {}).get("pending", 0),
            "due": backlog.get(endpoint, {}).get("due", 0),
            "in_flight": flying[endpoint],
        }
        for endpoint in ids
    }
    fields = (*WEBHOOK_COUNTS, "backlog", "due", "in_flight")
    top = sorted(ids, key=lambda e: (-per[e]["backlog"], -per[e]["in_flight"], e))
    history = queue_depth_history(client, "webhooks", key=WEBHOOK_BACKLOG)
    grew = growth(history)
    return {
        **{name: sum(entry[name] for entry in per.values()) for name in fields},
        "backlog_capped": capped,
        "disabled_endpoints": db.webhook_endpoints.count_documents({"enabled": False}),
        "lag_ms": percentiles([float(v) for v in client.lrange(WEBHOOK_LAG, 0, -1)]),
        "backlog_growing": grew is not None,
        "growth_per_s": round(grew[0], 2) if grew else None,
        "growing_for_s": round(grew[1], 1) if grew else None,
        "history": [sample["messages"] for sample in history[:10]],
        "endpoints": [{"endpoint_id": e, **per[e]} for e in top[:TOP_WEBHOOK_ENDPOINTS]],
    }


def webhook_advice(hooks: dict[str, Any]) -> dict[str, str] | None:
    """Advice when the backlog is past WEBHOOK_BACKLOG_LIMIT or keeps growing:
    more senders when most of it is due, else a word about the receivers that
    fail (the endpoints holding most of it)."""
    if hooks["backlog"] < WEBHOOK_BACKLOG_LIMIT and not hooks["backlog_growing"]:
        return None
    pending, due = hooks["backlog"], hooks["due"]
    reason = f"{pending:,} webhook deliveries pending ({due:,} due, {pending - due:,} waiting"
    reason += " for a retry)"
    if hooks["backlog_growing"]:
        reason += f", grown for {hooks['growing_for_s']:.0f} s at {hooks['growth_per_s']:.1f}/s"
    if due * 2 >= pending:
        return {
            "type": "scale_workers",
            "component": f"queue:{queues.WEBHOOKS}",
            "reason": reason + ": add webhooks worker processes (WEBHOOK_PROCESSES) or senders"
            " per process (WEBHOOK_CONCURRENCY)",
            "priority": "HIGH",
        }
    largest = ", ".join(
        f"{e['endpoint_id']} ({e['backlog']:,})" for e in hooks["endpoints"][:3] if e["backlog"]
    )
    return {
        "type": "investigate",
        "component": "webhooks",
        "reason": reason + f": receivers are failing, most of it for {largest} (their"
        " deliveries lists say why)",
        "priority": "MEDIUM",
    }


def performance_figures(
    client: redis.Redis,
    cache_stats: dict[str, Any],
    lock_stats: dict[str, Any],
    now: float,
    ledger: dict[str, Any] | None = None,
    *,
    db: Database,
) -> dict[str, Any]:
    """Everything /api/admin/performance reports, recommendations included;
    `ledger`: the last cargo-space audit's totals (core.ledger.last_check);
    `db`: where the webhook deliveries pending are counted."""
    rate, lookups = overall_hit_rate(cache_stats["kinds"])
    figures = {
        "requests": request_figures(client, now),
        "customers": customer_figures(client),
        "tasks": task_figures(client),
        "cache": {"hit_rate": rate, "lookups": lookups, **cache_stats},
        "locks": lock_stats,
        "queues": queue_figures(client),
        "memory": {"used": memory_used(), "by_host": memory_by_host(client, now)},
        "processes": {"restarts": restart_figures(client)},
        "ledger": ledger,
        "webhooks": webhook_figures(client, db, now),
    }
    figures["scalingRecommendations"] = recommendations(figures)
    return figures


def health_summary(client: redis.Redis, cache_kinds: dict[str, Any], now: float) -> dict[str, Any]:
    """The spec's /health `metrics` block."""
    requests = request_figures(client, now)
    rate, _ = overall_hit_rate(cache_kinds)
    return {
        "totalRequests": requests["total"],
        "cacheHitRate": f"{rate * 100:.1f}%" if rate is not None else None,
        "averageResponseTime": requests["average_ms"],
        "requestsPerSecond": f"{requests['requests_per_second']:.1f}",
    }
