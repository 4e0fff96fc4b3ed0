"""Fixtures on real services: RabbitMQ, Redis, and a MongoDB wire server.

The suite starts its own SecantusDB (a fresh data dir) unless TEST_MONGODB_URI
names a server, uses Redis database 15, and namespaces its RabbitMQ queues, so
it never touches the data or the queues of a running `make run`.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from urllib.parse import urlparse, urlunparse

import pytest
import requests

from core.services import connect_services
from core.settings import load_settings
from tools.processes import (
    delete_queues,
    free_port,
    start_ingress,
    start_secantus,
    start_worker,
    stop,
    wait_for_port,
    wait_for_worker,
)

ADMIN_TOKEN = "test-admin-token"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
# Authorization headers of the session's own customers, filled in by the
# `services` fixture (keys are random; only their hashes are stored): a test
# that sends them depends on `services`, directly or through another fixture.
CUSTOMER: dict[str, str] = {}  # a shipper: books, cancels, lists and reads its own
OTHER_CUSTOMER: dict[str, str] = {}  # another shipper, for what must stay apart
OPERATOR: dict[str, str] = {}  # the carrier: depart, arrive, deliver any booking
IDS: dict[str, str] = {}  # their customer_ids: "customer", "other_customer", "operator"


def _redis_test_url() -> str:
    """Database 15 of REDIS_URL's server, or TEST_REDIS_DB's (two suites at once)."""
    parsed = urlparse(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    return urlunparse(parsed._replace(path="/" + os.environ.get("TEST_REDIS_DB", "15")))


@pytest.fixture(scope="session")
def mongo_uri(tmp_path_factory):
    if os.environ.get("TEST_MONGODB_URI"):
        yield os.environ["TEST_MONGODB_URI"]
        return
    base = tmp_path_factory.mktemp("secantus")
    proc, uri = start_secantus(base / "db", base / "secantus.log")
    yield uri.replace("/radiantgo?", "/radiantgo_test?")
    stop(proc)


@pytest.fixture(scope="session")
def settings(mongo_uri):
    return load_settings(
        os.environ,
        MONGODB_URI=mongo_uri,
        REDIS_URL=_redis_test_url(),
        QUEUE_NAMESPACE=f"test-{uuid.uuid4().hex[:8]}",
        LOG_LEVEL="WARNING",
        WORKER_POOL="prefork",
        WORKER_CONCURRENCY=4,
        WEB_WORKERS=2,
        WEB_THREADS=16,
        ADMIN_TOKEN=ADMIN_TOKEN,
        # Rate limits have tests of their own (with their own apps); here they
        # must not throttle the rest of the suite.
        RATE_LIMIT_BOOKINGS=1_000_000,
        RATE_LIMIT_UPDATES=1_000_000,
        RATE_LIMIT_ROUTES=1_000_000,
        RATE_LIMIT_ADMIN=1_000_000,
        RATE_LIMIT_BULK=1_000_000,
        RATE_LIMIT_JOBS=1_000_000,
        MAX_WAITERS=15,
    )


@pytest.fixture(scope="session")
def services(settings):
    svc = connect_services(settings)
    svc.redis.flushdb()
    from core.db import ensure_indexes

    ensure_indexes(svc.db)
    for headers, name, role in (
        (CUSTOMER, "customer", "customer"),
        (OTHER_CUSTOMER, "other_customer", "customer"),
        (OPERATOR, "operator", "operator"),
    ):
        made = new_customer(svc.db, name=f"Test {name}", role=role)
        headers.update(bearer(made["api_key"]))
        IDS[name] = made["customer_id"]
    yield svc
    svc.close()


def new_customer(db, *, name="Acme Corp", role="customer", email=None) -> dict:
    """A customer (or operator) made in the database: the admin endpoint's result, key included."""
    from core.clock import utcnow
    from core.customers import create_customer

    email = email or f"{uuid.uuid4().hex[:8]}@example.com"
    return create_customer(db, name=name, email=email, role=role, now=utcnow())


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="session")
def app(settings, services):
    from ingress import create_app

    return create_app(settings, services=services)


@pytest.fixture
def client(app):
    return app.test_client()


def keyed_client(app, headers: dict[str, str]):
    """A test client whose every request carries `headers`' Authorization."""
    keyed = app.test_client()
    keyed.environ_base["HTTP_AUTHORIZATION"] = headers["Authorization"]
    return keyed


@pytest.fixture(scope="session")
def worker(settings, services, tmp_path_factory):
    """A real Celery worker process consuming this run's queues."""
    since = time.time()
    proc = start_worker(settings, tmp_path_factory.getbasetemp() / "worker.log")
    wait_for_worker(services.redis, proc, since)
    yield proc
    stop(proc)
    delete_queues(settings)


@pytest.fixture(scope="session")
def live_server(settings, worker, tmp_path_factory):
    """The ingress under gunicorn (gthread), as `make run` starts it."""
    proc, base = start_ingress(settings, tmp_path_factory.getbasetemp() / "gunicorn.log")
    yield base
    stop(proc)


def store_flights(services, items: list, chunk_size: int = 100, locks=None) -> dict:
    """Import raw flights as the import job does; returns its result."""
    from core import flights

    return flights.import_flights(
        services.db,
        locks or services.locks,
        items,
        chunk_size=chunk_size,
        default_capacity_kg=services.settings.DEFAULT_FLIGHT_CAPACITY_KG,
    )


def booking_body(**overrides):
    body = {"origin": "DEL", "destination": "BLR", "pieces": 5, "weight_kg": 125.5}
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not None}


def wait_job(base_or_client, job_url: str, timeout: float = 15, headers=None):
    """Poll a job (as the admin, who reads every job) until it finishes; returns its JSON."""
    headers = headers or ADMIN
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if isinstance(base_or_client, str):
            body = requests.get(base_or_client + job_url, headers=headers, timeout=5).json()
        else:
            body = base_or_client.get(job_url, headers=headers).get_json()
        if body["state"] in ("succeeded", "failed"):
            return body
        time.sleep(0.05)
    raise AssertionError(f"job {job_url} did not finish in {timeout} s")


@pytest.fixture
def private_redis(tmp_path):
    """A Redis of this test's own, so the test can kill and restart it: with
    the append-only file, as compose runs it (queued jobs' records live there)."""
    port = free_port()
    command = [
        "redis-server",
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "yes",
        "--dir",
        str(tmp_path),
    ]

    def start():
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        assert wait_for_port("127.0.0.1", port, 10)
        return proc

    state = {"proc": start()}
    yield port, state, start
    stop(state["proc"])
