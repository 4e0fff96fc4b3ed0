"""Route search over HTTP at 100,000 flights, on dates outside the warm window:
uncached latency, and cached throughput against a floor that returns the same
stored bytes from Redis (perf/floor_reads.py), on one isolated stack in one run.

    make bench-reads
    python -m perf.bench_reads --flights 100000 --routes 200 --seconds 10 --pairs 3
    python -m perf.bench_reads --flights 20000 --routes 50 --seconds 4 --pairs 2   # quick

1. import --flights flights (tools.flights.generate_schedule, seed 42, from
   --start, default today UTC) with core.flights.import_flights; the Celery
   worker is then stopped (route searches need none) so nothing else competes
   for the CPU.
2. --routes distinct random (origin, destination, date) triples
   (random.Random(7)), dates 4-10 days after the schedule's start: outside the
   warm window (today and tomorrow), and only days with flights. A schedule
   too short to reach day 4 (fewer than ~5 x 8,700 flights) falls back to its
   days after tomorrow, and says so.
3. uncached: each triple's first GET /api/routes (no key: route search is
   public; limit=100, every option a cached result keeps, so the ingress
   answers what the floor answers), one keep-alive connection, sequential:
   p50/p95/max against the goal (p95 < 50 ms). Two untimed searches on other
   routes warm the worker first. The route cache's miss counter checks that
   each was a miss (the ingress counts in its processes and adds to Redis
   every core.flushing.FLUSH_INTERVAL_S: the bench waits until every
   search it sent is counted).
4. cached: the floor (GET /floor/routes, a second gunicorn with the same
   settings) and the ingress in back-to-back pairs of rounds (floor ingress,
   ingress floor, ...), --pairs pairs of --seconds each: a closed loop of
   --connections keep-alive connections (http.client, one thread each)
   cycling over the same triples, now cached. Around each round, the user +
   system CPU seconds of that gunicorn's master and workers (psutil): CPU ms
   per request. Per app: median requests/s and each round's, CPU ms/request,
   latency p50/p95, errors, mean body size; the ratio ingress/floor of the
   median requests/s against the goal (>= 0.7). The miss counter checks that
   every ingress answer in the rounds was a hit.
"""

from __future__ import annotations

import http.client
import random
import statistics
import time
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit

from core import flushing
from core.db import ensure_indexes
from core.flights import import_flights
from perf import harness
from perf.closed_loop import (
    Call,
    Target,
    against_floor,
    closed_loop,
    floor_report_lines,
    floor_rounds,
    floor_server,
    ratio_line,
)
from tools.flights import generate_schedule
from tools.processes import stop

SEED = 42
SEARCH_SEED = 7
FIRST_DAY, LAST_DAY = 4, 10  # days after the schedule's start
WARM_WINDOW_DAYS = 2  # today and tomorrow: what beat's warm_cache keeps cached
LIMIT = 100  # core.routes.KEPT_OPTIONS: the whole stored result
GOAL_RATIO = 0.7
UNCACHED_P95_GOAL_MS = 50.0
FLOOR, INGRESS = "floor", "ingress"
FLOOR_TARGET = "perf.floor_reads:create_floor_app()"
WARM_UP_S = 1.0  # an unmeasured round per app before the first pair

Triple = tuple[str, str, date]


def query(triple: Triple, limit: int | None = None) -> str:
    origin, destination, day = triple
    params = {"origin": origin, "destination": destination, "date": day.isoformat()}
    if limit is not None:
        params["limit"] = str(limit)
    return urlencode(params)


def search_days(raw: list[dict[str, Any]], start: date, today: date) -> tuple[list[date], str]:
    """The days to search: FIRST_DAY..LAST_DAY after `start` that have flights,
    none inside the warm window; else (a short schedule) its days after it."""
    days = sorted({datetime.fromisoformat(f["departure_ts"]).astimezone(UTC).date() for f in raw})
    outside = [d for d in days if d >= today + timedelta(days=WARM_WINDOW_DAYS)]
    wanted = [
        d
        for d in outside
        if start + timedelta(days=FIRST_DAY) <= d <= start + timedelta(days=LAST_DAY)
    ]
    if wanted:
        return wanted, f"days {FIRST_DAY}-{LAST_DAY} after the schedule's start"
    if not outside:
        raise SystemExit("no scheduled day outside the warm window: more --flights or --start")
    return outside, (f"FALLBACK: the schedule ends before day {FIRST_DAY}; its days after tomorrow")


