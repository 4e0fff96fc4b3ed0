"""Flight capacity (issue 13): reservations per second through the real create
worker, with every booking on one hot flight and with bookings spread over
1,000 flights, and the flight lock's acquisition time in each case.

    make bench-reservations
    python -m perf.bench_reservations --bookings 2000 --flights 1000

Flights are stored with the import (core.flights.import_flights): the hot one
with exactly the capacity, in kg and in m3, its bookings need (so all of them
fit and it ends full by both measures), the spread ones with the generator's
capacities. Per case, --bookings creates that each name one flight (weights
cycling over WEIGHTS_KG, one piece each of the sizes in PIECES_CM, so every
reservation takes a weight and a volume) are accepted over
HTTP while the worker is paused, so that the client's pace is not what is
measured; the worker is resumed and timed until every job has finished (the
workers' job-finished notices). Reservations per second: the bookings that
succeeded over that time. The flight lock's p50/p95/max, tries per acquisition
and failures come from the workers' own lock metrics (core.locks.lock_metrics,
kind "flight"), reset before each case.

Goals: hot >= 0.5x spread (one flight's lock serializes its reservations; its
backoff must not leave the worker idle) and flight lock p95 < 5 ms when spread.

Correctness, after each case (the run fails loudly if it does not hold): each
flight's booked weight and booked volume are the sums of the weights and
volumes of its bookings that succeeded, with one reservation for each, and
available = capacity - booked for both.
"""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import requests

from core.db import ensure_indexes
from core.flights import import_flights, validate_flight
from core.locks import METRICS_KEY, lock_metrics
from core.measures import cubic_metres, grams, kilograms, volume_cm3
from perf.harness import FinishedJobs, command_line, isolated_stack, paused, publish
from tools.flights import generate_schedule

SEED = 42
WEIGHTS_KG = (5.0, 7.5, 10.0, 12.5, 15.0)  # whole grams, 10 kg on average
# One piece each, cycling with the weights: 0.072 m3 on average, a little
# lighter than the standard density (10 kg there is 0.06 m3).
PIECES_CM = ((40, 30, 25), (50, 40, 30), (60, 40, 25), (60, 50, 30), (80, 50, 30))
WARM_UP = 50  # bookings on a flight of their own before the cases: pools and connections
RATIO_GOAL = 0.5
LOCK_P95_GOAL_MS = 5.0
CASES = ("hot", "spread")


# -- pure helpers (tests/test_perf_reservations.py) ------------------------------------


def booking_bodies(legs: list[dict[str, str]], count: int) -> list[dict[str, Any]]:
    """`count` create bodies, booking i on legs[i % len(legs)] with weight
    WEIGHTS_KG[i % len(WEIGHTS_KG)] and one piece of PIECES_CM[i % len(PIECES_CM)];
    a leg is {"flight_id", "origin", "destination"}."""
    bodies = []
    for i in range(count):
        leg = legs[i % len(legs)]
        length, width, height = PIECES_CM[i % len(PIECES_CM)]
        bodies.append(
            {
                "origin": leg["origin"],
                "destination": leg["destination"],
                "pieces": 1,
                "weight_kg": WEIGHTS_KG[i % len(WEIGHTS_KG)],
                "dimensions": [
                    {"count": 1, "length_cm": length, "width_cm": width, "height_cm": height}
                ],
                "flight_ids": [leg["flight_id"]],
            }
        )
    return bodies


def expected_space(bodies: list[dict[str, Any]], states: list[str]) -> dict[str, dict[str, int]]:
    """Per flight named, what it must hold: grams and cm3 booked and
    reservations, those of the bookings whose job succeeded."""
    expected = {
        fid: {"booked_g": 0, "booked_cm3": 0, "reservations": 0}
        for b in bodies
        for fid in b["flight_ids"]
    }
    for body, state in zip(bodies, states, strict=True):
        if state == "succeeded":
            for fid in body["flight_ids"]:
                expected[fid]["booked_g"] += grams(body["weight_kg"])
                expected[fid]["booked_cm3"] += volume_cm3(body.get("dimensions")) or 0
                expected[fid]["reservations"] += 1
    return expected


