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
import http.client
import json
import os
import secrets
import shutil
import signal
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

from core import queues, stats
from core.access import CUSTOMER, OPERATOR
from core.clock import utcnow
from core.customers import create_customer
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


@dataclass(frozen=True)
class Call:
    """One HTTP request a closed-loop client sends, again and again."""

    method: str
    path: str
    body: bytes | None = None
    headers: tuple[tuple[str, str], ...] = ()


def closed_loop(base: str, calls: list[Call], seconds: float, connections: int, expect: int):
    """`connections` threads, each one keep-alive connection sending the next call
    (cycling over `calls` from its own offset) as soon as the last is answered,
    until `seconds` have passed. http.client, not requests: the client shares the
    machine, so the lighter it is the less it weighs on what is measured."""
    url = urlsplit(base)
    latencies: list[list[float]] = [[] for _ in range(connections)]
    sizes: list[list[int]] = [[] for _ in range(connections)]
    errors: dict[str, int] = {}
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds

    def client(i: int) -> None:
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
        n = i * len(calls) // connections
        try:
            while time.perf_counter() < deadline:
                call = calls[n % len(calls)]
                n += 1
                sent = time.perf_counter()
                try:
                    conn.request(call.method, call.path, body=call.body, headers=dict(call.headers))
                    response = conn.getresponse()
                    body = response.read()
                    outcome = response.status
                except (OSError, http.client.HTTPException) as exc:
                    conn.close()  # reconnects on the next request
                    outcome, body = type(exc).__name__, b""
                if outcome == expect:
                    latencies[i].append((time.perf_counter() - sent) * 1000)
                    sizes[i].append(len(body))
                else:
                    with lock:
                        errors[str(outcome)] = errors.get(str(outcome), 0) + 1
        finally:
            conn.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(connections)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {
        "wall_s": time.perf_counter() - started,
        "latencies_ms": [ms for mine in latencies for ms in mine],
        "sizes": [size for mine in sizes for size in mine],
        "errors": errors,
    }


def measured_round(
    pid: int, base: str, calls: list[Call], seconds: float, connections: int, expect: int
):
    """closed_loop, with the CPU of the server's process tree (pid) and of this client."""
    from perf.profiling import tree_cpu_s

    cpu_before, client_before = tree_cpu_s(pid), time.process_time()
    load = closed_loop(base, calls, seconds, connections, expect)
    cpu = tree_cpu_s(pid) - cpu_before
    client_cpu = time.process_time() - client_before
    ok = len(load["latencies_ms"])
    sent = ok + sum(load["errors"].values())
    return {
        **load,
        "rps": ok / load["wall_s"],
        "ok": ok,
        "cpu_ms_per_request": 1000 * cpu / ok if ok else None,
        "client_cpu_ms_per_request": 1000 * client_cpu / sent if sent else None,
    }


