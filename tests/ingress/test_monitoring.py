"""The operator's view: request/task metrics aggregated in Redis, advice from thresholds."""

import statistics
import time

import pytest

from core import metrics
from core.services import connect_services
from core.settings import load_settings
from tests.conftest import ADMIN, CUSTOMER, booking_body, wait_job
from tools.processes import free_port


@pytest.fixture
def isolated(settings, services):
    """An app whose metrics live in a Redis database of their own (14, flushed)."""
    from ingress import create_app

    def build(**overrides):
        patched = load_settings(
            {}, **{**settings.__dict__, "REDIS_URL": "redis://127.0.0.1:6379/14", **overrides}
        )
        svc = connect_services(patched)
        return create_app(patched, services=svc), svc

    app, svc = build()
    svc.redis.flushdb()
    yield build, app, svc
    svc.redis.flushdb()


def test_counts_and_percentiles_match_the_load_sent(isolated):
    _, app, _ = isolated
    c = app.test_client()
    client_ms = []
    for _ in range(40):
        started = time.perf_counter()
        assert c.get("/api/bookings/RG000000000").status_code == 404
        client_ms.append((time.perf_counter() - started) * 1000)
    for _ in range(10):
        assert c.post("/api/bookings", json=booking_body(), headers=CUSTOMER).status_code == 202
    figures = c.get("/api/admin/performance", headers=ADMIN).get_json()
    reads = figures["requests"]["endpoints"]["GET /api/bookings/<ref_id>"]
    creates = figures["requests"]["endpoints"]["POST /api/bookings"]
    assert reads["count"] == 40 and creates["count"] == 10
    assert reads["errors"] == {"client": 40, "server": 0, "by_status": {"404": 40}}
    assert reads["error_rate"] == 0.0  # client errors are the client's
    # Server-side time is inside the client's: each percentile can only be lower.
    assert 0 < reads["latency_ms"]["p50"] <= statistics.median(client_ms)
    assert reads["latency_ms"]["p95"] <= sorted(client_ms)[int(0.95 * 40)] + 0.5
    assert figures["requests"]["total"] == 50
    health = c.get("/health").get_json()["metrics"]
    assert health["totalRequests"] == 51  # the performance request counted too
    assert float(health["requestsPerSecond"]) > 0
    assert health["averageResponseTime"] > 0


def test_metrics_in_prometheus_format(isolated):
    _, app, _ = isolated
    c = app.test_client()
    for _ in range(3):
        c.get("/api/bookings/RG000000000")
    r = c.get("/metrics")
    assert r.status_code == 200 and r.mimetype == "text/plain"
    text = r.get_data(as_text=True)
    assert 'radiantgo_requests_total{endpoint="GET /api/bookings/<ref_id>"} 3.0' in text
    assert (
        'radiantgo_request_errors_total{endpoint="GET /api/bookings/<ref_id>",status="404"} 3.0'
        in text
    )
    assert "radiantgo_cache_lookups_total" in text and "radiantgo_lock_acquisitions_total" in text


def test_a_slow_endpoint_and_a_failing_one_get_recommendations(isolated):
    build, app, svc = isolated
    down, _ = build(
        MONGODB_URI=f"mongodb://127.0.0.1:{free_port()}/x?retryWrites=false", DB_TIMEOUT_MS=200
    )
    c = down.test_client()
    for _ in range(25):
        assert c.get("/api/bookings/RG000000001").status_code == 503  # MongoDB is down
    now = time.time()
    for _ in range(30):  # a slow endpoint, recorded as every ingress process records
        metrics.record_request(svc.redis, "GET /api/slow", 200, 1500.0, now)
    advice = app.test_client().get("/api/admin/performance", headers=ADMIN).get_json()
    kinds = {(a["type"], a["component"]) for a in advice["scalingRecommendations"]}
    assert ("investigate", "backend") in kinds
    assert ("scale_up", "backend") in kinds
    reasons = " ".join(a["reason"] for a in advice["scalingRecommendations"])
    assert "GET /api/slow" in reasons and "GET /api/bookings/<ref_id>" in reasons


def test_low_cache_hit_rate_and_growing_queue_get_recommendations(isolated):
    _, app, svc = isolated
    c = app.test_client()
    for n in range(25):  # every search a different route: all misses
        c.get(f"/api/routes?origin=KA{chr(65 + n)}&destination=KBB&date=2032-03-01")
    for depth in (5, 9, 20, 41):  # oldest first, as beat samples them
        svc.redis.lpush(
            metrics.queue_depth_key("bookings"),
            f'{{"at": {time.time()}, "messages": {depth}, "consumers": 1}}',
        )
    advice = c.get("/api/admin/performance", headers=ADMIN).get_json()
    kinds = {(a["type"], a["component"]) for a in advice["scalingRecommendations"]}
    assert ("optimize_caching", "cache") in kinds
    assert ("scale_workers", "queue:bookings") in kinds
    assert advice["queues"]["bookings"]["growing"] is True
    assert advice["queues"]["status"]["growing"] is False


def test_thresholds_for_locks_and_memory():
    figures = {
        "requests": {"endpoints": {}},
        "cache": {"hit_rate": 0.9, "lookups": 100},
        "locks": {"acquire_ms": {"p95": 750.0}},
        "memory": {"used": 0.85},
        "queues": {},
    }
    kinds = {(a["type"], a["component"]) for a in metrics.recommendations(figures)}
    assert kinds == {("reduce_contention", "locks"), ("scale_up", "memory")}
    figures["locks"]["acquire_ms"]["p95"], figures["memory"]["used"] = 3.0, 0.5
    assert metrics.recommendations(figures) == []


def test_worker_task_metrics_are_aggregated(live_server, services):
    r = __import__("requests").post(
        live_server + "/api/bookings", json=booking_body(), headers=CUSTOMER, timeout=10
    )
    wait_job(live_server, r.headers["Location"])
    time.sleep(0.3)  # postrun records just after the job finishes
    tasks = metrics.task_figures(services.redis)
    assert tasks["create"]["count"] >= 1
    assert tasks["create"]["run_ms"]["p50"] > 0
    assert tasks["create"]["queue_wait_ms"]["p50"] is not None


def test_key_lookups_stay_out_of_the_overall_hit_rate():
    kinds = {
        "routes": {"hits": 10, "misses": 30},
        "users": {"hits": 10_000, "misses": 1},
    }
    assert metrics.overall_hit_rate(kinds) == (0.25, 40)