def space_problems(expected: dict[str, dict[str, int]], stored: list[dict[str, Any]]) -> list[str]:
    """What does not add up on the stored flights (none: all is well)."""
    found = {doc["_id"]: doc for doc in stored}
    problems = [f"{fid}: not stored" for fid in expected if fid not in found]
    for fid, want in expected.items():
        doc = found.get(fid)
        if doc is None:
            continue
        booked, reserved = doc.get("booked_g"), doc.get("reservations") or {}
        if booked != want["booked_g"]:
            problems.append(
                f"{fid}: booked {kilograms(booked or 0):g} kg, its bookings weigh "
                f"{kilograms(want['booked_g']):g} kg"
            )
        if len(reserved) != want["reservations"] or sum(reserved.values()) != booked:
            problems.append(
                f"{fid}: {len(reserved)} reservations of {kilograms(sum(reserved.values())):g} kg,"
                f" {want['reservations']} bookings succeeded"
            )
        if doc.get("available_g") != doc.get("capacity_g", 0) - (booked or 0):
            problems.append(f"{fid}: available is not capacity - booked")
        problems += _volume_problems(fid, want, doc)
    return problems


def _volume_problems(fid: str, want: dict[str, int], doc: dict[str, Any]) -> list[str]:
    booked, volumes = doc.get("booked_cm3"), doc.get("volumes") or {}
    problems = []
    if booked != want["booked_cm3"]:
        problems.append(
            f"{fid}: booked {cubic_metres(booked or 0):g} m3, its bookings measure "
            f"{cubic_metres(want['booked_cm3']):g} m3"
        )
    if sum(volumes.values()) != booked:
        problems.append(f"{fid}: its reservations hold {cubic_metres(sum(volumes.values())):g} m3")
    if doc.get("available_cm3") != doc.get("capacity_cm3", 0) - (booked or 0):
        problems.append(f"{fid}: available volume is not capacity - booked")
    return problems


def ratio(hot: dict[str, Any], spread: dict[str, Any]) -> float | None:
    """Hot reservations/s over spread reservations/s."""
    rate = spread["reservations_per_s"]
    return round(hot["reservations_per_s"] / rate, 3) if rate else None


def goals_met(f: dict[str, Any]) -> dict[str, bool]:
    p95 = f["spread"]["flight_lock"]["acquire_ms"]["p95"]
    return {
        "ratio": f["ratio"] is not None and f["ratio"] >= RATIO_GOAL,
        "lock_p95": p95 is not None and p95 < LOCK_P95_GOAL_MS,
        "correct": all(f[case]["check"]["ok"] for case in CASES),
    }


# -- the run ---------------------------------------------------------------------------


def leg(item: dict[str, Any], default_capacity_kg: float) -> dict[str, str]:
    doc = validate_flight(item, default_capacity_kg)
    return {"flight_id": doc["_id"], "origin": doc["origin"], "destination": doc["destination"]}


def store_flights(stack, items: list[dict[str, Any]]) -> None:
    result = import_flights(
        stack.services.db,
        stack.services.locks,
        items,
        chunk_size=stack.settings.BULK_CHUNK_SIZE,
        default_capacity_kg=stack.settings.DEFAULT_FLIGHT_CAPACITY_KG,
        total=len(items),
    )
    if result["failed"]:
        raise RuntimeError(f"flight import refused {result['failed']}: {result['errors'][:3]}")


def post_all(stack, bodies: list[dict[str, Any]], threads: int) -> list[str]:
    """POST every body (each thread on a keep-alive session of its own); the job ids.
    Anything but a 202 makes the case meaningless: raised."""
    local = threading.local()

    def post(body: dict[str, Any]) -> str:
        local.session = getattr(local, "session", None) or requests.Session()
        r = local.session.post(
            stack.base + "/api/bookings", json=body, headers=stack.customer, timeout=30
        )
        if r.status_code != 202:
            raise RuntimeError(f"POST /api/bookings answered {r.status_code}: {r.text[:300]}")
        return r.json()["job_id"]

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(post, bodies))


def job_states(db, job_ids: list[str]) -> tuple[list[str], dict[str, int]]:
    """Each job's state, in order, and the failed ones' problem types (their last
    path segment, e.g. flight-full). One indexed find each: SecantusDB scans for
    a large $in."""
    states, failures = [], Counter()
    for job_id in job_ids:
        job = db.jobs.find_one({"_id": job_id}, {"state": 1, "error.type": 1})
        states.append(job["state"])
        if job["state"] == "failed":
            failures[((job.get("error") or {}).get("type") or "?").rsplit("/", 1)[-1]] += 1
    return states, dict(failures)


