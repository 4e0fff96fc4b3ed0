"""`make perf`: every load scenario and every benchmark in one run, one report.

    make perf                       # the full run (~21 min on 2 cores)
    make perf PERF_ARGS=--quick     # a smoke run (10 s scenarios, small benchmarks)
    python -m perf.run_perf --scenarios mixed --scales 1 --skip-benchmarks
    python -m perf.report perf/results/<timestamp> # rebuild report.md and the plots

1. Load (Locust, perf/locustfile.py): an isolated stack started as `make run`
   starts it (SecantusDB, gunicorn gthread ingress, a prefork Celery worker; no
   beat, no Flower), with every RATE_LIMIT_* raised to 1,000,000, and its own
   customer, operator and admin token (perf.harness): the Locust users create
   and search with the customer's key and depart with the operator's, each
   polling its jobs with its own key (passed in Locust's environment, never
   on its command line); --flights flights from today UTC stored with
   import_flights, BOOKED bookings of the customer inserted for the `updates`
   and `mixed` scenarios (each scenario departs its own), then each scenario
   at scale 1 and 10, headless, for --run-time seconds each. Before a scenario
   that searches routes the route cache is warmed through POST
   /api/admin/cache/warm, as beat does every CACHE_WARM_INTERVAL; the route
   cache's hit and miss counters (those of /api/admin/cache/stats) are read
   around it, and the workers' lock metrics are reset before it and read after.
   After each scenario the worker works off what is queued for up to
   --drain-wait seconds, and the rest is purged.
2. Benchmarks, each on a stack of its own: perf.bench_create, bench_transitions,
   bench_flights, bench_bulk, bench_auth, bench_accept, bench_reads,
   bench_reservations, bench_burst (their run() functions,
   sized by the mode; --benchmarks to run some), with the RATE_LIMIT_* raised
   by perf.harness. The burst (issue 12) offers 10x the spec's peak for 60 s
   open loop (quick: 20 + 60/s for 10 s) and measures on until the backlog has
   drained; its plot is the report's raw/burst.png.
   The create and no-op drains, the transitions at the highest rate and the
   uncached route searches are profiled (perf.profiling: CPU per process group,
   py-spy's stacks; --no-profile to leave it out): the report's "Where the
   time goes".
3. perf/results/<UTC timestamp>/: summary.json and report.md (perf/report.py),
   the two files a run commits; everything generated under raw/ (git-ignored):
   Locust's CSV, HTML and logs per scenario, the PNG plots, the ref_id files
   and the profiles' py-spy files.

Everything is on 127.0.0.1, every wait is bounded; a failing benchmark is
recorded in summary.json and the report, and the run goes on.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
import traceback
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import requests

from core import flushing, queues
from core.db import ensure_indexes
from core.flights import import_flights
from core.locks import LATENCIES_KEY, METRICS_KEY, lock_metrics
from perf import (
    bench_accept,
    bench_auth,
    bench_bulk,
    bench_burst,
    bench_create,
    bench_flights,
    bench_reads,
    bench_reservations,
    bench_transitions,
    burst_report,
    report,
)
from perf.harness import (
    BODY,
    TRANSITION,
    command_line,
    follow_job,
    isolated_stack,
    seed_bookings,
)
from perf.harness import RATE_LIMITS as LIMIT_SETTINGS
from perf.locust_stats import read_stats
from perf.scenarios import (
    DEFAULT_POPULAR,
    SCENARIO_ORDER,
    SCENARIOS,
    ZIPF_EXPONENT,
    ZipfRoutes,
    offered_rates,
    scenario_users,
)
from tools.flights import generate_schedule

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "perf" / "results"
LOCUSTFILE = ROOT / "perf" / "locustfile.py"
LOCUST = Path(sys.executable).parent / "locust"
RAISED = 1_000_000
RATE_LIMITS = dict.fromkeys(LIMIT_SETTINGS, RAISED)
WARM_TIMEOUT_S = 180
IN_FLIGHT_S = 2.0
WARM_UP = 20  # requests of each kind before the first scenario

# What each mode runs. The full run is sized to finish in about 21 minutes on
# the 2-core development machine (the burst about 6 of them, most of it its
# drain); the quick one in about 6.
FULL: dict[str, Any] = {
    "run_time": 25,
    "stop_timeout": 5,
    "drain_wait": 15,
    "flights": 30_000,
    "bench_create": {"rate": 100.0, "seconds": 10.0, "drain": 1000},
    "bench_transitions": {"rates": [30.0, 300.0], "seconds": 6.0},
    "bench_flights": {"count": 100_000, "searches": 100},
    "bench_bulk": {"bookings": 1000, "updates": 500, "runs": 1},
    "bench_auth": {"rounds": 12, "requests_per_round": 1000, "connections": 8},
    "bench_accept": {"pairs": 3, "seconds": 10.0, "connections": 16},
    "bench_reads": {
        "flights": 100_000,
        "routes": 200,
        "seconds": 10.0,
        "pairs": 3,
        "connections": 8,
    },
    # issue 12's burst: 60 s at 10x the spec's peak, then until drained
    "bench_burst": {
        "seconds": 60.0,
        "creates": 100.0,
        "updates": 300.0,
        "drain_timeout": 600.0,
    },
    "bench_reservations": {"bookings": 2000, "flights": 1000},
}


def _shorter(**changes: dict[str, Any] | int) -> dict[str, Any]:
    """FULL with `changes`: a benchmark's dict of them updates FULL's for it."""
    mode = dict(FULL)
    for key, change in changes.items():
        mode[key] = {**FULL[key], **change} if isinstance(change, dict) else change
    return mode


MODES: dict[str, dict[str, Any]] = {
    "full": FULL,
    "quick": _shorter(
        run_time=10,
        stop_timeout=3,
        drain_wait=10,
        bench_create={"seconds": 3.0, "drain": 300},
        bench_transitions={"seconds": 3.0},
        bench_flights={"count": 20_000, "searches": 30},
        bench_bulk={"bookings": 200, "updates": 100},
        bench_auth={"rounds": 2, "requests_per_round": 300},
        bench_accept={"pairs": 1, "seconds": 4.0},
        bench_reads={"flights": 20_000, "routes": 50, "seconds": 4.0, "pairs": 1},
        bench_burst={"seconds": 10.0, "creates": 20.0, "updates": 60.0, "drain_timeout": 120.0},
        bench_reservations={"bookings": 300},
    ),
}


def log(message: str) -> None:
    print(f"[perf {datetime.now(UTC):%H:%M:%S}] {message}", flush=True)


def write_json(path: Path, data: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    tmp.replace(path)


# -- the Locust phase ----------------------------------------------------------------


def label(scenario: str, scale: float) -> str:
    return f"{scenario}_x{scale:g}"


def route_cache_counts(stack) -> dict[str, int]:
    """The route cache's hit and miss counters: what /api/admin/cache/stats reports
    under kinds.routes, read without that endpoint's SCAN of every cache key.
    Each ingress process flushes its counts every FLUSH_INTERVAL_S: read
    after that long, they hold every search answered before the call."""
    time.sleep(flushing.FLUSH_INTERVAL_S * 1.5)
    routes = stack.services.cache.hit_stats()["routes"]
    return {"hits": int(routes["hits"]), "misses": int(routes["misses"])}


def warm_route_cache(stack) -> dict[str, Any]:
    """POST /api/admin/cache/warm and wait for the job (what beat does periodically)."""
    started = time.perf_counter()
    r = requests.post(stack.base + "/api/admin/cache/warm", headers=stack.admin, timeout=30)
    r.raise_for_status()
    deadline = started + WARM_TIMEOUT_S
    job = follow_job(stack, r.headers["Location"], deadline, interval=0.2, timeout=30)
    if job is None:
        return {"state": "unfinished", "seconds": WARM_TIMEOUT_S}
    result = job.get("result") or {}
    return {
        "state": job["state"],
        "routes": result.get("routes"),
        "keys": result.get("keys"),
        "legs_read": result.get("legs_read"),
        "seconds": round(time.perf_counter() - started, 2),
    }


def queue_depths(stack) -> dict[str, int]:
    depths = {}
    with stack.celery.connection_for_write() as conn:
        channel = conn.default_channel
        for q in queues.ALL_QUEUES:
            name = queues.queue_name(q, stack.settings.QUEUE_NAMESPACE)
            depths[q] = channel.queue_declare(name, passive=True).message_count
    return depths


def drain(stack, wait: float) -> dict[str, Any]:
    """Let the worker work off what a scenario left queued for up to `wait` seconds,
    then purge the rest, so that the next scenario starts on empty queues.

    (Queue depths, not a query on job states: the embedded server scans for a
    filter outside an index.) IN_FLIGHT_S covers the tasks the worker holds.
    """
    started = time.perf_counter()
    left = queue_depths(stack)
    while any(left.values()) and time.perf_counter() - started < wait:
        time.sleep(0.5)
        left = queue_depths(stack)
    purged = 0
    if any(left.values()):
        with stack.celery.connection_for_write() as conn:
            for q in queues.ALL_QUEUES:
                name = queues.queue_name(q, stack.settings.QUEUE_NAMESPACE)
                purged += conn.default_channel.queue_purge(name) or 0
        log(f"queues not drained after {wait:.0f} s: purged {purged} tasks")
    time.sleep(IN_FLIGHT_S)
    return {"seconds": round(time.perf_counter() - started, 1), "purged": purged}


def warm_up(stack, refs: list[str], today: date) -> dict[str, Any]:
    """Unmeasured requests of every kind, one at a time, so that the first scenario
    does not pay for cold connection pools (as the benchmarks warm theirs)."""
    started = time.perf_counter()
    statuses: dict[str, int] = {}
    with requests.Session() as session:
        for i, ref_id in enumerate(refs):
            origin, destination = DEFAULT_POPULAR.split(",")[i % 6].split("-")
            for r in (
                session.post(
                    stack.base + "/api/bookings", json=BODY, headers=stack.customer, timeout=30
                ),
                session.post(
                    f"{stack.base}/api/bookings/{ref_id}/depart",
                    json=TRANSITION,
                    headers=stack.operator,
                    timeout=30,
                ),
                session.get(
                    f"{stack.base}/api/routes",
                    params={"origin": origin, "destination": destination, "date": str(today)},
                    headers=stack.customer,
                    timeout=30,
                ),
            ):
                statuses[str(r.status_code)] = statuses.get(str(r.status_code), 0) + 1
    return {"requests": statuses, "seconds": round(time.perf_counter() - started, 1)}


def bookings_needed(scenario: str, scale: float, period: float, run_time: float) -> int:
    """Enough BOOKED bookings that the depart users can never run out."""
    users = scenario_users(scenario, scale, period).get("DepartBooking", 0)
    if not users:
        return 0
    rate = offered_rates(scenario, scale, period)["DepartBooking"]
    return math.ceil(rate * (run_time + period)) + users + 10


def run_locust(
    stack,
    raw: Path,
    args: argparse.Namespace,
    scenario: str,
    scale: float,
    refs: Path | None,
) -> dict[str, Any]:
    """One scenario at one scale, timed and polling as the run's arguments say."""
    name = label(scenario, scale)
    run_time, stop_timeout = args.run_time, args.stop_timeout
    command = [
        str(LOCUST),
        "-f",
        str(LOCUSTFILE),
        "--headless",
        "--host",
        stack.base,
        "--scenario",
        scenario,
        "--scale",
        f"{scale:g}",
        "--period",
        f"{args.period:g}",
        "--poll-timeout",
        f"{args.poll_timeout:g}",
        "--poll-interval",
        f"{args.poll_interval:g}",
        "--popular-routes",
        stack.settings.POPULAR_ROUTES,
        "--run-time",
        f"{run_time}s",
        "--stop-timeout",
        str(stop_timeout),
        "--csv",
        str(raw / name),
        "--csv-full-history",
        "--html",
        str(raw / f"{name}.html"),
        "--only-summary",
        "--loglevel",
        "INFO",
    ]
    if refs is not None:
        command += ["--ref-ids", str(refs)]
    # The keys go in the environment: a command line is visible to every local user.
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "PERF_CUSTOMER_KEY": stack.customer_key,
        "PERF_OPERATOR_KEY": stack.operator_key,
    }
    started = time.perf_counter()
    with open(raw / f"{name}.log", "w") as logfile:
        proc = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdout=logfile,
            stderr=subprocess.STDOUT,
        )
        try:
            rc = proc.wait(timeout=run_time + stop_timeout + 90)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
            rc = "killed (over its time bound)"
    return {"locust_exit": rc, "wall_s": round(time.perf_counter() - started, 1)}


