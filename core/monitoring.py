"""What monitoring reads: the operational figures core.metrics collects,
summed over every process (another process's last second late), as
/api/admin/performance, /health and /metrics report them, with core.scaling's
advice on them.
"""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime
from typing import Any

import redis
from pymongo.database import Database

from core import delivery_slots, locks, queues, scaling
from core.cache_keys import USERS
from core.metrics import (
    CUSTOMER_REQUESTS,
    MEMORY,
    MEMORY_FRESH_S,
    PROCESS_RESTARTS,
    REQUESTS,
    RPS_WINDOW_S,
    SHED,
    TASKS,
    WEBHOOK_BACKLOG,
    WEBHOOK_COUNTS,
    WEBHOOK_LAG,
    WEBHOOKS,
    latency_key,
    memory_used,
    queue_depth_key,
    rps_key,
    task_key,
    webhook_backlog,
)
from core.stats import percentiles

TOP_CUSTOMERS = 20
# The endpoints shown one by one (the largest backlogs); the others are summed
# as OTHER_ENDPOINT on /metrics.
TOP_WEBHOOK_ENDPOINTS = 20


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
    figures["scalingRecommendations"] = scaling.recommendations(figures)
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


def shed_counters(client: redis.Redis) -> dict[str, dict[str, int]]:
    """endpoint -> {reason: requests shed}, every process's, since the counters began."""
    counters: dict[str, dict[str, int]] = {}
    for field, n in client.hgetall(SHED).items():
        endpoint, _, reason = field.rpartition("|")
        counters.setdefault(endpoint, {})[reason] = int(n)
    return counters


def restart_figures(client: redis.Redis) -> dict[str, int]:
    """Restarts per supervised program, by name."""
    return {p: int(n) for p, n in sorted(client.hgetall(PROCESS_RESTARTS).items())}


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


def queue_depth_history(
    client: redis.Redis, queue: str, *, key: str | None = None
) -> list[dict[str, Any]]:
    """Newest first (`key`: a history kept elsewhere, as the webhook backlog's)."""
    return [json.loads(raw) for raw in client.lrange(key or queue_depth_key(queue), 0, -1)]


def is_growing(history: list[dict[str, Any]]) -> bool:
    """True when the last GROWING_SAMPLES samples rose each time (newest first)."""
    depths = [sample["messages"] for sample in history[: scaling.GROWING_SAMPLES]]
    return len(depths) == scaling.GROWING_SAMPLES and all(
        a > b for a, b in itertools.pairwise(depths)
    )


def growth(history: list[dict[str, Any]]) -> tuple[float, float] | None:
    """(messages/s, over how many seconds) the queue grew across its last
    GROWING_SAMPLES samples (newest first); None unless it is growing."""
    if not is_growing(history):
        return None
    newest, oldest = history[0], history[scaling.GROWING_SAMPLES - 1]
    seconds = max(newest["at"] - oldest["at"], 1e-3)
    return (newest["messages"] - oldest["messages"]) / seconds, seconds


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
    flying = delivery_slots.in_flight(client, ids, now) if ids else {}
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
