"""The operator's view: request/task metrics aggregated in Redis, advice from thresholds."""

import random
import socket
import statistics
import string
import time
import uuid
from urllib.parse import urlparse, urlunparse

import pytest
from prometheus_client.parser import text_string_to_metric_families

from core import metrics, monitoring
from core.clock import utcnow
from core.deliveries import Outcome
from core.egress import Attempt
from core.locks import (
    FLIGHT_LOCK_TTL,
    LOCK_KINDS,
    LockHeld,
    LockManager,
    booking_lock_key,
    flight_lock_key,
)
from ingress.paths import metric_rule
from ingress.responses.monitoring import LockPerformanceSchema, WebhookFiguresSchema
from tests.conftest import ADMIN, CUSTOMER, booking_body, wait_job
from tools.processes import free_port

METRICS_REDIS = "redis://127.0.0.1:6379/14"


@pytest.fixture
def isolated(isolated_stack, services):
    """An app whose metrics live in a Redis database of their own (14, flushed);
    `services` made the suite's customers (CUSTOMER)."""
    built = []

    def build(**overrides):
        stack = isolated_stack(f"monitoring{len(built)}", REDIS_URL=METRICS_REDIS, **overrides)
        built.append(stack.app())
        return built[-1], stack.services

    app, svc = build()
    svc.redis.flushdb()
    yield build, app, svc
    # Nothing of this test's left for a flusher thread to add to the next one's figures.
    for made in built:
        made.extensions["request_tally"].flush()
        made.extensions["radiantgo"].cache.flush_counts()
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
    app.extensions["request_tally"].flush()  # what the flusher thread does every second
    health = c.get("/health").get_json()["metrics"]
    assert health["totalRequests"] == 51  # the performance request counted too
    assert float(health["requestsPerSecond"]) > 0
    assert health["averageResponseTime"] > 0


def test_metrics_in_prometheus_format(isolated):
    _, app, _ = isolated
    c = app.test_client()
    for _ in range(3):
        c.get("/api/bookings/RG000000000")
    r = c.get("/metrics", headers=ADMIN)  # the metrics token defaults to the admin's
    assert r.status_code == 200 and r.mimetype == "text/plain"
    text = r.get_data(as_text=True)
    assert 'radiantgo_requests_total{endpoint="GET /api/bookings/<ref_id>"} 3.0' in text
    assert (
        'radiantgo_request_errors_total{endpoint="GET /api/bookings/<ref_id>",status="404"} 3.0'
        in text
    )
    assert "radiantgo_cache_lookups_total" in text and "radiantgo_lock_acquisitions_total" in text


@pytest.mark.slow(reason="25 requests, each waiting out the timeout of a MongoDB that is down")
def test_a_slow_endpoint_and_a_failing_one_get_recommendations(isolated):
    build, app, svc = isolated
    down, _ = build(
        MONGODB_URI=f"mongodb://127.0.0.1:{free_port()}/x?retryWrites=false", DB_TIMEOUT_MS=200
    )
    c = down.test_client()
    for _ in range(25):
        assert c.get("/api/bookings/RG000000001").status_code == 503  # MongoDB is down
    # A refused connection fails fast: the 503s can all fall within a second
    # the down app's flusher thread has not added to Redis yet.
    down.extensions["request_tally"].flush()
    now, tally = time.time(), metrics.RequestTally(svc.redis)
    for _ in range(30):  # a slow endpoint, recorded as every ingress process records
        tally.record("GET /api/slow", 200, 1500.0, now)
    tally.flush()
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
    now = time.time()
    for ago, depth in ((30, 5), (20, 9), (10, 20), (0, 8405)):  # oldest first, as beat samples
        svc.redis.lpush(
            metrics.queue_depth_key("bookings"),
            f'{{"at": {now - ago}, "messages": {depth}, "consumers": 1}}',
        )
    advice = c.get("/api/admin/performance", headers=ADMIN).get_json()
    kinds = {(a["type"], a["component"]) for a in advice["scalingRecommendations"]}
    assert ("optimize_caching", "cache") in kinds
    assert ("scale_workers", "queue:bookings") in kinds
    (scale,) = [a for a in advice["scalingRecommendations"] if a["type"] == "scale_workers"]
    # 8,400 more in 30 s: 280/s, against ~249/s a process (core.sizing): two more.
    assert "grown for 30 s at 280.0/s" in scale["reason"]
    assert "add 2 bookings worker processes" in scale["reason"]
    assert advice["queues"]["bookings"]["growing"] is True
    assert advice["queues"]["bookings"]["growth_per_s"] == 280.0
    assert advice["queues"]["status"]["growing"] is False
    text = c.get("/metrics", headers=ADMIN).get_data(as_text=True)
    assert 'radiantgo_queue_messages{queue="bookings"} 8405.0' in text
    assert 'radiantgo_queue_growing{queue="bookings"} 1.0' in text
    assert 'radiantgo_queue_sampled_timestamp_seconds{queue="bookings"}' in text
    assert 'radiantgo_queue_growing{queue="status"}' not in text  # never sampled: no series


