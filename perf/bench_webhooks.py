"""Webhooks: from a transition's commit to its delivery, deliveries per
second at saturation, and bookings beside a receiver that hangs.

    make bench-webhooks
    python -m perf.bench_webhooks --quick

On one isolated stack laid out as `make run` lays it out: a worker on the
foreground queues, the webhooks worker (WEBHOOK_PROCESSES processes, each
WEBHOOK_CONCURRENCY senders, at the background group's priority) and beat.
Receivers: perf.receiver, a process of its own on 127.0.0.1, every endpoint a
path of it (WEBHOOK_ALLOW_PRIVATE=true).

(a) lag: ENDPOINTS customers, each with an endpoint subscribed to every
    event of its bookings, the bookings spread over them; departures at
    RATE/s, each delivered to its owner's endpoint. Lag: the receiver's
    receipt time minus the payload's created_at (the booking event's commit).
(b) saturation: ENDPOINTS endpoints of an operator, each subscribed to every
    booking's events, and a burst of departures all at once (BURST x
    ENDPOINTS deliveries); deliveries/s from the first receipt to the last,
    CPU per delivery of the webhooks worker's processes and of the database.
(c) a receiver that hangs HANG_S on every call: an operator's endpoint on it
    (every booking's events), enabled in every other round; departures at
    RATE/s, their accept and end-to-end p95 with and without it, and the lag
    of the customers' endpoints beside it.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import requests

from core import queues
from core.access import CUSTOMER
from core.clock import utcnow
from core.customers import create_customer
from core.webhook_endpoints import endpoint_document
from perf import harness
from perf.closed_loop import pair_orders
from perf.profiling import tree_cpu_s
from perf.receiver import HANG_S
from tools.processes import free_port, start_beat, start_worker, stop, wait_for_port

FOREGROUND = tuple(q for q in queues.ALL_QUEUES if q not in queues.OUTGOING)
DRAIN_TIMEOUT_S = 300.0  # every wait for deliveries ends by then
FIGURES = {
    "full": {"endpoints": 100, "rate": 30.0, "seconds": 10.0, "burst": 50, "rounds": 4},
    "quick": {"endpoints": 100, "rate": 30.0, "seconds": 3.0, "burst": 20, "rounds": 2},
}


@contextlib.contextmanager
def receiver() -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "perf.receiver", str(port)])
    try:
        if not wait_for_port("127.0.0.1", port, 10):
            raise RuntimeError("the receiver did not start")
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(proc)


def received(base: str, *, reset: bool = False) -> dict[str, Any]:
    return requests.get(f"{base}/stats{'?reset=1' if reset else ''}", timeout=30).json()


def endpoint(db, owner: str, url: str, *, enabled: bool = True, everyones: bool = True) -> str:
    """An endpoint as the API stores it: every event of its owner's bookings,
    or of every booking (`everyones`)."""
    doc = endpoint_document(
        owner,
        url,
        ["*"],
        now=utcnow(),
        description="bench",
        all_bookings=everyones,
        enabled=enabled,
    )
    db.webhook_endpoints.insert_one(doc)
    return doc["_id"]


def customer(db, n: int) -> str:
    """A customer of the bench's, made as the admin makes one; its id."""
    return create_customer(
        db, name=f"Bench customer {n}", email=f"bench{n}@example.com", role=CUSTOMER, now=utcnow()
    )["customer_id"]


