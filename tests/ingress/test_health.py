"""/health against services that are really down (closed loopback ports), what its
public body says, and what a burst of calls costs."""

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from core import awb, queued_jobs
from core.services import connect_services
from core.settings import replace
from ingress.health import BROKER_PINGS, PROBE_TTL_S, PROBES
from ingress.responses.monitoring import HealthSchema
from tests.conftest import CUSTOMER, booking_body
from tools.processes import free_port


def app_with(settings, **overrides):
    from ingress import create_app

    patched = replace(settings, **overrides)
    return create_app(patched, services=connect_services(patched))


def test_all_up_is_healthy(client, worker):
    r = client.get("/health")
    assert r.status_code == 200
    body = r.get_json()
    assert body["status"] == "healthy", body
    for name in ("mongodb", "redis", "rabbitmq", "workers"):
        assert body["services"][name]["status"] == "healthy"
        assert body["services"][name]["latency_ms"] >= 0


@pytest.mark.parametrize(
    ("setting", "url", "service", "status", "overall"),
    [
        pytest.param(
            "MONGODB_URI",
            "mongodb://127.0.0.1:{port}/x?retryWrites=false",
            "mongodb",
            503,
            "unhealthy",
            marks=pytest.mark.slow(reason="waits out MongoDB's server selection timeout"),
        ),
        ("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:{port}//", "rabbitmq", 503, "unhealthy"),
        ("REDIS_URL", "redis://127.0.0.1:{port}/0", "redis", 200, "degraded"),
    ],
)
def test_a_service_down_is_reported(settings, setting, url, service, status, overall, caplog):
    port = free_port()
    app = app_with(settings, **{setting: url.format(port=port)})
    with caplog.at_level(logging.WARNING, logger="core.health"):
        r = app.test_client().get("/health")
    assert r.status_code == status
    body = r.get_json()
    assert body["status"] == overall
    # Public: a status and a latency, nothing else (no exception text, no host or port).
    assert body["services"][service] == {"status": "unhealthy", "latency_ms": None}
    assert str(port) not in r.get_data(as_text=True)
    for name, entry in body["services"].items():
        assert set(entry) == {"status", "latency_ms"}, name
    # The reason goes to the log.
    reasons = [rec.getMessage() for rec in caplog.records if rec.name == "core.health"]
    assert any(f"health probe {service} failed" in reason for reason in reasons), reasons


def closed_url(scheme: str) -> tuple[str, int]:
    port = free_port()
    return f"{scheme}://127.0.0.1:{port}/" + ("/" if scheme == "amqp" else "0"), port


def health_of(app, caplog):
    with caplog.at_level(logging.WARNING, logger="core.health"):
        r = app.test_client().get("/health")
    reasons = [rec.getMessage() for rec in caplog.records if rec.name == "core.health"]
    assert HealthSchema().validate(r.get_json()) == {}  # what the OpenAPI document says
    return r, reasons


def test_a_broker_cluster_with_a_node_down_is_degraded(settings, worker, caplog):
    down, port = closed_url("amqp")
    # The closed node first: its probe must not fail over to the one that answers.
    app = app_with(settings, RABBITMQ_URL=f"{down};{settings.RABBITMQ_URL}")
    r, reasons = health_of(app, caplog)
    assert r.status_code == 200
    body = r.get_json()
    assert body["status"] == "degraded", body
    rabbitmq = body["services"]["rabbitmq"]
    assert rabbitmq["latency_ms"] >= 0
    assert rabbitmq == {**rabbitmq, "status": "degraded", "nodes_up": 1, "nodes": 2}
    assert set(rabbitmq) == {"status", "latency_ms", "nodes_up", "nodes"}
    assert str(port) not in r.get_data(as_text=True)  # counts only; the log names the node
    assert any("health probe rabbitmq node 1 failed" in reason for reason in reasons), reasons
    for name in ("mongodb", "redis", "workers"):
        assert body["services"][name]["status"] == "healthy"
    assert "locks" not in body["services"]  # LOCK_REDIS_URLS unset: REDIS_URL's probe


def test_a_broker_cluster_with_every_node_down_is_unhealthy(settings, caplog):
    (first, _), (second, _) = closed_url("amqp"), closed_url("amqp")
    app = app_with(settings, RABBITMQ_URL=f"{first};{second}")
    r, _ = health_of(app, caplog)
    assert r.status_code == 503
    assert r.get_json()["status"] == "unhealthy"
    assert r.get_json()["services"]["rabbitmq"] == {
        "status": "unhealthy",
        "latency_ms": None,
        "nodes_up": 0,
        "nodes": 2,
    }


@pytest.mark.parametrize(("up", "status"), [(3, "healthy"), (2, "degraded"), (1, "unhealthy")])
def test_the_lock_masters_need_a_majority_and_never_make_health_critical(
    settings, worker, caplog, up, status
):
    closed = [closed_url("redis") for _ in range(3 - up)]
    masters = [settings.REDIS_URL] * up + [url for url, _ in closed]
    app = app_with(settings, LOCK_REDIS_URLS=",".join(masters))
    r, reasons = health_of(app, caplog)
    # Without a quorum no lock is taken, but requests are still accepted and reads served.
    assert r.status_code == 200
    body = r.get_json()
    assert body["status"] == ("healthy" if up == 3 else "degraded"), body
    locks = body["services"]["locks"]
    assert locks["latency_ms"] >= 0  # of the masters that answered
    assert locks == {**locks, "status": status, "nodes_up": up, "nodes": 3}
    for _, port in closed:
        assert str(port) not in r.get_data(as_text=True)
    for n in range(up + 1, 4):
        assert any(f"health probe locks node {n} failed" in reason for reason in reasons)


