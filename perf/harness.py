"""What every benchmark shares: an isolated stack, an open-loop load, percentiles.

The stack is the one `make run` starts (gunicorn gthread ingress, a Celery
worker, SecantusDB), on a fresh database, Redis DB 13 (flushed; a REDIS_URL
override gives another) and a queue namespace of its own, so a benchmark
never touches dev data. Loopback only.

Its callers are its own too: a customer and an operator created in its
database, and a generated admin token. `stack.customer`, `stack.operator` and
`stack.admin` are ready request headers for each.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import secrets
import shutil
import signal
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from core import bookings, queues, stats
from core.access import CUSTOMER, OPERATOR
from core.cache_keys import ROUTES
from core.clock import utcnow
from core.customers import create_customer
from core.ids import new_job_id, new_ref_id
from core.jobs import JOB_FINISHED_CHANNEL
from core.migrations import migrate
from core.services import Services, connect_services
from core.settings import Settings, load_settings
from tools.processes import (
    delete_queues,
    start_ingress,
    start_secantus,
    start_worker,
    stop,
    wait_for_worker,
)

# BENCH_REDIS_DB: engineers benchmarking side by side on one Redis need a
# database each (each stack flushes its own at start).
BENCH_REDIS_URL = f"redis://127.0.0.1:6379/{os.environ.get('BENCH_REDIS_DB', '13')}"
BODY = {"origin": "DEL", "destination": "BLR", "pieces": 5, "weight_kg": 125.5}
TRANSITION = {"location": "Airport", "notes": "Departed"}  # the spec's load-test body


# The service's own percentiles (core.stats), with the largest value as well.
percentiles = functools.partial(stats.percentiles, maximum=True)


def write_figures(path: Path | None, figures: Any) -> None:
    """A benchmark's --json: its figures as JSON at `path`, if given."""
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(figures, indent=2))


def command_line(doc: str, *, figures: bool = True) -> argparse.ArgumentParser:
    """A benchmark's argument parser, its module docstring as the help; with
    `figures`, its --json option (publish writes the figures there)."""
    parser = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    if figures:
        parser.add_argument("--json", type=Path, help="also write the figures here")
    return parser


def publish(report: Callable[[Any], str], figures: Any, json_path: Path | None) -> None:
    """A benchmark's end: its report printed, its figures written for --json."""
    print(report(figures))
    write_figures(json_path, figures)


def fmt(p: dict[str, float | None]) -> str:
    return "  ".join(f"{k} {v:.1f} ms" if v is not None else f"{k} -" for k, v in p.items())


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class Stack:
    settings: Settings
    services: Services
    base: str
    worker: Any
    celery: Any
    # The other processes, so that a profile can find their pids.
    ingress: Any = None
    mongo: Any = None
    # The stack's own callers' API keys (perf/locustfile.py takes the keys themselves).
    customer_id: str = ""
    customer_key: str = ""
    operator_key: str = ""

    @property
    def customer(self) -> dict[str, str]:
        """Headers of a customer: creates bookings, reads its own jobs."""
        return bearer(self.customer_key)

    @property
    def operator(self) -> dict[str, str]:
        """Headers of an operator: transitions on any booking, reads any job."""
        return bearer(self.operator_key)

    @property
    def admin(self) -> dict[str, str]:
        """Headers of the admin token: /api/admin, reads any job."""
        return bearer(self.settings.ADMIN_TOKEN)


RATE_LIMITS = (
    "RATE_LIMIT_BOOKINGS",
    "RATE_LIMIT_UPDATES",
    "RATE_LIMIT_ROUTES",
    "RATE_LIMIT_ADMIN",
    "RATE_LIMIT_BULK",
    "RATE_LIMIT_JOBS",
    "RATE_LIMIT_LISTS",
    "RATE_LIMIT_WEBHOOKS",
)


def create_callers(db) -> dict[str, str]:
    """A customer and an operator in the stack's database: Stack's key fields."""
    now = utcnow()
    customer = create_customer(
        db, name="Bench Customer", email="customer@bench.invalid", role=CUSTOMER, now=now
    )
    operator = create_customer(
        db, name="Bench Operator", email="operator@bench.invalid", role=OPERATOR, now=now
    )
    return {
        "customer_id": customer["customer_id"],
        "customer_key": customer["api_key"],
        "operator_key": operator["api_key"],
    }