def summarize_rounds(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over rounds of measured_round, with each round's figures."""
    rps = [r["rps"] for r in rounds]
    cpu = [r["cpu_ms_per_request"] for r in rounds if r["cpu_ms_per_request"] is not None]
    client = [r["client_cpu_ms_per_request"] for r in rounds if r["client_cpu_ms_per_request"]]
    sizes = [s for r in rounds for s in r["sizes"]]
    errors: dict[str, int] = {}
    for r in rounds:
        for outcome, count in r["errors"].items():
            errors[outcome] = errors.get(outcome, 0) + count
    return {
        "rps": round(statistics.median(rps), 1),
        "rps_rounds": [round(x, 1) for x in rps],
        "cpu_ms_per_request": round(statistics.median(cpu), 3) if cpu else None,
        "cpu_ms_per_request_rounds": [round(c, 3) for c in cpu],
        "client_cpu_ms_per_request": round(statistics.median(client), 3) if client else None,
        "requests": sum(r["ok"] for r in rounds),
        "body_bytes_mean": round(statistics.fmean(sizes)) if sizes else None,
        "latency_ms": percentiles([ms for r in rounds for ms in r["latencies_ms"]]),
        "errors": errors,
    }


def pair_orders(pairs: int, first: str, second: str) -> list[list[str]]:
    """first second, second first, ...: each pair back to back, in alternating
    order, so a machine speeding up or slowing down weighs on both alike."""
    return [[first, second] if i % 2 == 0 else [second, first] for i in range(pairs)]


def alternating(
    pairs: int, first: str, second: str, measure: Callable[[str], Any]
) -> dict[str, list[Any]]:
    """measure(name) round by round in pair_orders' order: each name's results."""
    results: dict[str, list[Any]] = {first: [], second: []}
    for order in pair_orders(pairs, first, second):
        for name in order:
            results[name].append(measure(name))
    return results


@dataclass(frozen=True)
class Target:
    """A server measured in closed-loop rounds: its process (for its CPU), its
    base URL and the calls sent to it."""

    pid: int
    base: str
    calls: list[Call]


def floor_rounds(
    targets: dict[str, Target],
    pairs: int,
    seconds: float,
    connections: int,
    expect: int,
    after_round: Callable[[], Any] | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """measured_round of the floor and the app (`targets`' two names, the floor
    first) in back-to-back pairs; `after_round` runs after each round."""

    def measure(name: str) -> dict[str, Any]:
        t = targets[name]
        measured = measured_round(t.pid, t.base, t.calls, seconds, connections, expect)
        if after_round is not None:
            after_round()
        return measured

    return alternating(pairs, *targets, measure)


@contextlib.contextmanager
def floor_server(settings: Settings, app_target: str, name: str) -> Iterator[tuple[Any, str]]:
    """A second gunicorn serving `app_target` with the ingress's settings (a
    floor app): (process, base URL), stopped at the block's end."""
    work = Path(tempfile.mkdtemp(prefix=f"radiantgo-bench-{name}-"))
    floor = None
    try:
        floor, base = start_ingress(settings, work / "floor.log", app_target=app_target)
        yield floor, base
    finally:
        if floor is not None:
            stop(floor)
        shutil.rmtree(work, ignore_errors=True)


def against_floor(results: dict[str, list[dict[str, Any]]], floor: str, app: str) -> dict:
    """Both apps' summaries, and `app`'s requests/s over the floor's: of the medians,
    and pair by pair; `error_free` says whether the comparison means anything."""
    figures = {name: summarize_rounds(rounds) for name, rounds in results.items()}
    pairs = [
        round(a["rps"] / f["rps"], 3) if f["rps"] else None
        for f, a in zip(results[floor], results[app], strict=True)
    ]
    ratio = figures[app]["rps"] / figures[floor]["rps"] if figures[floor]["rps"] else 0.0
    return {
        **figures,
        "rps_ratio": round(ratio, 3),
        "rps_ratio_pairs": pairs,
        "error_free": not (figures[floor]["errors"] or figures[app]["errors"]),
    }


def floor_report_lines(f: dict, labels: dict[str, str], unit: str) -> list[str]:
    """Per app (labels: name -> endpoint): requests/s, gunicorn CPU per `unit`,
    latency, errors, mean body size where known, and the client's own CPU."""
    lines = []
    for name, label in labels.items():
        m = f[name]
        rps_rounds = " ".join(f"{x:.0f}" for x in m["rps_rounds"])
        cpu_rounds = " ".join(f"{c:.2f}" for c in m["cpu_ms_per_request_rounds"])
        lat = m["latency_ms"]
        p50 = f"{lat['p50']:.1f}" if lat["p50"] is not None else "-"
        p95 = f"{lat['p95']:.1f}" if lat["p95"] is not None else "-"
        cpu = m["cpu_ms_per_request"]
        errors = sum(m["errors"].values())
        detail = f" {m['errors']}" if errors else ""
        body = f"   body {m['body_bytes_mean']} B mean" if m["body_bytes_mean"] else ""
        lines += [
            f"  {name:<8}{label}",
            f"          {m['rps']:.0f} requests/s (median; rounds {rps_rounds})",
            f"          gunicorn CPU {cpu:.2f} ms/{unit} (median; rounds {cpu_rounds})"
            if cpu is not None
            else "          gunicorn CPU -",
            f"          latency p50 {p50} ms  p95 {p95} ms   errors {errors}{detail}{body}"
            f"   (client CPU {m['client_cpu_ms_per_request'] or 0:.2f} ms/request)",
        ]
    return lines


def ratio_line(f: dict, verdict: str) -> str:
    pairs = " ".join(f"{r:.2f}" if r is not None else "-" for r in f["rps_ratio_pairs"])
    return (
        f"  requests/s ingress/floor {f['rps_ratio']:.2f} (medians; pairs {pairs})"
        f"   (goal >= {f['goal_ratio']}: {verdict})"
    )
