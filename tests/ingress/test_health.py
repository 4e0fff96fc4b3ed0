"""/health against services that are really down (closed loopback ports)."""

import pytest

from core.services import connect_services
from core.settings import load_settings
from tests.conftest import CUSTOMER, booking_body
from tools.processes import free_port


def app_with(settings, **overrides):
    from ingress import create_app

    patched = load_settings({}, **{**settings.__dict__, **overrides})
    return create_app(patched, services=connect_services(patched))


def test_all_up_is_healthy(client, worker):
    r = client.get("/health")
    assert r.status_code == 200
    body = r.get_json()
    assert body["status"] == "healthy"
    for name in ("mongodb", "redis", "rabbitmq", "workers"):
        assert body["services"][name]["status"] == "healthy"
        assert body["services"][name]["latency_ms"] >= 0


@pytest.mark.parametrize(
    ("setting", "url", "service", "status", "overall"),
    [
        (
            "MONGODB_URI",
            "mongodb://127.0.0.1:{port}/x?retryWrites=false",
            "mongodb",
            503,
            "unhealthy",
        ),
        ("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:{port}//", "rabbitmq", 503, "unhealthy"),
        ("REDIS_URL", "redis://127.0.0.1:{port}/0", "redis", 200, "degraded"),
    ],
)
def test_a_service_down_is_reported(settings, setting, url, service, status, overall):
    app = app_with(settings, **{setting: url.format(port=free_port())})
    r = app.test_client().get("/health")
    assert r.status_code == status
    body = r.get_json()
    assert body["status"] == overall
    assert body["services"][service]["status"] == "unhealthy"
    assert body["services"][service]["detail"]


def test_broker_down_answers_503_and_records_no_job(settings, services):
    app = app_with(
        settings,
        RABBITMQ_URL=f"amqp://guest:guest@127.0.0.1:{free_port()}//",
        BROKER_PUBLISH_RETRIES=0,
    )
    before = services.db.jobs.estimated_document_count()
    r = app.test_client().post("/api/bookings", json=booking_body(), headers=CUSTOMER)
    assert r.status_code == 503
    assert r.mimetype == "application/problem+json"
    assert r.headers["Retry-After"]
    assert services.db.jobs.estimated_document_count() == before


def test_mongo_down_answers_503_not_500(settings, services):
    app = app_with(
        settings,
        MONGODB_URI=f"mongodb://127.0.0.1:{free_port()}/x?retryWrites=false",
        DB_TIMEOUT_MS=300,
    )
    c = app.test_client()
    assert c.post("/api/bookings", json=booking_body(), headers=CUSTOMER).status_code == 503
    assert c.get("/api/bookings/RG000000000").status_code == 503