def test_every_hosts_memory_in_metrics_and_silent_hosts_dropped(isolated):
    _, app, svc = isolated
    now = time.time()
    metrics.record_memory(svc.redis, now, host="worker-a")
    svc.redis.hset(metrics.MEMORY, "gone", f"0.99|{now - metrics.MEMORY_FRESH_S - 1}")
    c = app.test_client()
    assert c.get("/api/bookings/RG000000000").status_code == 404
    text = c.get("/metrics", headers=ADMIN).get_data(as_text=True)
    # This ingress reported its own host's when /metrics flushed its figures.
    assert f'radiantgo_memory_used_ratio{{host="{socket.gethostname()}"}}' in text
    assert 'radiantgo_memory_used_ratio{host="worker-a"}' in text
    assert 'host="gone"' not in text
    assert set(svc.redis.hkeys(metrics.MEMORY)) == {socket.gethostname(), "worker-a"}  # "gone" went
    assert 0 < svc.redis.ttl(metrics.MEMORY) <= 2 * metrics.MEMORY_FRESH_S
    by_host = c.get("/api/admin/performance", headers=ADMIN).get_json()["memory"]["by_host"]
    assert set(by_host) == {socket.gethostname(), "worker-a"}
    assert all(0 < used < 1 for used in by_host.values())


def test_flight_locks_are_listed_and_their_contention_measured_apart(isolated):
    _, app, svc = isolated
    c = app.test_client()
    svc.locks.release(svc.locks.acquire(booking_lock_key("RGLOCKKIND1")))  # uncontended
    key = flight_lock_key("RG001-20261201")
    held = svc.locks.acquire(key, FLIGHT_LOCK_TTL)
    listed = c.get("/api/admin/locks", headers=ADMIN).get_json()["locks"]
    assert 0 < next(h["ttl_ms"] for h in listed if h["key"] == key) <= FLIGHT_LOCK_TTL * 1000
    figures = c.get("/api/admin/performance", headers=ADMIN).get_json()["locks"]
    assert figures["by_kind"]["flight"]["held"] == 1 and figures["by_kind"]["booking"]["held"] == 0

    # Contention on the flight: one contender gives up after two tries; another
    # gets the lock on its second try, once the holder lets go during its backoff.
    impatient = LockManager(svc.redis, svc.settings, sleep=lambda s: None)
    with pytest.raises(LockHeld):
        impatient.acquire(key, FLIGHT_LOCK_TTL, max_attempts=2)

    def holder_lets_go_then_wait(seconds):
        svc.locks.release(held)
        time.sleep(seconds)

    waiter = LockManager(svc.redis, svc.settings, sleep=holder_lets_go_then_wait)
    got = waiter.acquire(key, FLIGHT_LOCK_TTL)
    waiter.release(got)
    assert got.attempts == 2 and got.waited_ms >= 100  # the first backoff: 100 ms + jitter

    figures = c.get("/api/admin/performance", headers=ADMIN).get_json()["locks"]
    LockPerformanceSchema().load(figures)  # what is served is what the document says, exactly
    flight, booking = figures["by_kind"]["flight"], figures["by_kind"]["booking"]
    assert (flight["acquired"], flight["failed"], flight["attempts"]) == (2, 1, 5)
    assert flight["average_attempts"] == round(5 / 3, 3)
    assert flight["acquire_ms"]["max"] >= 100 and flight["held"] == 0
    assert (booking["acquired"], booking["failed"], booking["average_attempts"]) == (1, 0, 1.0)
    assert booking["acquire_ms"]["max"] < 100
    assert (figures["acquired"], figures["failed"], figures["attempts"]) == (3, 1, 6)
    assert set(figures["by_kind"]) == set(LOCK_KINDS)
    assert figures["by_kind"]["bulk"]["acquired"] == 0

    text = c.get("/metrics", headers=ADMIN).get_data(as_text=True)
    assert 'radiantgo_lock_acquisitions_total{kind="flight",outcome="failed"} 1.0' in text
    assert 'radiantgo_lock_acquisitions_total{kind="booking",outcome="failed"} 0.0' in text
    assert 'radiantgo_lock_acquisitions_total{kind="booking",outcome="acquired"} 1.0' in text
    assert 'radiantgo_lock_attempts_total{kind="flight"} 5.0' in text
    assert 'radiantgo_lock_acquire_ms{kind="flight",quantile="max"}' in text
    assert 'radiantgo_locks_held{kind="flight"} 0.0' in text