def locust_phase(raw: Path, args: argparse.Namespace, phase: dict[str, Any]) -> None:
    """Fills `phase` (summary["locust"]) as it goes, so a checkpoint keeps what ran."""
    plan = [(s, k) for k in args.scales for s in SCENARIO_ORDER if s in args.scenarios]
    phase |= {
        "period_s": args.period,
        "run_time_s": args.run_time,
        "stop_timeout_s": args.stop_timeout,
        "drain_wait_s": args.drain_wait,
        "poll_timeout_s": args.poll_timeout,
        "poll_interval_s": args.poll_interval or "Retry-After",
        "settings": {**dict.fromkeys(RATE_LIMITS, RAISED), "ADMIN_TOKEN": "(generated)"},
        "scenarios": {},
    }
    with isolated_stack(**RATE_LIMITS) as stack:
        db = stack.services.db
        cfg = stack.settings
        phase["stack"] = {
            "ingress": f"gunicorn gthread, {cfg.WEB_WORKERS} workers x {cfg.WEB_THREADS} threads",
            "worker": f"celery {cfg.WORKER_POOL} x{cfg.WORKER_CONCURRENCY}",
            "database": "SecantusDB (embedded MongoDB wire server)",
            "popular_routes": stack.settings.POPULAR_ROUTES,
            "warm_top_routes": stack.settings.WARM_TOP_ROUTES,
        }
        ensure_indexes(db)
        t = time.perf_counter()
        today = datetime.now(UTC).date()
        result = import_flights(
            db,
            stack.services.locks,
            generate_schedule(args.flights, start_date=today, seed=42),
            chunk_size=stack.settings.BULK_CHUNK_SIZE,
            default_capacity_kg=stack.settings.DEFAULT_FLIGHT_CAPACITY_KG,
            total=args.flights,
        )
        phase["flights"] = {
            "count": result["succeeded"],
            "start_date": today.isoformat(),
            "seconds": round(time.perf_counter() - t, 1),
        }
        log(f"stored {result['succeeded']} flights in {phase['flights']['seconds']} s")

        t = time.perf_counter()
        ref_files: dict[str, Path] = {}
        seeded = 0
        for scenario, scale in plan:
            need = bookings_needed(scenario, scale, args.period, args.run_time)
            if need:
                path = raw / f"refs_{label(scenario, scale)}.txt"
                refs = seed_bookings(db, need, stack.customer_id)
                path.write_text("\n".join(refs) + "\n")
                ref_files[label(scenario, scale)] = path
                seeded += need
        phase["bookings_seeded"] = {"count": seeded, "seconds": round(time.perf_counter() - t, 1)}
        log(f"inserted {seeded} BOOKED bookings in {phase['bookings_seeded']['seconds']} s")

        zipf = ZipfRoutes(stack.settings.POPULAR_ROUTES, today)
        phase["zipf"] = {
            "pairs": len(zipf.pairs),
            "exponent": ZIPF_EXPONENT,
            "mass_of_top_12": round(zipf.mass_of_top(12), 3),
            "mass_of_top_52": round(zipf.mass_of_top(52), 3),
            "mass_of_top_200": round(zipf.mass_of_top(200), 3),
        }
        warm_refs = seed_bookings(db, WARM_UP, stack.customer_id)
        phase["warm_up"] = warm_up(stack, warm_refs, today)
        drain(stack, args.drain_wait)

        for scenario, scale in plan:
            name = label(scenario, scale)
            entry: dict[str, Any] = {
                "scenario": scenario,
                "scale": scale,
                "users": scenario_users(scenario, scale, args.period),
                "offered_per_s": offered_rates(scenario, scale, args.period),
            }
            if "RouteSearch" in SCENARIOS[scenario]:
                entry["warm"] = warm_route_cache(stack)
            stack.services.redis.delete(METRICS_KEY, LATENCIES_KEY)
            before = route_cache_counts(stack)
            log(f"{name}: {entry['users']} users for {args.run_time} s")
            refs = ref_files.get(name)
            entry.update(run_locust(stack, raw, args, scenario, scale, refs))
            after = route_cache_counts(stack)
            hits, misses = after["hits"] - before["hits"], after["misses"] - before["misses"]
            entry["route_cache"] = {
                "hits": hits,
                "misses": misses,
                "hit_rate": round(hits / (hits + misses), 4) if hits + misses else None,
            }
            entry["locks"] = lock_metrics(stack.services.redis)
            entry["drain"] = drain(stack, args.drain_wait)
            stats = raw / f"{name}_stats.csv"
            entry["stats"] = read_stats(stats) if stats.exists() else {}
            if not stats.exists():  # (exit 1 only means some requests failed)
                # Say it where it is read: a scenario that never ran must not
                # pass for a fast one (a module shadowing the stdlib once did that).
                tail = (raw / f"{name}.log").read_text(errors="replace").strip().splitlines()[-3:]
                phase.setdefault("failed_scenarios", {})[name] = " | ".join(tail)
                log(f"{name}: LOCUST FAILED (exit {entry['locust_exit']}): {' | '.join(tail)}")
            phase["scenarios"][name] = entry
            log(f"{name}: done in {entry['wall_s']} s, then {entry['drain']}")
            args.checkpoint()