def run_case(
    stack, finished: FinishedJobs, bodies: list[dict[str, Any]], threads: int, timeout: float
) -> dict[str, Any]:
    db, redis = stack.services.db, stack.services.redis
    # Every lock figure, the totals' and each kind's (metrics:locks...): this case's alone.
    redis.delete(*redis.scan_iter(match=f"{METRICS_KEY}*", count=100), METRICS_KEY)
    with paused(stack.worker):
        job_ids = post_all(stack, bodies, threads)
    seconds = finished.wait(job_ids, timeout=timeout)
    states, failures = job_states(db, job_ids)
    succeeded = states.count("succeeded")
    expected = expected_space(bodies, states)
    stored = list(
        db.flights.find(
            {"_id": {"$in": sorted(expected)}},
            {
                "capacity_g": 1,
                "booked_g": 1,
                "available_g": 1,
                "capacity_cm3": 1,
                "booked_cm3": 1,
                "available_cm3": 1,
            },
        )
    )
    held: dict[str, dict[str, int]] = {}  # flight -> its reservations (core.reservations)
    measured: dict[str, dict[str, int]] = {}  # flight -> its reservations' volumes
    for r in db.reservations.find({"flight_id": {"$in": sorted(expected)}}):
        held.setdefault(r["flight_id"], {})[r["ref_id"]] = r["weight_g"]
        measured.setdefault(r["flight_id"], {})[r["ref_id"]] = r.get("volume_cm3", 0)
    for doc in stored:
        doc["reservations"] = held.get(doc["_id"], {})
        doc["volumes"] = measured.get(doc["_id"], {})
    problems = space_problems(expected, stored)
    return {
        "bookings": len(bodies),
        "flights": len(expected),
        "seconds": round(seconds, 2),
        "reservations_per_s": round(succeeded / seconds, 1),
        "jobs": {"succeeded": succeeded, "failed": len(states) - succeeded, "errors": failures},
        "flight_lock": lock_metrics(redis, kind="flight"),
        "booking_lock": lock_metrics(redis, kind="booking"),
        "check": {
            "ok": not problems,
            "booked_kg": kilograms(sum(doc.get("booked_g") or 0 for doc in stored)),
            "expected_kg": kilograms(sum(e["booked_g"] for e in expected.values())),
            "booked_m3": cubic_metres(sum(doc.get("booked_cm3") or 0 for doc in stored)),
            "expected_m3": cubic_metres(sum(e["booked_cm3"] for e in expected.values())),
            "problems": problems[:20],
        },
    }


def public_booked(stack, flight_id: str) -> tuple[float | None, float | None]:
    """The flight's booked_kg and booked_m3 as the API shows them (GET /api/flights/<id>)."""
    r = requests.get(f"{stack.base}/api/flights/{flight_id}", headers=stack.customer, timeout=10)
    r.raise_for_status()
    return r.json()["booked_kg"], r.json()["booked_m3"]


