"""Fixtures on real services: RabbitMQ, Redis, and a MongoDB wire server.

The suite starts its own SecantusDB (a fresh data dir) unless TEST_MONGODB_URI
names a server, uses Redis database 15, and namespaces its RabbitMQ queues, so
it never touches the data or the queues of a running `make run`.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import types
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import pytest
import requests
from pymongo.errors import PyMongoError

from core.migrations import migrate
from core.services import Services, connect_services
from core.settings import Settings, load_settings, replace
from tools.processes import (
    delete_queues,
    free_port,
    start_beat,
    start_ingress,
    start_secantus,
    start_worker,
    stop,
    wait_for_port,
    wait_for_worker,
)

pytest_plugins = ["tests.webhooks"]  # the `hooks` stack

ADMIN_TOKEN = "test-admin-token"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
# Authorization headers of the session's own customers, filled in by the
# `services` fixture (keys are random; only their hashes are stored): a test
# that sends them depends on `services`, directly or through another fixture.
CUSTOMER: dict[str, str] = {}  # a shipper: books, cancels, lists and reads its own
OTHER_CUSTOMER: dict[str, str] = {}  # another shipper, for what must stay apart
OPERATOR: dict[str, str] = {}  # the carrier: depart, arrive, deliver any booking
IDS: dict[str, str] = {}  # their customer_ids: "customer", "other_customer", "operator"


# The two tiers. `make test-fast` leaves out every test marked `stack`: one that
# starts processes of its own (a Celery worker, gunicorn, a redis-server, a
# tool) or restarts a service. A test is marked when its own code, a helper of
# the test modules it calls, or one of its fixtures names what starts a
# process (PROCESS_NAMES); the session's SecantusDB (`mongo_uri`) does not
# count. `_spawns_only_when_marked` checks the marks at run time.
PROCESS_NAMES = frozenset(
    {"subprocess", "Popen", "start_worker", "start_ingress", "start_secantus", "kill_worker"}
)
SESSION_PROCESSES = frozenset({"mongo_uri"})


def _names_a_process(code: types.CodeType, globals_: dict, seen: set) -> bool:
    """Whether `code`, a function nested in it, or a tests.* function it calls
    names one of PROCESS_NAMES (attributes count: `stack.start_worker()`)."""
    if code in seen:
        return False
    seen.add(code)
    if PROCESS_NAMES & set(code.co_names):
        return True
    nested = [c for c in code.co_consts if isinstance(c, types.CodeType)]
    called = [globals_.get(name) for name in code.co_names]
    helpers = [f for f in called if isinstance(f, types.FunctionType)]
    return any(_names_a_process(c, globals_, seen) for c in nested) or any(
        f.__module__.startswith("tests") and _names_a_process(f.__code__, f.__globals__, seen)
        for f in helpers
    )


def _starts_processes(item: pytest.Item) -> bool:
    functions = [item.function] if isinstance(item, pytest.Function) else []
    for name, fixturedefs in item._fixtureinfo.name2fixturedefs.items():
        if name not in SESSION_PROCESSES:
            functions += [fixturedef.func for fixturedef in fixturedefs]
    seen: set = set()
    return any(
        _names_a_process(f.__code__, f.__globals__, seen)
        for f in functions
        if isinstance(f, types.FunctionType)
    )


# What makes a test's outcome depend on QUEUE_TYPE (queue arguments, retries in
# delay queues or in the worker, redelivery limits): a worker consuming, or the
# publish path and queue declaration themselves. `make test-quorum` runs these.
QUEUE_TYPE_FIXTURES = frozenset({"worker", "live_server", "isolated_stack", "quorum_queues"})
QUEUE_TYPE_PATHS = (
    *("system/", "faults/", "workers/"),
    *("core/test_accepting.py", "tools/test_stack.py"),
)


def _depends_on_queue_type(item: pytest.Item) -> bool:
    path = item.path.relative_to(Path(__file__).parent).as_posix()
    return bool(QUEUE_TYPE_FIXTURES & set(getattr(item, "fixturenames", ()))) or path.startswith(
        QUEUE_TYPE_PATHS
    )


def pytest_collection_modifyitems(config, items):
    for item in items:
        if _starts_processes(item):
            item.add_marker(pytest.mark.stack)
        if _depends_on_queue_type(item):
            item.add_marker(pytest.mark.queue_type)


_spawned: list[str] = []


def _record_spawns(event: str, args: tuple) -> None:
    if event == "subprocess.Popen":
        _spawned.append(" ".join(map(str, args[1] or [args[0]]))[:200])


sys.addaudithook(_record_spawns)


@pytest.fixture(autouse=True)
def _spawns_only_when_marked(request):
    """A test left in the fast tier that starts a process anyway fails, naming it."""
    if request.node.get_closest_marker("stack"):
        yield
        return
    before = len(_spawned)
    yield
    spawned = [cmd for cmd in _spawned[before:] if "secantus" not in cmd]
    assert not spawned, (
        f"started {spawned} without the `stack` mark: name what starts it in the test or "
        "its fixture (conftest PROCESS_NAMES), or mark it @pytest.mark.stack"
    )


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
        RATE_LIMIT_LISTS=1_000_000,
        RATE_LIMIT_WEBHOOKS=1_000_000,
        RATE_LIMIT_AUTH_FAILURES=1_000_000,
        # Load shedding too (tests/*/test_overload.py turn it on): the suite's
        # bursts of 50 clients on a busy 2-core machine must not be shed.
        OVERLOAD_SHEDDING=False,
        MAX_WAITERS=15,
        # The suite's many Prefer: wait requests end sooner with short groups
        # (the default's longer wait is for throughput, measured in perf/).
        GROUP_COMMIT_WAIT_MS=10,
        # Receivers in the tests listen on loopback (tests/receivers.py); the
        # refusal of such addresses has tests of its own, with it off.
        WEBHOOK_ALLOW_PRIVATE=True,
    )


@pytest.fixture(scope="session")
def services(settings):
    svc = connect_services(settings)
    svc.redis.flushdb()
    migrate(svc.db, settings)  # as `make run` does before the processes start
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


@pytest.fixture
def unworked(settings):
    """An app whose queue no worker reads (the session's worker may be running):
    its creates stay queued."""
    from ingress import create_app

    own = replace(settings, QUEUE_NAMESPACE=f"nobody-{uuid.uuid4().hex[:6]}")
    return create_app(own, services=connect_services(own))


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


def stored_booking(services, *, customer_id: str | None = None, **fields) -> str:
    """A BOOKED booking stored straight in the database, as a create job stores
    one (booking_body's fields, `fields` changed); returns its ref_id."""
    from core.clock import utcnow
    from core.ids import new_job_id, new_ref_id

    ref_id = new_ref_id()
    data = booking_body(**fields)
    store_booking(
        services.db, ref_id, data, job_id=new_job_id(), now=utcnow(), customer_id=customer_id
    )
    return ref_id


def store_booking(db, ref_id: str, data: dict, **stored):
    """A BOOKED booking and its BOOKING_CREATED event written as a create job
    writes them (core.bookings.insert_new), without reserving space; `stored`:
    booking_document's job_id, now, customer_id, awb. Returns the booking as
    stored, None if another job's booking holds `ref_id`."""
    from core import bookings

    [booking] = bookings.insert_new(db, [bookings.booking_document(ref_id, data, **stored)])
    return booking


def moved_booking(
    services, ref_id: str, target: str, *, job_id=None, locks=None, clock=None, owner=None, **data
):
    """A booking moved to `target` as a transition job moves it (job_id: its job's,
    e.g. again for a redelivery; `data`: the request's details); returns the booking."""
    from core import transitions
    from core.clock import utcnow
    from core.ids import new_job_id

    return transitions.transition_booking(
        services.db,
        locks or services.locks,
        ref_id=ref_id,
        target=target,
        job_id=job_id or new_job_id(),
        data=data,
        clock=clock or utcnow,
        queued_records=services.redis,
        owner=owner,
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


@dataclass
class IsolatedStack:
    """Settings of a test's own (its queue namespace, and whatever it overrides)
    on the real services, with workers and an ingress started on request."""

    settings: Settings
    services: Services
    logs: Path
    processes: list[subprocess.Popen] = field(default_factory=list)

    def app(self):
        """A Flask app on these settings and services."""
        from ingress import create_app

        return create_app(self.settings, services=self.services)

    def client(self):
        return self.app().test_client()

    def start_worker(self, name: str = "worker", *, wait: bool = True, **options):
        """A Celery worker on this stack's queues; `wait` for its first heartbeat."""
        since = time.time()
        proc = start_worker(self.settings, self.logs / f"{name}.log", name=name, **options)
        self.processes.append(proc)
        if wait:
            wait_for_worker(self.services.redis, proc, since)
        return proc

    def start_beat(self):
        """Celery beat on this stack's schedule (its sweeps and resends)."""
        proc = start_beat(self.settings, self.logs / "beat.log")
        self.processes.append(proc)
        return proc

    def start_ingress(self) -> str:
        """gunicorn serving this stack; returns its base URL."""
        proc, base = start_ingress(self.settings, self.logs / "ingress.log")
        self.processes.append(proc)
        return base

    def close(self) -> None:
        for proc in reversed(self.processes):
            stop(proc)
        delete_queues(self.settings)
        self.services.close()


@pytest.fixture
def isolated_stack(settings, tmp_path):
    """A factory: isolated_stack(name, **overrides) -> IsolatedStack, its queue
    namespace the session's plus `name`; every process it started is stopped,
    and its queues deleted, when the test ends."""
    made: list[IsolatedStack] = []

    def make(name: str, **overrides) -> IsolatedStack:
        namespace = f"{settings.QUEUE_NAMESPACE}-{name}"
        own = replace(settings, QUEUE_NAMESPACE=namespace, **overrides)
        logs = tmp_path / name
        logs.mkdir(exist_ok=True)
        made.append(IsolatedStack(own, connect_services(own), logs))
        if own.MONGODB_URI != settings.MONGODB_URI:  # its own database: migrated, if up
            with contextlib.suppress(PyMongoError):  # one down on purpose stays down
                migrate(made[-1].services.db, own)
        return made[-1]

    yield make
    for stack in made:
        stack.close()


def post_booking(base: str, body: dict | None = None, **headers) -> requests.Response:
    """POST /api/bookings over HTTP as the test customer (`headers` added, e.g. Prefer)."""
    return requests.post(
        base + "/api/bookings",
        json=booking_body() if body is None else body,
        headers={**CUSTOMER, **headers},
        timeout=15,
    )


def recorded_job(settings, services, job_type: str, payload: dict) -> str:
    """A queued job recorded in MongoDB as the ingress records one, never published."""
    from core import jobs
    from core.clock import utcnow
    from core.ids import new_job_id

    job_id = new_job_id()
    links = {"job": f"/api/jobs/{job_id}"}
    if "ref_id" in payload:
        links["booking"] = f"/api/bookings/{payload['ref_id']}"
    job = jobs.new_job(
        settings, job_id=job_id, job_type=job_type, payload=payload, now=utcnow(), links=links
    )
    jobs.record_job(services.db, settings, job)
    return job_id


def flight_items(prefix: str, count: int, day, origin: str, destination: str) -> list[dict]:
    """`count` flights a minute apart from `day`, as the bulk import takes them."""
    from datetime import timedelta

    return [
        {
            "flight_number": f"{prefix}{n:04d}",
            "airline": "Test Air",
            "origin": origin,
            "destination": destination,
            "departure_ts": (day + timedelta(minutes=n)).isoformat(),
            "arrival_ts": (day + timedelta(minutes=n + 90)).isoformat(),
        }
        for n in range(count)
    ]


@pytest.fixture
def quorum_queues(isolated_stack) -> Settings:
    """Settings with QUEUE_TYPE=quorum (delivery limit 3) in a namespace of their
    own, its queues declared as `make run` declares them."""
    from tools import stack

    quorum = isolated_stack(
        f"quorum-{uuid.uuid4().hex[:4]}", QUEUE_TYPE="quorum", QUEUE_DELIVERY_LIMIT=3
    ).settings
    stack.ensure_bounded_queues(quorum)
    return quorum


def next_message(conn, name: str, timeout: float = 10, missing_ok: bool = False):
    """The next message of queue `name` (not acked), waiting for it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        message = conn.default_channel.basic_get(name, no_ack=False)
        if message is not None:
            return message
        time.sleep(0.05)
    if missing_ok:
        return None
    raise AssertionError(f"no message in {name} after {timeout} s")


def progressed(client, job_url: str, total: int, timeout: float = 60) -> dict:
    """Poll a bulk job until it has done some of its `total` items, not all; returns it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(job_url, headers=ADMIN).get_json()
        if 0 < job.get("progress", {}).get("done", 0) < total:
            return job
        time.sleep(0.01)
    raise AssertionError(f"job {job_url} showed no partial progress in {timeout} s")
