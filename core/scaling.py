"""Scaling advice: the spec's alerting thresholds applied to the figures of
core.figures.performance_figures (its scalingRecommendations), with the
processes to add from core.sizing.
"""

from __future__ import annotations

from typing import Any

from core import queues, sizing

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