def run(bookings: int, flights: int, threads: int = 16, timeout: float = 300.0) -> dict[str, Any]:
    today = datetime.now(UTC).date()
    items = list(generate_schedule(flights + 2, start_date=today, seed=SEED))
    with isolated_stack() as stack:
        default_kg = stack.settings.DEFAULT_FLIGHT_CAPACITY_KG
        legs = [leg(item, default_kg) for item in items]
        warm_leg, hot_leg, spread_legs = legs[0], legs[1], legs[2:]
        cases = {
            "hot": booking_bodies([hot_leg], bookings),
            "spread": booking_bodies(spread_legs, bookings),
        }
        # Exactly the room the hot flight's bookings need: all fit, and it ends
        # full by both measures.
        hot_cm3 = sum(volume_cm3(b["dimensions"]) for b in cases["hot"])
        items[1] = {
            **items[1],
            "capacity_kg": sum(b["weight_kg"] for b in cases["hot"]),
            "capacity_m3": cubic_metres(hot_cm3),
        }
        ensure_indexes(stack.services.db)
        store_flights(stack, items)
        finished = FinishedJobs(stack.services.redis)
        warm = post_all(stack, booking_bodies([warm_leg], WARM_UP), threads)
        finished.wait(warm, timeout=timeout)

        figures: dict[str, Any] = {"worker": stack.settings.WORKER_POOL}
        figures["worker"] += f" x{stack.settings.WORKER_CONCURRENCY}"
        for name in CASES:
            figures[name] = run_case(stack, finished, cases[name], threads, timeout)
        # The hot flight as the API shows it (never read before: no cached view).
        shown = public_booked(stack, hot_leg["flight_id"])
    hot_check = figures["hot"]["check"]
    hot_check["public_booked_kg"], hot_check["public_booked_m3"] = shown
    if shown != (hot_check["expected_kg"], hot_check["expected_m3"]):
        hot_check["ok"] = False
        hot_check["problems"].append(
            f"GET /api/flights/{hot_leg['flight_id']} shows {shown[0]} kg and {shown[1]} m3"
            f" booked, its bookings weigh {hot_check['expected_kg']} kg and measure"
            f" {hot_check['expected_m3']} m3"
        )
    figures["ratio"] = ratio(figures["hot"], figures["spread"])
    figures["goals_met"] = goals_met(figures)
    return figures


# -- the report ------------------------------------------------------------------------


def _lock_line(lock: dict[str, Any]) -> str:
    ms = lock["acquire_ms"]
    return (
        f"p50 {ms['p50']} ms  p95 {ms['p95']} ms  max {ms['max']} ms"
        f"  ({lock['acquired']} acquired, {lock['failed']} failed,"
        f" {lock['average_attempts']} tries each)"
    )


def report(f: dict[str, Any]) -> str:
    met = f["goals_met"]
    lines = [f"flight capacity reservations ({f['worker']} worker, 2x gthread ingress, SecantusDB)"]
    for name in CASES:
        c = f[name]
        check = c["check"]
        lines += [
            f"  {name}: {c['bookings']} bookings on {c['flights']} flight(s), worked off in "
            f"{c['seconds']:.2f} s",
            f"    reservations/s      {c['reservations_per_s']:.0f}",
            f"    jobs                {c['jobs']['succeeded']} succeeded, {c['jobs']['failed']}"
            f" failed{' ' + str(c['jobs']['errors']) if c['jobs']['errors'] else ''}",
            f"    flight lock         {_lock_line(c['flight_lock'])}",
            f"    booked_kg check     {'ok' if check['ok'] else 'FAILED'}: "
            f"{check['booked_kg']:g} kg booked, bookings weigh {check['expected_kg']:g} kg"
            + (
                f"; the API shows {check['public_booked_kg']:g} kg"
                if check.get("public_booked_kg") is not None
                else ""
            ),
            f"    booked_m3 check     {check['booked_m3']:g} m3 booked, bookings measure"
            f" {check['expected_m3']:g} m3"
            + (
                f"; the API shows {check['public_booked_m3']:g} m3"
                if check.get("public_booked_m3") is not None
                else ""
            ),
            *(f"      {problem}" for problem in check["problems"]),
        ]
    p95 = f["spread"]["flight_lock"]["acquire_ms"]["p95"]
    ratio_text = "-" if f["ratio"] is None else f"{f['ratio']:.2f}"
    lines += [
        f"  hot / spread        {ratio_text}   (goal >= {RATIO_GOAL}: "
        f"{'met' if met['ratio'] else 'missed'})",
        f"  flight lock p95, spread  {p95} ms   (goal < {LOCK_P95_GOAL_MS:g} ms: "
        f"{'met' if met['lock_p95'] else 'missed'})",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = command_line(__doc__)
    parser.add_argument("--bookings", type=int, default=2000, help="bookings per case")
    parser.add_argument("--flights", type=int, default=1000, help="flights of the spread case")
    parser.add_argument("--threads", type=int, default=16, help="client threads posting")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per case, at most")
    args = parser.parse_args()
    figures = run(args.bookings, args.flights, args.threads, args.timeout)
    publish(report, figures, args.json)
    if not figures["goals_met"]["correct"]:
        raise SystemExit("booked check FAILED: the flights' booked space does not add up")


if __name__ == "__main__":
    main()