@contextlib.contextmanager
def isolated_stack(
    *,
    pool: str = "prefork",
    concurrency: int | None = None,
    queue_list: tuple[str, ...] = queues.ALL_QUEUES,
    **overrides: Any,
) -> Iterator[Stack]:
    """The stack, its worker consuming `queue_list` (a benchmark that starts
    workers of its own for some queues leaves them out)."""
    from celeryconfig import create_celery_app

    work = Path(tempfile.mkdtemp(prefix="radiantgo-bench-"))
    mongo, uri = start_secantus(work / "db", work / "secantus.log")
    # Load is the point here: rate limits are raised by settings (callers may
    # override), never by code changes.
    limits = {name: 1_000_000 for name in RATE_LIMITS}
    # Never the environment's admin token: the stack's callers are its own.
    overrides.setdefault("ADMIN_TOKEN", secrets.token_urlsafe(24))
    # Flushed at the start. A benchmark run beside another one on this machine
    # needs a database of its own: the AWB claims of two stacks would collide.
    overrides.setdefault("REDIS_URL", BENCH_REDIS_URL)
    settings = load_settings(
        os.environ,
        MONGODB_URI=uri,
        QUEUE_NAMESPACE=f"bench-{uuid.uuid4().hex[:6]}",
        LOG_LEVEL="WARNING",
        WORKER_POOL=pool,
        **({} if concurrency is None else {"WORKER_CONCURRENCY": concurrency}),
        **{**limits, **overrides},
    )
    svc = connect_services(settings)
    svc.redis.flushdb()
    migrate(svc.db, settings)  # as `make run` does before the processes start
    keys = create_callers(svc.db)
    since = time.time()
    worker = start_worker(settings, work / "worker.log", queue_list=queue_list)
    ingress = None
    try:
        wait_for_worker(svc.redis, worker, since)
        ingress, base = start_ingress(settings, work / "ingress.log")
        yield Stack(
            settings,
            svc,
            base,
            worker,
            create_celery_app(settings),
            ingress=ingress,
            mongo=mongo,
            **keys,
        )
    finally:
        for proc in (ingress, worker, mongo):
            if proc is not None:
                stop(proc)
        delete_queues(settings)
        svc.close()
        shutil.rmtree(work, ignore_errors=True)  # the database and logs of this run


@dataclass
class LoadResult:
    latencies_ms: list[float]
    job_ids: list[str]
    errors: dict[str, int]
    offered_rate: float
    achieved_rate: float


def open_loop(
    request: Callable[[requests.Session, int], requests.Response],
    rate: float,
    seconds: float,
    *,
    threads: int = 64,
    expect: int = 202,
) -> LoadResult:
    """Send `rate` requests/s for `seconds` on a fixed schedule (not closed-loop:
    a slow answer does not slow the offered load). Returns accept latencies."""
    total = int(rate * seconds)
    latencies: list[float] = []
    job_ids: list[str] = []
    errors: dict[str, int] = {}
    lock = threading.Lock()
    local = threading.local()
    start = time.perf_counter() + 0.2

    def fire(i: int) -> None:
        session = getattr(local, "session", None) or requests.Session()
        local.session = session
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        sent = time.perf_counter()
        try:
            r = request(session, i)
            elapsed = (time.perf_counter() - sent) * 1000
            outcome = r.status_code
        except requests.RequestException as exc:
            outcome, elapsed, r = type(exc).__name__, 0.0, None
        with lock:
            if outcome == expect:
                latencies.append(elapsed)
                job_ids.append(r.json()["job_id"])
            else:
                errors[str(outcome)] = errors.get(str(outcome), 0) + 1

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(fire, range(total)))
    achieved = total / (time.perf_counter() - start)
    return LoadResult(latencies, job_ids, errors, rate, achieved)