# -- the benchmarks ----------------------------------------------------------------

BENCHMARKS = (
    "create",
    "transitions",
    "flights",
    "bulk",
    "auth",
    "accept",
    "reads",
    "reservations",
    "burst",
)  # in order


def benchmark_phase(
    mode: dict[str, Any],
    summary: dict[str, Any],
    checkpoint,
    profile_dir: Path | None,
    only: tuple[str, ...] | list[str] = BENCHMARKS,
) -> None:
    """The benchmarks named in `only`, each on its own isolated stack (perf.harness
    raises the rate limits there, by settings); with profile_dir, the profiled
    phases' py-spy files go there."""
    benches = summary.setdefault("benchmarks", {})
    specs = [
        (
            "create",
            lambda p: bench_create.run(pool="prefork", concurrency=8, profile_dir=profile_dir, **p),
            bench_create,
        ),
        (
            "transitions",
            lambda p: bench_transitions.run(profile_dir=profile_dir, **p),
            bench_transitions,
        ),
        ("flights", lambda p: bench_flights.run(profile_dir=profile_dir, **p), bench_flights),
        ("bulk", lambda p: bench_bulk.run(**p), bench_bulk),
        ("auth", lambda p: bench_auth.run(**p), bench_auth),
        ("accept", lambda p: bench_accept.run(**p), bench_accept),
        ("reads", lambda p: bench_reads.run(start=datetime.now(UTC).date(), **p), bench_reads),
        ("reservations", lambda p: bench_reservations.run(**p), bench_reservations),
        ("burst", lambda p: bench_burst.run(**p), burst_report),
    ]
    for name, call, module in specs:
        if name not in only:
            continue
        params = mode[f"bench_{name}"]
        log(f"benchmark {name} {params}")
        started = time.perf_counter()
        try:
            figures = call(dict(params))
            text = module.report(figures)
            benches[name] = {"params": params, "figures": figures, "text": text}
            print(text, flush=True)
        except Exception as exc:  # recorded in the report; the other benchmarks still run
            benches[name] = {
                "params": params,
                "error": f"{type(exc).__name__}: {exc}",
                "traceback": traceback.format_exc(),
            }
            log(f"benchmark {name} failed: {exc}")
        benches[name]["seconds"] = round(time.perf_counter() - started, 1)
        checkpoint()