def spread(db, count: int, customers: list[str]) -> list[str]:
    """`count` BOOKED bookings, owned by each of `customers` in turn; their ref_ids."""
    per = -(-count // len(customers))
    owned = [harness.seed_bookings(db, per, c) for c in customers]
    return [ref_id for row in zip(*owned, strict=True) for ref_id in row][:count]


def switch(db, ids: list[str], enabled: bool) -> None:
    db.webhook_endpoints.update_many({"_id": {"$in": ids}}, {"$set": {"enabled": enabled}})


def wait_received(base: str, count: int, timeout: float = DRAIN_TIMEOUT_S) -> dict[str, Any]:
    """The receiver's figures once `count` deliveries arrived, or at the timeout."""
    deadline = time.monotonic() + timeout
    while True:
        got = received(base)
        if got["received"] >= count or time.monotonic() > deadline:
            return got
        time.sleep(0.25)


def departures(stack, ref_ids: list[str], rate: float, seconds: float) -> harness.LoadResult:
    return harness.open_loop(
        lambda s, i: s.post(
            f"{stack.base}/api/bookings/{ref_ids[i]}/depart",
            json=harness.TRANSITION,
            headers=stack.operator,
            timeout=10,
        ),
        rate,
        seconds,
    )


def operator_id(stack) -> str:
    return stack.services.db.customers.find_one({"role": "operator"})["_id"]


def lag(stack, base: str, ref_ids: list[str], rate: float, seconds: float, n: int) -> dict:
    """(a): departures at `rate` for `seconds`, each delivered to `n` endpoints."""
    received(base, reset=True)
    load = departures(stack, ref_ids, rate, seconds)
    got = wait_received(base, len(load.job_ids) * n)
    return {
        "endpoints": n,
        "offered_rate": rate,
        "transitions": len(load.job_ids),
        "expected": len(load.job_ids) * n,
        "delivered": got["received"],
        "lag_ms": harness.percentiles(got["lags_ms"]),
    }


def saturation(stack, base: str, ref_ids: list[str], n: int, pids: dict[str, int]) -> dict:
    """(b): every departure at once; deliveries/s and CPU ms per delivery."""
    received(base, reset=True)
    cpu = {name: tree_cpu_s(pid) for name, pid in pids.items()}
    load = departures(stack, ref_ids, rate=len(ref_ids) * 10, seconds=0.1)
    got = wait_received(base, len(load.job_ids) * n)
    cpu = {name: tree_cpu_s(pid) - cpu[name] for name, pid in pids.items()}
    seconds = (got["last"] or 0) - (got["first"] or 0)
    count = got["received"]
    return {
        "deliveries": count,
        "transitions": len(load.job_ids),
        "expected": len(load.job_ids) * n,
        "seconds": round(seconds, 2),
        "per_s": round(count / seconds, 1) if seconds > 0 else None,
        "cpu_ms_per_delivery": {
            name: round(1000 * s / count, 3) if count else None for name, s in cpu.items()
        },
        "lag_ms": harness.percentiles(got["lags_ms"]),
    }


def beside_a_hang(stack, base: str, ref_ids: list[str], rate, seconds, rounds, hang_id) -> dict:
    """(c): rounds with the hanging endpoint on and off, alternately."""
    finished = harness.FinishedJobs(stack.services.redis)
    per = int(rate * seconds)
    results: dict[str, list[dict]] = {"without": [], "with": []}
    for i, order in enumerate(pair_orders(rounds, "without", "with")):
        for mode in order:
            switch(stack.services.db, [hang_id], mode == "with")
            time.sleep(6)  # the workers' view of the endpoints is ENDPOINTS_LOOKED_AT_S old
            batch = ref_ids[(2 * i + order.index(mode)) * per :][:per]
            received(base, reset=True)
            load = departures(stack, batch, rate, seconds)
            finished.wait(load.job_ids, timeout=DRAIN_TIMEOUT_S)
            got = wait_received(base, len(load.job_ids), timeout=60)
            e2e, _ = harness.job_outcomes(stack.services.db, load.job_ids)
            results[mode].append(
                {"accept": load.latencies_ms, "e2e": e2e, "lags": got["lags_ms"], **load.errors}
            )
    switch(stack.services.db, [hang_id], False)
    summary = {}
    for mode, runs in results.items():
        summary[mode] = {
            "accept_ms": harness.percentiles([ms for r in runs for ms in r.pop("accept")]),
            "end_to_end_ms": harness.percentiles([ms for r in runs for ms in r.pop("e2e")]),
            "fast_endpoints_lag_ms": harness.percentiles(
                [ms for r in runs for ms in r.pop("lags")]
            ),
            "errors": sum(sum(r.values()) for r in runs),
        }
    ratio = {
        name: _ratio(summary["with"][name]["p95"], summary["without"][name]["p95"])
        for name in ("accept_ms", "end_to_end_ms")
    }
    return {**summary, "p95_ratio_with_to_without": ratio, "rounds": rounds}


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a is not None and b else None


def run(endpoints: int, rate: float, seconds: float, burst: int, rounds: int) -> dict[str, Any]:
    logs = Path(tempfile.mkdtemp(prefix="radiantgo-bench-webhooks-"))
    overrides = {"WEBHOOK_ALLOW_PRIVATE": True, "WEBHOOK_TIMEOUT_S": HANG_S}
    with receiver() as base, harness.isolated_stack(queue_list=FOREGROUND, **overrides) as stack:
        settings, db = stack.settings, stack.services.db
        hooks = start_worker(
            settings,
            logs / "webhooks.log",
            name="webhooks",
            queue_list=queues.OUTGOING,
            concurrency=settings.WEBHOOK_PROCESSES,
            nice=settings.BACKGROUND_NICE,
        )
        beat = start_beat(settings, logs / "beat.log")
        try:
            per_hang_round = int(rate * seconds)
            needed = int(rate * seconds) + burst + 2 * rounds * per_hang_round + 50
            customers = [customer(db, i) for i in range(endpoints)]
            ref_ids = spread(db, needed, customers)
            # What seeding wrote is history, not news: nobody is sent it.
            db.booking_events.update_many({}, {"$set": {"dispatched": True}})
            owner = operator_id(stack)
            mine = [
                endpoint(db, c, f"{base}/ep/{i}", everyones=False) for i, c in enumerate(customers)
            ]
            fanout = [
                endpoint(db, owner, f"{base}/ep/{i}", enabled=False) for i in range(endpoints)
            ]
            hang = endpoint(db, owner, f"{base}/hang/0", enabled=False)
            time.sleep(6)  # the foreground worker sees that endpoints exist
            warm, ref_ids = ref_ids[:50], ref_ids[50:]
            lag(stack, base, warm, 10.0, 1.0, 1)  # warm pools and connections
            figures: dict[str, Any] = {}
            batch, ref_ids = ref_ids[: int(rate * seconds)], ref_ids[int(rate * seconds) :]
            figures["lag"] = lag(stack, base, batch, rate, seconds, 1)
            figures["lag"]["endpoints"] = endpoints
            switch(db, mine, False)
            switch(db, fanout, True)
            batch, ref_ids = ref_ids[:burst], ref_ids[burst:]
            pids = {"webhooks worker": hooks.pid, "database": stack.mongo.pid}
            figures["saturation"] = saturation(stack, base, batch, endpoints, pids)
            switch(db, fanout, False)
            switch(db, mine, True)
            figures["hang"] = beside_a_hang(stack, base, ref_ids, rate, seconds, rounds, hang)
            figures["settings"] = {
                name: getattr(settings, name)
                for name in ("WEBHOOK_PROCESSES", "WEBHOOK_CONCURRENCY", "WEBHOOK_MAX_IN_FLIGHT")
            }
            return figures
        finally:
            stop(beat)
            stop(hooks)


def report(f: dict[str, Any]) -> str:
    s, lag_, hang = f["settings"], f["lag"], f["hang"]
    sat = f["saturation"]
    cpu = "  ".join(f"{k} {v} ms" for k, v in sat["cpu_ms_per_delivery"].items())
    lines = [
        f"webhooks (webhooks worker: {s['WEBHOOK_PROCESSES']} processes x"
        f" {s['WEBHOOK_CONCURRENCY']} senders, {s['WEBHOOK_MAX_IN_FLIGHT']} per endpoint;"
        " SecantusDB)",
        f"(a) commit -> receipt, {lag_['offered_rate']:g} transitions/s, {lag_['endpoints']}"
        f" customers' endpoints: {lag_['delivered']}/{lag_['expected']} delivered",
        f"    lag  {harness.fmt(lag_['lag_ms'])}   (goal p95 < 1000 ms)",
        f"(b) saturation, {sat['expected'] // max(1, sat['transitions'])} endpoints of every"
        f" booking: {sat['deliveries']}/{sat['expected']} deliveries in {sat['seconds']} s:"
        f" {sat['per_s']}/s",
        f"    CPU per delivery  {cpu}",
        f"    lag  {harness.fmt(sat['lag_ms'])}",
        f"(c) a receiver hanging {HANG_S:g} s, {hang['rounds']} rounds each way, alternating:",
    ]
    for mode in ("without", "with"):
        m = hang[mode]
        lines += [
            f"    {mode:7} accept  {harness.fmt(m['accept_ms'])}",
            f"    {'':7} e2e     {harness.fmt(m['end_to_end_ms'])}",
            f"    {'':7} lag of the customers' endpoints"
            f"  {harness.fmt(m['fast_endpoints_lag_ms'])}  (errors {m['errors']})",
        ]
    ratio = hang["p95_ratio_with_to_without"]
    lines.append(
        f"    p95 with / without: accept {ratio['accept_ms']}, end to end {ratio['end_to_end_ms']}"
    )
    return "\n".join(lines)


def main() -> None:
    parser = harness.command_line(__doc__)
    parser.add_argument("--quick", action="store_true", help="a smoke run: shorter, smaller")
    parser.add_argument("--endpoints", type=int)
    parser.add_argument("--rate", type=float)
    parser.add_argument("--seconds", type=float)
    parser.add_argument("--burst", type=int, help="departures sent at once in (b)")
    parser.add_argument("--rounds", type=int, help="pairs of rounds in (c)")
    args = parser.parse_args()
    chosen = dict(FIGURES["quick" if args.quick else "full"])
    chosen.update({k: v for k in chosen if (v := getattr(args, k)) is not None})
    harness.publish(report, run(**chosen), args.json)


if __name__ == "__main__":
    main()
