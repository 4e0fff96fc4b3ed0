"""Status transitions at the spec's peak (30/s) and at 10x (300/s): accept
latency, end-to-end latency and lock acquisition, on one isolated stack.

    make bench-transitions
    python -m perf.bench_transitions --rates 30 300 --seconds 10

Each transition departs a booking that exists (set up in bulk beforehand, not
measured), so every request is valid and reaches the worker. Lock figures come
from the workers' own lock metrics (time from first try to acquisition).
"""

from __future__ import annotations

from pathlib import Path

import requests

from core.locks import LATENCIES_KEY, METRICS_KEY, lock_metrics
from perf import harness
from perf.profiling import describe, maybe_profiled


def run(rates: list[float], seconds: float, profile_dir: Path | None = None) -> list[dict]:
    """Figures per rate; with profile_dir, the highest rate's also say where its CPU
    goes (perf.profiling), over the requests and until their jobs have finished."""
    results = []
    with harness.isolated_stack() as stack:
        db, redis = stack.services.db, stack.services.redis
        ref_ids = harness.seed_bookings(db, int(sum(rates) * seconds) + 100, stack.customer_id)
        finished = harness.FinishedJobs(redis)
        warm, ref_ids = ref_ids[:100], ref_ids[100:]
        for ref_id in warm:  # warm connections and pools
            requests.post(
                f"{stack.base}/api/bookings/{ref_id}/depart",
                json=harness.TRANSITION,
                headers=stack.operator,
                timeout=10,
            )
        for rate in rates:
            batch, ref_ids = ref_ids[: int(rate * seconds)], ref_ids[int(rate * seconds) :]
            redis.delete(METRICS_KEY, LATENCIES_KEY)
            profiling = profile_dir if rate == max(rates) else None
            name = f"transitions_{rate:g}"
            with maybe_profiled(profiling, name, stack, items=len(batch)) as profile:
                load = harness.open_loop(
                    lambda s, i, batch=batch: s.post(
                        f"{stack.base}/api/bookings/{batch[i]}/depart",
                        json=harness.TRANSITION,
                        headers=stack.operator,
                        timeout=10,
                    ),
                    rate,
                    seconds,
                )
                finished.wait(load.job_ids, timeout=900)
            outcomes = harness.open_loop_figures(db, load)
            locks = lock_metrics(redis)
            results.append(
                {
                    **outcomes,
                    "lock_acquire_ms": locks["acquire_ms"],
                    "lock_average_attempts": locks["average_attempts"],
                    **({"profile": {name: profile}} if profiling else {}),
                }
            )
    return results


def report(results: list[dict]) -> str:
    lines = ["status transitions (prefork x8 worker, 2x gthread ingress, SecantusDB)"]
    for r in results:
        lock = r["lock_acquire_ms"]
        lines += [
            harness.open_loop_line(r),
            f"    accept latency      {harness.fmt(r['accept_ms'])}   (goal at 300/s: p95 < 20 ms)",
            f"    end-to-end latency  {harness.fmt(r['end_to_end_ms'])}",
            f"    lock acquisition    p50 {lock['p50']} ms  p95 {lock['p95']} ms"
            f"  max {lock['max']} ms"
            f"  ({r['lock_average_attempts']} tries each; goal p95 < 5 ms)",
        ]
    return "\n".join(lines)


def main() -> None:
    parser = harness.command_line(__doc__)
    parser.add_argument("--rates", type=float, nargs="+", default=[30.0, 300.0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument(
        "--profile", type=Path, metavar="DIR", help="profile the highest rate; py-spy's files here"
    )
    args = parser.parse_args()
    results = run(args.rates, args.seconds, profile_dir=args.profile)
    harness.publish(report, results, args.json)
    for r in results:
        if "profile" in r:
            print(describe(r["profile"]))


if __name__ == "__main__":
    main()
