"""core.scaling: the spec's thresholds turned into advice."""

from core import scaling


def test_thresholds_for_locks_and_memory():
    figures = {
        "requests": {"endpoints": {}},
        "cache": {"hit_rate": 0.9, "lookups": 100},
        "locks": {"acquire_ms": {"p95": 750.0}},
        "memory": {"used": 0.85},
        "queues": {},
    }
    kinds = {(a["type"], a["component"]) for a in scaling.recommendations(figures)}
    assert kinds == {("reduce_contention", "locks"), ("scale_up", "memory")}
    figures["locks"]["acquire_ms"]["p95"], figures["memory"]["used"] = 3.0, 0.5
    assert scaling.recommendations(figures) == []


def test_memory_over_the_limit_on_any_host_gets_advice():
    figures = {
        "requests": {"endpoints": {}},
        "cache": {"hit_rate": 0.9, "lookups": 100},
        "locks": {"acquire_ms": {"p95": 3.0}},
        "memory": {"used": 0.4, "by_host": {"ingress-1": 0.4, "worker-1": 0.93}},
        "queues": {},
    }
    (advice,) = scaling.recommendations(figures)
    assert (advice["type"], advice["component"]) == ("scale_up", "memory")
    assert advice["reason"] == "Memory 93% used on worker-1 (> 80%)"


def test_a_contended_kind_gets_advice_though_all_locks_together_look_fine():
    quick, slow = {"acquire_ms": {"p95": 3.0}}, {"acquire_ms": {"p95": 900.0}}
    figures = {
        "requests": {"endpoints": {}},
        "cache": {"hit_rate": 0.9, "lookups": 100},
        "locks": {**quick, "by_kind": {"booking": quick, "flight": slow}},
        "memory": {"used": 0.5},
        "queues": {},
    }
    (advice,) = scaling.recommendations(figures)
    assert (advice["type"], advice["component"]) == ("reduce_contention", "locks")
    assert "900 ms on flight locks" in advice["reason"] and "booking" not in advice["reason"]


def _hooks(*, backlog: int, due: int, growing: bool = False) -> dict:
    return {
        "backlog": backlog,
        "due": due,
        "backlog_growing": growing,
        "growth_per_s": 12.0 if growing else None,
        "growing_for_s": 45.0 if growing else None,
        "endpoints": [
            {"endpoint_id": "ep_down", "backlog": backlog - 10},
            {"endpoint_id": "ep_slow", "backlog": 10},
            {"endpoint_id": "ep_fine", "backlog": 0},
        ],
    }


def test_advice_more_senders_when_most_of_the_backlog_is_due():
    figures = {
        "requests": {"endpoints": {}},
        "cache": {"hit_rate": 0.9, "lookups": 100},
        "locks": {"acquire_ms": {"p95": 3.0}},
        "memory": {"used": 0.5},
        "queues": {},
        "webhooks": _hooks(backlog=scaling.WEBHOOK_BACKLOG_LIMIT, due=9_000),
    }
    (advice,) = scaling.recommendations(figures)
    assert advice == {
        "type": "scale_workers",
        "component": "queue:webhooks",
        "reason": "10,000 webhook deliveries pending (9,000 due, 1,000 waiting for a retry):"
        " add webhooks worker processes (WEBHOOK_PROCESSES) or senders per process"
        " (WEBHOOK_CONCURRENCY)",
        "priority": "HIGH",
    }
    figures["webhooks"] = _hooks(backlog=scaling.WEBHOOK_BACKLOG_LIMIT - 1, due=9_000)
    assert scaling.recommendations(figures) == []


def test_advice_names_the_failing_receivers_when_most_of_it_waits_for_a_retry():
    advice = scaling.webhook_advice(_hooks(backlog=500, due=20, growing=True))
    assert (advice["type"], advice["component"], advice["priority"]) == (
        "investigate",
        "webhooks",
        "MEDIUM",
    )
    assert advice["reason"] == (
        "500 webhook deliveries pending (20 due, 480 waiting for a retry), grown for 45 s at"
        " 12.0/s: receivers are failing, most of it for ep_down (490), ep_slow (10) (their"
        " deliveries lists say why)"
    )