def test_the_openapi_document_names_every_lock_kind(isolated):
    _, app, _ = isolated
    schemas = app.test_client().get("/api/openapi.json").get_json()["components"]["schemas"]
    assert set(schemas["LockKinds"]["properties"]) == set(LOCK_KINDS)
    assert schemas["LockPerformance"]["additionalProperties"] is False
    assert "by_kind" in schemas["LockPerformance"]["properties"]


def test_worker_task_metrics_are_aggregated(live_server, services):
    r = __import__("requests").post(
        live_server + "/api/bookings", json=booking_body(), headers=CUSTOMER, timeout=10
    )
    wait_job(live_server, r.headers["Location"])
    # The worker records a task just after its job finishes: wait for the record.
    deadline = time.monotonic() + 10
    while "create" not in (tasks := monitoring.task_figures(services.redis)):
        assert time.monotonic() < deadline, "the worker recorded no create task"
        time.sleep(0.05)
    assert tasks["create"]["count"] >= 1
    assert tasks["create"]["run_ms"]["p50"] > 0
    assert tasks["create"]["queue_wait_ms"]["p50"] is not None


def _hostile_requests(client, n: int, rng: random.Random) -> None:
    """Made-up and real methods on made-up and real paths."""
    real = ["/api/bookings/RG000000000", "/api/bookings", "/api/flights", "/api/routes", "/metrics"]
    for _ in range(n):
        if rng.random() < 0.5:
            method = rng.choice(sorted(metrics.KNOWN_METHODS))
        else:
            method = "".join(rng.choices(string.ascii_uppercase, k=rng.randint(3, 12)))
        if rng.random() < 0.3:
            path = rng.choice(real)
        else:
            parts = rng.randint(1, 4)
            path = "/" + "/".join(f"{rng.getrandbits(40):x}" for _ in range(parts))
        assert client.open(path, method=method).status_code < 500, (method, path)


