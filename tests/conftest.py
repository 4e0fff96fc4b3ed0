"""Fixtures on real services: RabbitMQ, Redis, and a MongoDB wire server.

The suite starts its own SecantusDB (a fresh data dir) unless TEST_MONGODB_URI
names a server, uses Redis database 15, and namespaces its RabbitMQ queues, so
it never touches the data or the queues of a running `make run`.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import pytest
import requests

from core import health, queues
from core.services import connect_services
from core.settings import load_settings
from tools.stack import settings_env, wait_for_port

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _redis_test_url() -> str:
    parsed = urlparse(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    return urlunparse(parsed._replace(path="/15"))


@pytest.fixture(scope="session")
def mongo_uri(tmp_path_factory):
    if os.environ.get("TEST_MONGODB_URI"):
        yield os.environ["TEST_MONGODB_URI"]
        return
    port = free_port()
    data = tmp_path_factory.mktemp("secantus")
    log = open(data.parent / "secantus.log", "w")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "secantus",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--storage-path",
            str(data / "db"),
            "--log-level",
            "WARNING",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    assert wait_for_port("127.0.0.1", port, 30), "SecantusDB did not start"
    yield f"mongodb://127.0.0.1:{port}/radiantgo_test?retryWrites=false"
    proc.terminate()
    proc.wait(15)
    log.close()


@pytest.fixture(scope="session")
def settings(mongo_uri):
    return load_settings(
        os.environ,
        MONGODB_URI=mongo_uri,
        REDIS_URL=_redis_test_url(),
        QUEUE_NAMESPACE=f"test-{uuid.uuid4().hex[:8]}",
        LOG_LEVEL="WARNING",
        WORKER_POOL="threads",
        WORKER_CONCURRENCY=8,
        WEB_WORKERS=2,
        WEB_THREADS=16,
    )


@pytest.fixture(scope="session")
def services(settings):
    svc = connect_services(settings)
    svc.redis.flushdb()
    from core.db import ensure_indexes

    ensure_indexes(svc.db)
    yield svc
    svc.close()


@pytest.fixture(scope="session")
def app(settings, services):
    from ingress import create_app

    return create_app(settings, services=services)


@pytest.fixture
def client(app):
    return app.test_client()


def child_env(settings, **extra) -> dict[str, str]:
    return {**os.environ, **settings_env(settings), "PYTHONPATH": str(ROOT), **extra}


def start_worker(settings, log_path: Path, *, name: str = "test", queue_names=None):
    queue_list = queue_names or queues.ALL_QUEUES
    names = ",".join(queues.queue_name(q, settings.QUEUE_NAMESPACE) for q in queue_list)
    log = open(log_path, "a")  # noqa: SIM115 (owned by the process's lifetime)
    return subprocess.Popen(
        [
            str(VENV_BIN / "celery"),
            "-A",
            "workers.main",
            "worker",
            "-E",
            "-Q",
            names,
            "--pool",
            settings.WORKER_POOL,
            "--concurrency",
            str(settings.WORKER_CONCURRENCY),
            "--without-mingle",
            "--without-gossip",
            "-n",
            f"{name}-{uuid.uuid4().hex[:6]}@%h",
            "--loglevel",
            "WARNING",
        ],
        env=child_env(settings),
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def wait_for_worker(services, proc, since: float, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "worker exited during start-up"
        beats = services.redis.zrangebyscore(health.WORKER_HEARTBEATS, since, "+inf")
        if beats:
            return
        time.sleep(0.2)
    raise AssertionError("worker sent no heartbeat")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@pytest.fixture(scope="session")
def worker(settings, services, tmp_path_factory):
    """A real Celery worker process consuming this run's queues."""
    since = time.time()
    proc = start_worker(settings, tmp_path_factory.getbasetemp() / "worker.log")
    wait_for_worker(services, proc, since)
    yield proc
    stop(proc)
    _delete_queues(settings)


def _delete_queues(settings) -> None:
    from workers.celery_app import create_celery_app

    app = create_celery_app(settings)
    with app.connection_for_write() as conn:
        channel = conn.default_channel
        for q in queues.ALL_QUEUES:
            channel.queue_delete(queues.queue_name(q, settings.QUEUE_NAMESPACE))


@pytest.fixture(scope="session")
def live_server(settings, worker, tmp_path_factory):
    """The ingress under gunicorn (gthread), as `make run` starts it."""
    port = free_port()
    log = open(tmp_path_factory.getbasetemp() / "gunicorn.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(
        [
            str(VENV_BIN / "gunicorn"),
            "--bind",
            f"127.0.0.1:{port}",
            "--worker-class",
            "gthread",
            "--workers",
            str(settings.WEB_WORKERS),
            "--threads",
            str(settings.WEB_THREADS),
            "ingress:create_app()",
        ],
        env=child_env(settings),
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, "gunicorn exited during start-up"
        try:
            requests.get(base + "/health", timeout=2)
            break
        except requests.ConnectionError:
            time.sleep(0.2)
    yield base
    stop(proc)
    log.close()


def booking_body(**overrides):
    body = {"origin": "DEL", "destination": "BLR", "pieces": 5, "weight_kg": 125.5}
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not None}


def wait_job(base_or_client, job_url: str, timeout: float = 15):
    """Poll a job until it finishes; returns its JSON."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if isinstance(base_or_client, str):
            body = requests.get(base_or_client + job_url, timeout=5).json()
        else:
            body = base_or_client.get(job_url).get_json()
        if body["state"] in ("succeeded", "failed"):
            return body
        time.sleep(0.05)
    raise AssertionError(f"job {job_url} did not finish in {timeout} s")