def pick_triples(raw: list[dict[str, Any]], days: list[date], n: int) -> list[Triple]:
    """`n` distinct random (origin, destination, day) triples, +2 spare for warming."""
    airports = sorted({f["origin"] for f in raw} | {f["destination"] for f in raw})
    rng = random.Random(SEARCH_SEED)
    picked: dict[Triple, None] = {}
    possible = len(airports) * (len(airports) - 1) * len(days)
    for _ in range((n + 2) * 50):  # bounded: distinct triples, never an endless draw
        if len(picked) >= min(n + 2, possible):
            break
        origin = rng.choice(airports)
        destination = rng.choice([a for a in airports if a != origin])
        picked[(origin, destination, rng.choice(days))] = None
    return list(picked)


def counted_routes(cache, lookups: int) -> tuple[int, int]:
    """route_counts once `lookups` searches in all are counted: the ingress's
    processes add theirs to Redis every FLUSH_INTERVAL_S. After a
    deadline, whatever is counted (the report then shows the shortfall)."""
    deadline = time.monotonic() + 10 * flushing.FLUSH_INTERVAL_S
    while True:
        hits, misses = harness.route_counts(cache)
        if hits + misses >= lookups or time.monotonic() > deadline:
            return hits, misses
        time.sleep(0.05)


def sent(load: dict[str, Any]) -> int:
    return len(load["latencies_ms"]) + sum(load["errors"].values())


def uncached(base: str, triples: list[Triple]) -> dict[str, Any]:
    """Each triple's first GET /api/routes, one after the other on one connection."""
    url = urlsplit(base)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
    latencies, sizes, errors = [], [], {}
    try:
        for triple in triples:
            sent = time.perf_counter()
            conn.request("GET", f"/api/routes?{query(triple, LIMIT)}")
            response = conn.getresponse()
            body = response.read()
            elapsed = harness.ms_since(sent)
            if response.status != 200:
                errors[str(response.status)] = errors.get(str(response.status), 0) + 1
                continue
            latencies.append(elapsed)
            sizes.append(len(body))
    finally:
        conn.close()
    return {"latencies_ms": latencies, "sizes": sizes, "errors": errors}