# -- main ---------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> Path:
    parser = command_line(__doc__, figures=False)
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--out", type=Path, help="results directory [perf/results/<timestamp>]")
    parser.add_argument("--run-time", type=int, help="seconds per scenario [full 25, quick 10]")
    parser.add_argument("--stop-timeout", type=int, help="seconds for users to finish at the end")
    parser.add_argument("--period", type=float, default=3.0, help="seconds per task per user")
    parser.add_argument(
        "--poll-interval", type=float, default=0.0, help="0: poll jobs after Retry-After"
    )
    parser.add_argument("--poll-timeout", type=float, default=30.0)
    parser.add_argument("--flights", type=int, help="flights stored for the Locust phase")
    parser.add_argument(
        "--drain-wait", type=float, help="seconds to work off a scenario's backlog before a purge"
    )
    parser.add_argument(
        "--scenarios", nargs="+", choices=SCENARIO_ORDER, default=list(SCENARIO_ORDER)
    )
    parser.add_argument("--scales", nargs="+", type=float, default=[1.0, 10.0])
    parser.add_argument("--skip-locust", action="store_true")
    parser.add_argument("--skip-benchmarks", action="store_true")
    parser.add_argument(
        "--benchmarks",
        nargs="+",
        choices=BENCHMARKS,
        default=list(BENCHMARKS),
        help="the benchmarks to run [all]",
    )
    parser.add_argument(
        "--no-profile", action="store_true", help="no profile of the benchmarks' phases"
    )
    args = parser.parse_args(argv)
    mode_name = "quick" if args.quick else "full"
    mode = MODES[mode_name]
    args.run_time = args.run_time or mode["run_time"]
    args.stop_timeout = args.stop_timeout if args.stop_timeout is not None else mode["stop_timeout"]
    args.flights = args.flights or mode["flights"]
    args.drain_wait = mode["drain_wait"] if args.drain_wait is None else args.drain_wait

    started = datetime.now(UTC)
    out = args.out or RESULTS / started.strftime("%Y%m%dT%H%M%SZ")
    raw = out / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {
        "mode": mode_name,
        "started_at": started.isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        },
        "durations_s": {},
    }

    def checkpoint() -> None:
        write_json(out / "summary.json", summary)

    args.checkpoint = checkpoint
    checkpoint()
    log(f"{mode_name} run; results in {out}")
    clock = time.perf_counter()
    if not args.skip_locust:
        try:
            summary["locust"] = {}
            locust_phase(raw, args, summary["locust"])
        except Exception as exc:
            summary["locust"]["error"] = f"{type(exc).__name__}: {exc}"
            summary["locust"]["traceback"] = traceback.format_exc()
            log(f"Locust phase failed: {exc}")
        summary["durations_s"]["locust_phase"] = round(time.perf_counter() - clock, 1)
        checkpoint()
    if not args.skip_benchmarks:
        clock2 = time.perf_counter()
        profile_dir = None if args.no_profile else raw
        benchmark_phase(mode, summary, checkpoint, profile_dir, args.benchmarks)
        summary["durations_s"]["benchmarks"] = round(time.perf_counter() - clock2, 1)
    summary["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    summary["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    summary["durations_s"]["total"] = round(time.perf_counter() - clock, 1)
    checkpoint()
    path = report.build(out)
    log(f"report: {path} (total {summary['durations_s']['total']:.0f} s)")
    return path


if __name__ == "__main__":
    main()
