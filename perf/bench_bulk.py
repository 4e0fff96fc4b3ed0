"""Bulk operations end to end: a 1000-booking batch and a 500-update batch,
accepted over HTTP and run by a real worker (items/s, beside the spec's 50/s).

    make bench-bulk
    python -m perf.bench_bulk --bookings 1000 --updates 500 --runs 3
"""

from __future__ import annotations

import statistics
import time

import requests

from perf.harness import BODY, command_line, follow_job, isolated_stack, publish

SPEC_TARGET = 50.0


def run_job(stack, path: str, body: dict, timeout: float = 600) -> tuple[float, dict]:
    """Seconds from the admin's POST to the job's finish, and the job."""
    started = time.perf_counter()
    r = requests.post(stack.base + path, json=body, headers=stack.admin, timeout=60)
    r.raise_for_status()
    job = follow_job(stack, r.headers["Location"], started + timeout, interval=0.05, timeout=10)
    if job is None:
        raise RuntimeError(f"{path} did not finish in {timeout} s")
    return time.perf_counter() - started, job


def run(bookings: int, updates: int, runs: int) -> dict:
    create_rates, update_rates = [], []
    with isolated_stack(RATE_LIMIT_ADMIN=10_000, RATE_LIMIT_BULK=10_000) as stack:
        for _ in range(runs):
            batch = {"bookings": [BODY] * bookings, "customer_id": stack.customer_id}
            seconds, job = run_job(stack, "/api/admin/bookings/bulk", batch)
            assert job["result"]["succeeded"] == bookings, job["result"]["failed"]
            create_rates.append(bookings / seconds)
            refs = [item["ref_id"] for item in job["result"]["items"]][:updates]
            items = [
                {"ref_id": ref, "newStatus": "DEPARTED", "eventData": {"location": "DEL"}}
                for ref in refs
            ]
            seconds, job = run_job(stack, "/api/admin/bookings/status/bulk", {"updates": items})
            assert job["result"]["succeeded"] == len(items), job["result"]["failed"]
            update_rates.append(len(items) / seconds)
    return {
        "bookings_per_batch": bookings,
        "updates_per_batch": updates,
        "runs": runs,
        "bulk_create_items_per_s": [round(r, 1) for r in create_rates],
        "bulk_update_items_per_s": [round(r, 1) for r in update_rates],
        "spec_target_items_per_s": SPEC_TARGET,
    }


def report(f: dict) -> str:
    lines = ["bulk operations end to end (POST -> job finished; prefork x8 worker, SecantusDB)"]
    for label, size, rates in (
        ("booking batch", f["bookings_per_batch"], f["bulk_create_items_per_s"]),
        ("update batch ", f["updates_per_batch"], f["bulk_update_items_per_s"]),
    ):
        runs = ", ".join(f"{r:.0f}" for r in rates)
        lines.append(
            f"  {size}-{label}  median {statistics.median(rates):.0f} items/s"
            f"  (runs: {runs})   spec: > {SPEC_TARGET:.0f}/s"
        )
    return "\n".join(lines)


def main() -> None:
    parser = command_line(__doc__)
    parser.add_argument("--bookings", type=int, default=1000)
    parser.add_argument("--updates", type=int, default=500)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    publish(report, run(args.bookings, args.updates, args.runs), args.json)


if __name__ == "__main__":
    main()
