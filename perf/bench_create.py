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

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from core import queues
from perf import harness
from perf.profiling import describe, maybe_profiled


def queue_depth(stack, queue: str) -> int:
    with stack.celery.connection_for_write() as conn:
        name = queues.queue_name(queue, stack.settings.QUEUE_NAMESPACE)
        return conn.default_channel.queue_declare(name, passive=True).message_count


def drain_creates(stack, finished: harness.FinishedJobs, count: int, threads: int = 32) -> float:
    with (
        harness.paused(stack.worker),
        ThreadPoolExecutor(threads) as pool,
        requests.Session() as session,
    ):
        ids = list(
            pool.map(
                lambda _: session.post(
                    stack.base + "/api/bookings",
                    json=harness.BODY,
                    headers=stack.customer,
                    timeout=10,
                ).json()["job_id"],
                range(count),
            )
        )
    return count / finished.wait(ids, timeout=300)


def drain_noops(stack, count: int, threads: int = 16) -> float:
    """No-op tasks through the bookings queue: the same queue, bound and worker
    (prefetch included) as the creates they are the floor of."""
    queue = queues.queue_name(queues.BOOKINGS, stack.settings.QUEUE_NAMESPACE)
    with harness.paused(stack.worker), ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda _: stack.celery.send_task(queues.NOOP, queue=queue), range(count)))
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
    with harness.isolated_stack(pool=pool, concurrency=concurrency) as stack:
        for _ in range(50):  # warm connections and pools
            requests.post(
                stack.base + "/api/bookings", json=harness.BODY, headers=stack.customer, timeout=10
            )
        finished = harness.FinishedJobs(stack.services.redis)
        load = harness.open_loop(
            lambda s, _: s.post(
                stack.base + "/api/bookings", json=harness.BODY, headers=stack.customer, timeout=10
            ),
            rate,
            seconds,
        )
        finished.wait(load.job_ids, timeout=600)
        outcomes = harness.open_loop_figures(stack.services.db, load)
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
        **outcomes,
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
            harness.open_loop_line(f),
            f"  accept latency      {harness.fmt(f['accept_ms'])}   (goal: p95 < 20 ms)",
            f"  end-to-end latency  {harness.fmt(f['end_to_end_ms'])}   (accepted -> committed)",
            f"  create throughput   {f['create_throughput_per_s']:.0f}/s"
            f" over {f['drain']} queued jobs",
            f"  no-op task floor    {f['noop_throughput_per_s']:.0f}/s"
            f" over {f['drain']} queued tasks",
            f"  ratio               {f['ratio_to_floor']:.2f}   (goal: >= 0.6)",
        ]
    )


def main() -> None:
    parser = harness.command_line(__doc__)
    parser.add_argument("--rate", type=float, default=100.0, help="offered creates/s")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--drain", type=int, default=2000, help="jobs per drain phase")
    parser.add_argument("--pool", default="prefork", choices=["threads", "prefork"])
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument(
        "--profile", type=Path, metavar="DIR", help="profile the drains; py-spy's files here"
    )
    args = parser.parse_args()
    figures = run(
        args.rate, args.seconds, args.drain, args.pool, args.concurrency, profile_dir=args.profile
    )
    harness.publish(report, figures, args.json)
    if args.profile:
        print(describe(figures["profile"]))


if __name__ == "__main__":
    main()