def run(
    flights: int, routes: int, seconds: float, pairs: int, connections: int, start: date
) -> dict[str, Any]:
    today = datetime.now(UTC).date()
    raw = list(generate_schedule(flights, start_date=start, seed=SEED))
    days, days_note = search_days(raw, start, today)
    picked = pick_triples(raw, days, routes)
    warmers, triples = picked[:2], picked[2:]
    with harness.isolated_stack() as stack:
        db, cache, settings = stack.services.db, stack.services.cache, stack.settings
        ensure_indexes(db)
        t = time.perf_counter()
        imported = import_flights(
            db,
            stack.services.locks,
            raw,
            chunk_size=settings.BULK_CHUNK_SIZE,
            default_capacity_kg=settings.DEFAULT_FLIGHT_CAPACITY_KG,
            total=len(raw),
        )
        import_s = time.perf_counter() - t
        stop(stack.worker)  # no task takes part in a route search
        with floor_server(settings, FLOOR_TARGET, "reads") as (floor, floor_base):
            uncached(stack.base, warmers)  # untimed: imports, pools, the server warm
            before = counted_routes(cache, len(warmers))
            cold = uncached(stack.base, triples)
            after_cold = counted_routes(cache, sum(before) + sent(cold))

            floor_paths = [f"/floor/routes?{query(tr)}" for tr in triples]
            ingress_paths = [f"/api/routes?{query(tr, LIMIT)}" for tr in triples]
            targets = {
                FLOOR: Target(floor.pid, floor_base, [Call("GET", p) for p in floor_paths]),
                INGRESS: Target(
                    stack.ingress.pid, stack.base, [Call("GET", p) for p in ingress_paths]
                ),
            }
            warm_ups = {  # warm connections, both apps' workers
                app: closed_loop(target.base, target.calls, WARM_UP_S, connections, expect=200)
                for app, target in targets.items()
            }
            before_hot = counted_routes(cache, sum(after_cold) + sent(warm_ups[INGRESS]))
            results = floor_rounds(targets, pairs, seconds, connections, 200)
            after_hot = counted_routes(
                cache, sum(before_hot) + sum(sent(r) for r in results[INGRESS])
            )
        workers = f"{settings.WEB_WORKERS} x {settings.WEB_THREADS} threads"

    compared = against_floor(results, FLOOR, INGRESS)
    hot_misses = after_hot[1] - before_hot[1]
    cold_p95 = harness.percentiles(cold["latencies_ms"])
    return {
        "flights": len(raw),
        "stored": imported["succeeded"],
        "import_s": round(import_s, 1),
        "schedule_start": start.isoformat(),
        "today": today.isoformat(),
        "days": [d.isoformat() for d in days],
        "days_note": days_note,
        "routes": len(triples),
        "servers": f"gunicorn gthread, {workers}, each",
        "uncached": {
            "latency_ms": cold_p95,
            "errors": cold["errors"],
            "misses": after_cold[1] - before[1],
            "body_bytes_mean": round(statistics.fmean(cold["sizes"])) if cold["sizes"] else None,
            "goal_p95_ms": UNCACHED_P95_GOAL_MS,
            "goal_met": cold_p95["p95"] is not None
            and cold_p95["p95"] < UNCACHED_P95_GOAL_MS
            and not cold["errors"],
        },
        "ingress_endpoint": f"GET /api/routes (no key, limit={LIMIT})",
        "floor_endpoint": "GET /floor/routes (perf/floor_reads.py)",
        "pairs": pairs,
        "seconds_per_round": seconds,
        "connections": connections,
        **compared,
        "ingress_misses_in_rounds": hot_misses,
        "goal_ratio": GOAL_RATIO,
        # Only two error-free apps, the ingress answering from the cache, compare.
        "goal_met": compared["rps_ratio"] >= GOAL_RATIO
        and compared["error_free"]
        and hot_misses == 0,
    }


def report(f: dict) -> str:
    def goal(ok: bool) -> str:
        return "met" if ok else "MISSED"

    u = f["uncached"]
    u_errors = sum(u["errors"].values())
    lines = [
        f"Route search over HTTP ({f['flights']} flights from {f['schedule_start']},"
        f" {f['stored']} stored, imported in {f['import_s']:g} s; {f['servers']})",
        f"  {f['routes']} random routes on {len(f['days'])} days"
        f" {f['days'][0]}..{f['days'][-1]} ({f['days_note']}; today {f['today']})",
        "  uncached  first GET /api/routes each, sequential, 1 connection:",
        f"          {harness.fmt(u['latency_ms'])}   errors {u_errors}"
        f"{' ' + str(u['errors']) if u_errors else ''}   route cache misses {u['misses']}"
        f"   body {u['body_bytes_mean']} B mean",
        f"          (goal p95 < {u['goal_p95_ms']:.0f} ms: {goal(u['goal_met'])})",
        f"  cached against the floor ({f['pairs']} pairs of {f['seconds_per_round']:g} s"
        f" rounds, {f['connections']} keep-alive connections, closed loop)",
    ]
    labels = {FLOOR: f["floor_endpoint"], INGRESS: f["ingress_endpoint"]}
    lines += floor_report_lines(f, labels, unit="request")
    lines += [
        f"  route cache misses during the ingress's rounds: {f['ingress_misses_in_rounds']}",
        ratio_line(f, goal(f["goal_met"])),
    ]
    return "\n".join(lines)


def main() -> None:
    parser = harness.command_line(__doc__)
    parser.add_argument("--flights", type=int, default=100_000)
    parser.add_argument("--routes", type=int, default=200, help="distinct searches")
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds per round")
    parser.add_argument("--pairs", type=int, default=3, help="back-to-back pairs of rounds")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument(
        "--start", type=date.fromisoformat, help="the schedule's first day (default today UTC)"
    )
    args = parser.parse_args()
    start = args.start or datetime.now(UTC).date()
    figures = run(args.flights, args.routes, args.seconds, args.pairs, args.connections, start)
    harness.publish(report, figures, args.json)


if __name__ == "__main__":
    main()
