"""core.monitoring: the figures read back. Webhooks: counters in Redis, the
backlog counted in MongoDB, attempts under way from the endpoints' slots."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta

import pytest
import redis

from core import deliveries, delivery_slots, metrics, monitoring, scaling
from core.clock import utcnow
from core.db import ensure_indexes
from core.egress import Attempt
from ingress.responses.monitoring import WebhookFiguresSchema

METRICS_REDIS = "redis://127.0.0.1:6379/14"


@pytest.fixture
def figures_redis():
    client = redis.Redis.from_url(METRICS_REDIS, decode_responses=True)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture
def hooks_db(services):
    """A database of the test's own: the backlog is every pending delivery's."""
    db = services.mongo[f"hooks_{uuid.uuid4().hex[:12]}"]
    ensure_indexes(db)
    yield db
    services.mongo.drop_database(db.name)


def pending(db, endpoint_id: str, n: int, *, due: bool = True) -> None:
    now = utcnow()
    next_at = now - timedelta(seconds=1) if due else now + timedelta(minutes=5)
    db.webhook_deliveries.insert_many(
        [
            {
                "_id": f"dlv_{uuid.uuid4().hex}",
                "event_id": f"msg_{i}",
                "endpoint_id": endpoint_id,
                "state": deliveries.PENDING,
                "next_at": next_at,
                "lease_until": None,
                "attempts": [],
            }
            for i in range(n)
        ]
    )


def attempt(client, endpoint_id: str, *, status: int | None, state=None, lag_ms=None) -> None:
    outcome = deliveries.Outcome(
        "dlv_x",
        endpoint_id=endpoint_id,
        state=state,
        attempt=Attempt(status, 12, None if status else "timed out"),
        lag_ms=lag_ms,
    )
    metrics.record_webhook(client, outcome, now=time.time())


def test_counts_backlog_and_attempts_under_way_per_endpoint(figures_redis, hooks_db):
    for lag in (100.0, 200.0, 300.0):
        attempt(figures_redis, "ep_a", status=200, state="delivered", lag_ms=lag)
    attempt(figures_redis, "ep_a", status=500, state="pending")
    attempt(figures_redis, "ep_b", status=None, state="failed")
    pending(hooks_db, "ep_b", 3)
    pending(hooks_db, "ep_b", 2, due=False)
    pending(hooks_db, "ep_c", 1)
    policy = deliveries.Policy()
    assert delivery_slots.take_slot(figures_redis, "ep_b", "dlv_1", time.time(), policy)
    hooks_db.webhook_endpoints.insert_many(
        [{"_id": "ep_a", "enabled": True}, {"_id": "ep_off", "enabled": False}]
    )

    figures = monitoring.webhook_figures(figures_redis, hooks_db, time.time())

    assert WebhookFiguresSchema().validate(figures) == {}
    assert [e["endpoint_id"] for e in figures["endpoints"]] == ["ep_b", "ep_c", "ep_a"]
    by_id = {e["endpoint_id"]: e for e in figures["endpoints"]}
    assert by_id["ep_a"] == {
        "endpoint_id": "ep_a",
        "delivered": 3,
        "failed": 0,
        "attempts": 4,
        "failed_attempts": 1,
        "backlog": 0,
        "due": 0,
        "in_flight": 0,
    }
    assert by_id["ep_b"] | {"endpoint_id": None} == {
        "endpoint_id": None,
        "delivered": 0,
        "failed": 1,
        "attempts": 1,
        "failed_attempts": 1,
        "backlog": 5,
        "due": 3,
        "in_flight": 1,
    }
    assert (figures["delivered"], figures["failed"], figures["attempts"]) == (3, 1, 5)
    assert (figures["backlog"], figures["due"], figures["in_flight"]) == (6, 4, 1)
    assert figures["disabled_endpoints"] == 1 and figures["backlog_capped"] is False
    assert figures["lag_ms"] == {"p50": 200.0, "p95": 300.0, "p99": 300.0}
    assert figures["backlog_growing"] is False and figures["history"] == []


def test_only_the_largest_backlogs_are_listed_and_the_totals_count_all(figures_redis, hooks_db):
    shown = monitoring.TOP_WEBHOOK_ENDPOINTS
    for n in range(1, shown + 6):
        pending(hooks_db, f"ep_{n:02d}", n)
    figures = monitoring.webhook_figures(figures_redis, hooks_db, time.time())
    listed = [e["endpoint_id"] for e in figures["endpoints"]]
    assert listed == [f"ep_{n:02d}" for n in range(shown + 5, 5, -1)]
    assert figures["backlog"] == figures["due"] == sum(range(1, shown + 6))


def test_a_backlog_past_the_scan_is_counted_as_at_least(figures_redis, hooks_db, monkeypatch):
    monkeypatch.setattr(metrics, "WEBHOOK_BACKLOG_SCAN", 10)
    pending(hooks_db, "ep_a", 12)
    figures = monitoring.webhook_figures(figures_redis, hooks_db, time.time())
    assert (figures["backlog"], figures["backlog_capped"]) == (10, True)


def test_a_growing_backlog_is_seen_in_beats_samples(figures_redis, hooks_db):
    started = time.time()
    for n in range(scaling.GROWING_SAMPLES):
        pending(hooks_db, "ep_a", 5)
        assert (
            metrics.sample_webhook_backlog(figures_redis, hooks_db, started + 15 * n) == 5 * n + 5
        )
    figures = monitoring.webhook_figures(figures_redis, hooks_db, time.time())
    assert figures["backlog_growing"] is True
    assert figures["history"] == [20, 15, 10, 5]
    assert figures["growth_per_s"] == round(15 / 45, 2)
    advice = scaling.webhook_advice(figures)
    assert (advice["type"], advice["component"]) == ("scale_workers", "queue:webhooks")


def test_key_lookups_stay_out_of_the_overall_hit_rate():
    kinds = {
        "routes": {"hits": 10, "misses": 30},
        "users": {"hits": 10_000, "misses": 1},
    }
    assert monitoring.overall_hit_rate(kinds) == (0.25, 40)