class FinishedJobs:
    """Counts finished jobs from the workers' Redis notices: polling MongoDB
    with a large $in would load the very database being measured."""

    def __init__(self, redis_client):
        self.pubsub = redis_client.pubsub(ignore_subscribe_messages=True)
        self.pubsub.subscribe(JOB_FINISHED_CHANNEL)
        self.seen: set[str] = set()

    def wait(self, job_ids: list[str], timeout: float) -> float:
        """Seconds until every job in `job_ids` has finished (or raise)."""
        wanted = set(job_ids)
        started = time.perf_counter()
        deadline = started + timeout
        while not wanted <= self.seen:
            if time.perf_counter() > deadline:
                raise RuntimeError(f"{len(wanted - self.seen)} jobs unfinished after {timeout} s")
            message = self.pubsub.get_message(timeout=0.5)
            if message:
                self.seen.add(message["data"])
        return time.perf_counter() - started


def job_outcomes(db, job_ids: list[str]) -> tuple[list[float], dict[str, int]]:
    """End-to-end ms (accepted -> finished) of succeeded jobs, and counts by state."""
    e2e, states = [], {}
    for job_id in job_ids:  # one indexed find each: SecantusDB scans for a large $in
        doc = db.jobs.find_one({"_id": job_id}, {"created_at": 1, "finished_at": 1, "state": 1})
        states[doc["state"]] = states.get(doc["state"], 0) + 1
        if doc["state"] == "succeeded":
            e2e.append((doc["finished_at"] - doc["created_at"]).total_seconds() * 1000)
    return e2e, states


def open_loop_figures(db, load: LoadResult) -> dict[str, Any]:
    """An open loop's figures once its jobs have finished: rates, errors, job
    states, accept and end-to-end latency."""
    e2e, states = job_outcomes(db, load.job_ids)
    return {
        "offered_rate": load.offered_rate,
        "achieved_rate": round(load.achieved_rate, 1),
        "accepted": len(load.latencies_ms),
        "errors": load.errors,
        "job_states": states,
        "accept_ms": percentiles(load.latencies_ms),
        "end_to_end_ms": percentiles(e2e),
    }


def open_loop_line(f: dict[str, Any]) -> str:
    """open_loop_figures' rates, errors and job states, as a report line."""
    return (
        f"  offered {f['offered_rate']:.0f}/s, achieved {f['achieved_rate']:.1f}/s, "
        f"{f['accepted']} accepted, errors {f['errors'] or 0}, jobs {f['job_states']}"
    )


@contextlib.contextmanager
def paused(worker) -> Iterator[None]:
    """The worker process stopped (SIGSTOP) for the block: what is sent queues up."""
    os.kill(worker.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(worker.pid, signal.SIGCONT)


def follow_job(
    stack: Stack, location: str, deadline: float, *, interval: float, timeout: float
) -> dict[str, Any] | None:
    """Polls the job at `location` (as the admin) until it ends: the job, or None
    once time.perf_counter() passes `deadline`."""
    while time.perf_counter() < deadline:
        job = requests.get(stack.base + location, headers=stack.admin, timeout=timeout).json()
        if job["state"] in ("succeeded", "failed"):
            return job
        time.sleep(interval)
    return None


# -- closed-loop rounds against a floor (perf.bench_accept, perf.bench_reads) ----------


def seed_bookings(db, count: int, customer_id: str | None = None) -> list[str]:
    """`count` BOOKED bookings owned by `customer_id`, inserted directly; their ref_ids."""
    now = utcnow()
    docs = [
        bookings.booking_document(
            new_ref_id(), BODY, job_id=new_job_id(), now=now, customer_id=customer_id
        )
        for _ in range(count)
    ]
    for start in range(0, count, 1000):
        chunk = docs[start : start + 1000]
        db.bookings.insert_many(chunk, ordered=False)
        db.booking_events.insert_many([bookings.created_event(b) for b in chunk], ordered=False)
    return [d["ref_id"] for d in docs]


def route_counts(cache) -> tuple[int, int]:
    """The route cache's (hits, misses) so far, as /api/admin/cache/stats counts them."""
    routes = cache.hit_stats()[ROUTES]
    return routes["hits"], routes["misses"]


def ms_since(start: float) -> float:
    """Milliseconds since `start`, a time.perf_counter()."""
    return (time.perf_counter() - start) * 1000
