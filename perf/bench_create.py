"""Booking creation: accept latency, end-to-end latency, and throughput against
the floor of a no-op Celery task, on one isolated stack in one run.

    make bench-create                  # defaults below
    python -m perf.bench_create --rate 100 --seconds 10 --drain 2000

1. accept: POST bookings open-loop at --rate for --seconds through gunicorn;
   accept latency, then end-to-end (accepted -> committed) from the job records.
2. drain: with the worker paused, queue --drain create jobs; resume it and time
   until every job has finished: the worker-bound create throughput.
3. floor: the same with --drain no-op tasks on the same broker and worker.
"""

from __future__ import annotations

import argparse
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from core import queues
from perf.harness import (
    BODY,
    FinishedJobs,
    fmt,
    isolated_stack,
    job_outcomes,
    open_loop,
    percentiles,
    write_figures,
)
from perf.profiling import describe, maybe_profiled


def queue_depth(stack, queue: str) -> int:
    with stack.celery.connection_for_write() as conn:
        name = queues.queue_name(queue, stack.settings.QUEUE_NAMESPACE)
        return conn.default_channel.queue_declare(name, passive=True).message_count


def drain_creates(stack, finished: FinishedJobs, count: int, threads: int = 32) -> float:
    os.kill(stack.worker.pid, signal.SIGSTOP)
    try:
        with ThreadPoolExecutor(threads) as pool, requests.Session() as session:
            ids = list(
                pool.map(
                    lambda _: session.post(
                        stack.base + "/api/bookings", json=BODY, headers=stack.customer, timeout=10
                    ).json()["job_id"],
                    range(count),
                )
            )
    finally:
        os.kill(stack.worker.pid, signal.SIGCONT)
    return count / finished.wait(ids, timeout=300)


def drain_noops(stack, count: int, threads: int = 16) -> float:
    """No-op tasks through the bookings queue: the same queue, bound and worker
    (prefetch included) as the creates they are the floor of."""
    os.kill(stack.worker.pid, signal.SIGSTOP)
    try:
        queue = queues.queue_name(queues.BOOKINGS, stack.settings.QUEUE_NAMESPACE)
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(lambda _: stack.celery.send_task(queues.NOOP, queue=queue), range(count)))
    finally:
        os.kill(stack.worker.pid, signal.SIGCONT)
    started = time.perf_counter()
    while queue_depth(stack, queues.BOOKINGS) > 0:
        if time.perf_counter() - started > 300:
            raise RuntimeError("no-op tasks did not drain")
        time.sleep(0.02)
    return count / (time.perf_counter() - started)


def run(
    rate: float,
    seconds: float,
    drain: int,
    pool: str,
    concurrency: int,
    profile_dir: Path | None = None,
) -> dict:
    """The figures; with profile_dir, also where the CPU of each drain goes (perf.profiling)."""
    with isolated_stack(pool=pool, concurrency=concurrency) as stack:
        for _ in range(50):  # warm connections and pools
            requests.post(
                stack.base + "/api/bookings", json=BODY, headers=stack.customer, timeout=10
            )
        finished = FinishedJobs(stack.services.redis)
        load = open_loop(
            lambda s, _: s.post(
                stack.base + "/api/bookings", json=BODY, headers=stack.customer, timeout=10
            ),
            rate,
            seconds,
        )
        finished.wait(load.job_ids, timeout=600)
        e2e, states = job_outcomes(stack.services.db, load.job_ids)
        create_tput = drain_creates(stack, finished, drain)
        noop_tput = drain_noops(stack, drain)
        # The profile is taken on a second pass of each drain, so that the
        # profiler's own cost (~10 % of the CPU) stays out of the figures.
        with maybe_profiled(profile_dir, "create_drain", stack, items=drain) as create_profile:
            if profile_dir:
                drain_creates(stack, finished, drain)
        with maybe_profiled(profile_dir, "noop_drain", stack, items=drain) as noop_profile:
            if profile_dir:
                drain_noops(stack, drain)
    profile = {"create_drain": create_profile, "noop_drain": noop_profile}
    return {
        "worker": f"{pool} x{concurrency}",
        "offered_rate": rate,
        "achieved_rate": round(load.achieved_rate, 1),
        "accepted": len(load.latencies_ms),
        "errors": load.errors,
        "job_states": states,
        "accept_ms": percentiles(load.latencies_ms),
        "end_to_end_ms": percentiles(e2e),
        "create_throughput_per_s": round(create_tput, 1),
        "noop_throughput_per_s": round(noop_tput, 1),
        "ratio_to_floor": round(create_tput / noop_tput, 3),
        "drain": drain,
        **({"profile": profile} if profile_dir else {}),
    }


def report(f: dict) -> str:
    return "\n".join(
        [
            f"booking creation ({f['worker']} worker, 2x gthread ingress, SecantusDB)",
            f"  offered {f['offered_rate']:.0f}/s, achieved {f['achieved_rate']:.1f}/s, "
            f"{f['accepted']} accepted, errors {f['errors'] or 0}, jobs {f['job_states']}",
            f"  accept latency      {fmt(f['accept_ms'])}   (goal: p95 < 20 ms)",
            f"  end-to-end latency  {fmt(f['end_to_end_ms'])}   (accepted -> committed)",
            f"  create throughput   {f['create_throughput_per_s']:.0f}/s"
            f" over {f['drain']} queued jobs",
            f"  no-op task floor    {f['noop_throughput_per_s']:.0f}/s"
            f" over {f['drain']} queued tasks",
            f"  ratio               {f['ratio_to_floor']:.2f}   (goal: >= 0.6)",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=100.0, help="offered creates/s")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--drain", type=int, default=2000, help="jobs per drain phase")
    parser.add_argument("--pool", default="prefork", choices=["threads", "prefork"])
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument(
        "--profile", type=Path, metavar="DIR", help="profile the drains; py-spy's files here"
    )
    args = parser.parse_args()
    figures = run(
        args.rate, args.seconds, args.drain, args.pool, args.concurrency, profile_dir=args.profile
    )
    print(report(figures))
    if args.profile:
        print(describe(figures["profile"]))
    write_figures(args.json, figures)


if __name__ == "__main__":
    main()