@pytest.mark.slow(reason="thousands of hostile requests")
def test_redis_stays_bounded_under_made_up_methods_and_paths(isolated):
    _, app, svc = isolated
    c = app.test_client()
    rng = random.Random(11)
    before = set(svc.redis.keys("*"))
    started = time.time()
    _hostile_requests(c, 1000, rng)
    app.extensions["request_tally"].flush()  # what the flusher thread does every second
    after = set(svc.redis.keys("*"))
    seconds = int(time.time()) - int(started) + 1  # after the read: a flush meanwhile counts
    grown = after - before
    per_second = {k for k in grown if k.startswith("metrics:rps:")}
    # Request counters per second expire; everything else is a small constant,
    # not one key per made-up method (1,000 requests used to add ~500 keys).
    assert len(per_second) <= seconds
    assert all(0 < svc.redis.ttl(k) <= 2 * metrics.RPS_WINDOW_S for k in per_second)
    assert len(grown - per_second) <= 30, sorted(grown - per_second)
    for key in after:  # what does not expire is one of a fixed set of names
        if svc.redis.ttl(key) < 0:
            assert key == metrics.REQUESTS or key.startswith(("metrics:latency:", "cache:stats:"))
    # Rate limits: a counter or two per client and limit, expiring, never a list of hits.
    limits = [k for k in after if k.startswith("ratelimit:")]
    assert limits and all(svc.redis.type(k) == "string" and svc.redis.ttl(k) > 0 for k in limits)
    # Metric names come from a fixed set: known methods on the app's rules, one bucket else.
    allowed = {metrics.OTHER_ENDPOINT} | {
        f"{m} {metric_rule(rule.rule)}"
        for m in metrics.KNOWN_METHODS
        for rule in app.url_map.iter_rules()
    }
    fields = svc.redis.hkeys(metrics.REQUESTS)
    assert {f.partition("|")[0] for f in fields} <= allowed
    assert len(fields) <= 80  # ~17 names x (count, ms, a few statuses)
    figures = monitoring.request_figures(svc.redis, time.time())
    assert figures["total"] == 1000
    assert figures["endpoints"][metrics.OTHER_ENDPOINT]["count"] >= 500
    # Another 1,000 add no key but this second's counters, and next to no field.
    keys = set(svc.redis.keys("*"))
    _hostile_requests(c, 1000, rng)
    fresh = {k for k in set(svc.redis.keys("*")) - keys if not k.startswith("metrics:rps:")}
    assert len(fresh) <= 3, sorted(fresh)
    assert len(svc.redis.hkeys(metrics.REQUESTS)) <= len(fields) + 6


def test_webhooks_per_endpoint_on_metrics_bounded_to_the_busiest(isolated, settings, services):
    """A database of the test's own (the backlog is every pending delivery's):
    25 endpoints, the 20 with the most attempts by name and the rest summed."""
    build, _, svc = isolated
    name = f"hooks_{uuid.uuid4().hex[:12]}"
    uri = urlunparse(urlparse(settings.MONGODB_URI)._replace(path=f"/{name}"))
    app, svc = build(MONGODB_URI=uri)
    try:
        shown = monitoring.TOP_WEBHOOK_ENDPOINTS
        for n in range(1, shown + 6):
            for _ in range(n):
                outcome = Outcome("dlv_m", f"ep_{n:02d}", "delivered", Attempt(200, 3), lag_ms=50.0)
                metrics.record_webhook(svc.redis, outcome, now=time.time())
        metrics.record_webhook(
            svc.redis, Outcome("dlv_m", "ep_01", "pending", Attempt(503, 3)), now=time.time()
        )
        svc.db.webhook_deliveries.insert_many(
            [
                {"_id": f"dlv_{i}", "endpoint_id": "ep_07", "state": "pending", "next_at": utcnow()}
                for i in range(3)
            ]
        )
        c = app.test_client()
        text = c.get("/metrics", headers=ADMIN).get_data(as_text=True)
        hooks = c.get("/api/admin/performance", headers=ADMIN).get_json()["webhooks"]
    finally:
        services.mongo.drop_database(name)
    delivered = {
        s.labels["endpoint"]: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "radiantgo_webhook_deliveries_total" and s.labels["outcome"] == "delivered"
    }
    assert len(delivered) == shown + 1
    assert delivered["ep_25"] == 25 and "ep_05" not in delivered
    assert delivered[metrics.OTHER_ENDPOINT] == sum(range(1, 6))
    assert 'radiantgo_webhook_attempts_failed_total{endpoint="(other)"} 1.0' in text
    assert 'radiantgo_webhook_backlog{endpoint="ep_07",state="due"} 3.0' in text
    assert 'radiantgo_webhook_backlog{endpoint="(other)",state="due"} 0.0' in text
    assert 'radiantgo_webhook_lag_ms{quantile="p95"} 50.0' in text
    assert "radiantgo_webhook_backlog_growing 0.0" in text
    assert WebhookFiguresSchema().validate(hooks) == {}
    assert hooks["endpoints"][0] == {
        "endpoint_id": "ep_07",
        "delivered": 7,
        "failed": 0,
        "attempts": 7,
        "failed_attempts": 0,
        "backlog": 3,
        "due": 3,
        "in_flight": 0,
    }
    assert (hooks["delivered"], hooks["failed_attempts"], hooks["backlog"]) == (325, 1, 3)