def test_the_document_names_the_node_counts_and_degraded_services(client):
    document = client.get("/api/openapi.json").get_json()
    entry = document["components"]["schemas"]["ServiceHealth"]
    assert entry["properties"]["status"]["enum"] == ["healthy", "degraded", "unhealthy"]
    assert {"nodes_up", "nodes"} <= set(entry["properties"])
    assert entry["required"] == ["latency_ms", "status"]  # the counts: several nodes only


def test_the_metrics_block_is_totals_only(client):
    body = client.get("/health").get_json()
    assert set(body) == {"status", "services", "metrics"}
    assert set(body["metrics"]) == {
        "totalRequests",
        "cacheHitRate",
        "averageResponseTime",
        "requestsPerSecond",
    }


@pytest.mark.slow(reason="a burst lasting past the one-second probe interval")
def test_a_burst_of_calls_probes_once_a_second_over_one_broker_connection(settings):
    app = app_with(settings)
    probes, (broker,) = app.extensions[PROBES], app.extensions[BROKER_PINGS]
    c = app.test_client()
    started, calls = time.monotonic(), 0
    while time.monotonic() - started < 2.5 * PROBE_TTL_S:
        r = c.get("/health")
        assert r.status_code == 200  # degraded at worst: MongoDB and RabbitMQ are up
        assert r.get_json()["services"]["rabbitmq"]["status"] == "healthy"
        calls += 1
    elapsed = time.monotonic() - started
    assert calls >= 50
    # A round per PROBE_TTL_S at most (the first at once), and the cache did expire.
    assert 2 <= probes.runs <= 1 + elapsed / PROBE_TTL_S, (probes.runs, calls, elapsed)
    # Every round pinged the broker over the connection the first one opened.
    assert broker.opened == 1
    broker.close()


def test_concurrent_calls_share_one_round_of_probes(settings):
    app = app_with(settings)
    probes, (broker,) = app.extensions[PROBES], app.extensions[BROKER_PINGS]
    threads = 32
    barrier = threading.Barrier(threads)

    def call(_):
        client = app.test_client()
        barrier.wait()
        return client.get("/health").get_json()

    with ThreadPoolExecutor(threads) as pool:
        bodies = list(pool.map(call, range(threads)))
    assert probes.runs == 1
    assert broker.opened == 1
    assert all(body == bodies[0] for body in bodies)  # one round's answer, for all
    broker.close()


def test_broker_down_answers_503_and_records_no_job(settings, services):
    app = app_with(
        settings,
        RABBITMQ_URL=f"amqp://guest:guest@127.0.0.1:{free_port()}//",
        BROKER_PUBLISH_RETRIES=0,
    )
    before = services.db.jobs.estimated_document_count()
    records_before = set(services.redis.scan_iter(match=queued_jobs.queued_key("*")))
    marks_before = set(services.redis.scan_iter(match=queued_jobs.creating_key("*")))
    r = app.test_client().post("/api/bookings", json=booking_body(), headers=CUSTOMER)
    assert r.status_code == 503
    assert r.mimetype == "application/problem+json"
    assert r.headers["Retry-After"]
    assert services.db.jobs.estimated_document_count() == before
    # Its queued record only says "discarded" (were the message delivered after all,
    # the worker would drop it), and no booking is marked as being created.
    (record,) = set(services.redis.scan_iter(match=queued_jobs.queued_key("*"))) - records_before
    assert services.redis.get(record) == queued_jobs.DISCARDED
    assert set(services.redis.scan_iter(match=queued_jobs.creating_key("*"))) == marks_before


class AskCounter:
    """A counters collection that counts the blocks asked of it."""

    def __init__(self, collection):
        self.collection, self.blocks = collection, 0

    def find_one_and_update(self, *args, **kwargs):
        self.blocks += 1
        return self.collection.find_one_and_update(*args, **kwargs)

    def insert_one(self, *args, **kwargs):
        return self.collection.insert_one(*args, **kwargs)


@pytest.mark.slow(reason="waits out MongoDB's server selection timeout")
def test_mongo_down_answers_503_not_500(settings, services):
    app = app_with(
        settings,
        MONGODB_URI=f"mongodb://127.0.0.1:{free_port()}/x?retryWrites=false",
        DB_TIMEOUT_MS=300,
    )
    c = app.test_client()
    keyed = {**CUSTOMER, "Idempotency-Key": "mongo-down"}  # its claim is durable: MongoDB
    assert c.post("/api/bookings", json=booking_body(), headers=keyed).status_code == 503
    assert c.get("/api/bookings/RG000000000").status_code == 503
    # A plain create needs no MongoDB to be accepted: it waits in the queue.
    # Its AWB comes from the process's stock (core.awb) while that holds
    # serials; once it is dry, without one (its worker issues it), and after
    # one failed ask MongoDB is left alone for a moment: no wait per accept.
    stock = app.extensions["radiantgo"].awb_stock
    stock.counters = asked = AskCounter(stock.counters)
    for _ in range(3):
        dry = c.post("/api/bookings", json=booking_body(), headers=CUSTOMER)
        assert dry.status_code == 202, dry.get_data(True)
        assert "awb" not in dry.get_json() and "ref_id" in dry.get_json()
    assert asked.blocks == 1
    stock.counters = services.db.awb_counters  # MongoDB is back
    deadline = time.monotonic() + 5 * awb.REFILL_RETRY_S
    while True:
        accepted = c.post("/api/bookings", json=booking_body(), headers=CUSTOMER)
        assert accepted.status_code == 202, accepted.get_data(True)
        if "awb" in accepted.get_json() or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert awb.broken_rule(accepted.get_json()["awb"]) is None
    assert c.get(accepted.headers["Location"], headers=CUSTOMER).status_code == 503
