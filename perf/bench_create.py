"""Booking creation: accept latency, end-to-end latency, and throughput against
the floor of a no-op Celery task, on one isolated stack in one run.

    make bench                       # defaults below
    python -m perf.bench_create --rate 100 --seconds 10 --drain 2000

Phases (each bounded):
1. accept: POST bookings open-loop at --rate for --seconds through gunicorn;
   accept latency p50/p95/p99, then end-to-end (accepted -> committed) p50/p95/p99
   from the job records' own timestamps.
2. drain: with the worker paused, queue --drain create jobs; resume it and time
   until every job has succeeded: the worker-bound create throughput.
3. floor: the same with --drain no-op tasks on the same broker and worker.
Only loopback addresses are used.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from core import queues
from core.jobs import JOB_FINISHED_CHANNEL
from core.services import connect_services
from core.settings import load_settings
from tools.processes import (
    delete_queues,
    start_ingress,
    start_secantus,
    start_worker,
    stop,
    wait_for_worker,
)
from workers.celery_app import create_celery_app

BODY = {"origin": "DEL", "destination": "BLR", "pieces": 5, "weight_kg": 125.5}


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"p50": float("nan"), "p95": float("nan"), "p99": float("nan"), "max": float("nan")}
    q = statistics.quantiles(values, n=100, method="inclusive")
    return {"p50": q[49], "p95": q[94], "p99": q[98], "max": max(values)}


def open_loop(base: str, rate: float, seconds: float, threads: int = 64):
    """POST at a fixed offered rate (not closed-loop); returns latencies and job ids."""
    total = int(rate * seconds)
    latencies: list[float] = []
    job_ids: list[str] = []
    errors: list[str] = []
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
            r = session.post(base + "/api/bookings", json=BODY, timeout=10)
            elapsed = (time.perf_counter() - sent) * 1000
            with lock:
                if r.status_code == 202:
                    latencies.append(elapsed)
                    job_ids.append(r.json()["job_id"])
                else:
                    errors.append(str(r.status_code))
        except requests.RequestException as exc:
            with lock:
                errors.append(type(exc).__name__)

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(fire, range(total)))
    achieved = total / (time.perf_counter() - start)
    return latencies, job_ids, errors, achieved


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


def end_to_end_ms(db, job_ids: list[str]) -> list[float]:
    docs = (
        db.jobs.find_one({"_id": i}, {"created_at": 1, "finished_at": 1, "state": 1})
        for i in job_ids
    )
    return [
        (d["finished_at"] - d["created_at"]).total_seconds() * 1000
        for d in docs
        if d["state"] == "succeeded"
    ]


def queue_depth(celery, settings, queue: str) -> int:
    with celery.connection_for_write() as conn:
        name = queues.queue_name(queue, settings.QUEUE_NAMESPACE)
        return conn.default_channel.queue_declare(name, passive=True).message_count


def drain_creates(
    base: str, finished: FinishedJobs, worker, count: int, threads: int = 32
) -> float:
    os.kill(worker.pid, signal.SIGSTOP)
    try:
        with ThreadPoolExecutor(threads) as pool, requests.Session() as session:
            ids = list(
                pool.map(
                    lambda _: session.post(base + "/api/bookings", json=BODY, timeout=10).json()[
                        "job_id"
                    ],
                    range(count),
                )
            )
    finally:
        os.kill(worker.pid, signal.SIGCONT)
    return count / finished.wait(ids, timeout=300)


def drain_noops(celery, settings, worker, count: int, threads: int = 16) -> float:
    os.kill(worker.pid, signal.SIGSTOP)
    try:
        queue = queues.queue_name(queues.MAINTENANCE, settings.QUEUE_NAMESPACE)
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(lambda _: celery.send_task(queues.NOOP, queue=queue), range(count)))
    finally:
        os.kill(worker.pid, signal.SIGCONT)
    started = time.perf_counter()
    deadline = started + 300
    while queue_depth(celery, settings, queues.MAINTENANCE) > 0:
        if time.perf_counter() > deadline:
            raise RuntimeError("no-op tasks did not drain")
        time.sleep(0.02)
    return count / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=100.0, help="offered creates/s in phase 1")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--drain", type=int, default=2000, help="jobs per drain phase")
    parser.add_argument("--pool", default="threads", choices=["threads", "prefork"])
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="radiantgo-bench-"))
    mongo, uri = start_secantus(work / "db", work / "secantus.log")
    settings = load_settings(
        os.environ,
        MONGODB_URI=uri,
        REDIS_URL="redis://127.0.0.1:6379/13",
        QUEUE_NAMESPACE=f"bench-{uuid.uuid4().hex[:6]}",
        LOG_LEVEL="WARNING",
        WORKER_POOL=args.pool,
        WORKER_CONCURRENCY=args.concurrency,
    )
    svc = connect_services(settings)
    svc.redis.flushdb()
    celery = create_celery_app(settings)
    since = time.time()
    worker = start_worker(settings, work / "worker.log")
    ingress = None
    try:
        wait_for_worker(svc.redis, worker, since)
        ingress, base = start_ingress(settings, work / "ingress.log")
        for _ in range(50):  # warm connections and pools
            requests.post(base + "/api/bookings", json=BODY, timeout=10)

        finished = FinishedJobs(svc.redis)
        accept, ids, errors, achieved = open_loop(base, args.rate, args.seconds)
        finished.wait(ids, timeout=300)
        e2e = end_to_end_ms(svc.db, ids)
        create_tput = drain_creates(base, finished, worker, args.drain)
        noop_tput = drain_noops(celery, settings, worker, args.drain)
    finally:
        for proc in (ingress, worker, mongo):
            if proc is not None:
                stop(proc)
        delete_queues(settings)

    figures = {
        "offered_rate": args.rate,
        "achieved_rate": round(achieved, 1),
        "accepted": len(accept),
        "errors": len(errors),
        "accept_ms": {k: round(v, 2) for k, v in percentiles(accept).items()},
        "end_to_end_ms": {k: round(v, 2) for k, v in percentiles(e2e).items()},
        "create_throughput_per_s": round(create_tput, 1),
        "noop_throughput_per_s": round(noop_tput, 1),
        "ratio_to_floor": round(create_tput / noop_tput, 3),
        "worker": f"{args.pool} x{args.concurrency}",
    }
    a, e = figures["accept_ms"], figures["end_to_end_ms"]
    print(
        f"booking creation benchmark ({figures['worker']} worker, 2x gthread ingress, SecantusDB)"
    )
    print(
        f"  offered {args.rate:.0f}/s for {args.seconds:.0f} s, achieved {achieved:.1f}/s, "
        f"{len(accept)} accepted, {len(errors)} errors"
    )
    print(
        f"  accept latency      p50 {a['p50']:.1f} ms  p95 {a['p95']:.1f} ms  p99 {a['p99']:.1f} ms"
        f"  max {a['max']:.1f} ms   (goal: p95 < 20 ms)"
    )
    print(
        f"  end-to-end latency  p50 {e['p50']:.1f} ms  p95 {e['p95']:.1f} ms  p99 {e['p99']:.1f} ms"
        f"  (accepted -> committed)"
    )
    print(f"  create throughput   {create_tput:.0f}/s over {args.drain} queued jobs")
    print(f"  no-op task floor    {noop_tput:.0f}/s over {args.drain} queued tasks")
    print(f"  ratio               {figures['ratio_to_floor']:.2f}   (goal: >= 0.6)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
