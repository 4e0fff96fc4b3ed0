"""What `make run`'s whole stack costs when nobody asks: memory and CPU at
rest with 100,000 flights stored, memory after a day of beat warming, and the
route cache's hit rate under a Zipf load of route searches.

    python -m perf.bench_idle                        # the defaults below
    python -m perf.bench_idle --flights 20000 --warms 100 --idle-s 60 --json out/idle.json

1. `python -m tools.stack run` (supervisord and every program of `make run`,
   as configured by the environment: WORKER_CONCURRENCY and the others are
   read, not set) on ports, a queue namespace, a var/ folder and a
   redis-server of its own, the embedded database; its seed program stores
   --flights generated flights.
2. idle memory: RSS (and PSS, which counts a page shared by N processes 1/N
   each) of every process of the stack, once the seed is done and beat has warmed.
3. a Zipf load of route searches over every (origin, destination) of the
   schedule, today or tomorrow, at --rate searches/s from this process
   (loopback): --warm-up-s unmeasured, then --measure-s counted. The hit rate is
   the server's own count (the routes cache's lookups and misses).
4. idle CPU: every process's CPU over --idle-s seconds with no request, beat
   warming every CACHE_WARM_INTERVAL (the real interval: no scaling).
5. a day of beat warming: --warms beat warm tasks queued to the background
   worker (a day is 1,728 at 50 s), every --change-every-th after a change of
   booked space (as a booking records it), then every worker process's RSS.

Every loop has a deadline; everything runs on this machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import psutil
import requests

from core import cache_keys, queues
from core.clock import utcnow
from core.services import connect_services
from core.settings import load_settings
from perf.harness import RATE_LIMITS, command_line, publish
from tools import supervision
from tools.processes import free_port, start_make_run
from tools.stack import wait_for_port

STACK_GOAL_MB = 700.0
WORKER_GOAL_MB = 150.0
IDLE_CPU_GOAL_PCT = 5.0
HIT_RATE_GOAL = 0.95
WORKER_PROGRAMS = ("worker", "background", "webhooks")
ZIPF_S = 1.1
LOAD_SEED = 11
MB = 1024 * 1024
START_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 30.0


# -- the stack ------------------------------------------------------------------------


class MakeRun:
    """`python -m tools.stack run` in a session of its own, with its own var/."""

    def __init__(self, env: dict[str, str], var: Path):
        self.env, self.var = env, var
        self.output = var.parent / "make-run.log"
        self.proc = start_make_run(env, var, self.output)

    def printed(self) -> str:
        return self.output.read_text(errors="replace")

    def wait_serving(self, deadline: float) -> None:
        while "RadiantGo is running" not in self.printed():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"make run did not start:\n{self.printed()[-3000:]}")
            time.sleep(0.5)

    def programs(self) -> dict[str, int]:
        """Each running program's pid, by name (listeners included)."""
        infos = supervision.control(self.var).supervisor.getAllProcessInfo()
        return {info["name"]: info["pid"] for info in infos if info["pid"]}

    def seed_done(self) -> bool:
        infos = supervision.control(self.var).supervisor.getAllProcessInfo()
        return any(i["name"] == supervision.SEED and i["statename"] == "EXITED" for i in infos)

    def processes(self) -> dict[str, list[psutil.Process]]:
        """Every process of the stack, by program: the stack manager, supervisord,
        each program with its descendants (pool processes, gunicorn's workers)."""
        found: dict[str, list[psutil.Process]] = {}
        manager = psutil.Process(self.proc.pid)
        found["make run (tools.stack)"] = [manager]
        supervisord = supervision.control(self.var).supervisor.getPID()
        found["supervisord"] = [psutil.Process(supervisord)]
        for name, pid in self.programs().items():
            if name == supervision.SEED:
                continue
            with contextlib.suppress(psutil.Error):
                root = psutil.Process(pid)
                found[name] = [root, *root.children(recursive=True)]
        return found

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGINT)
        try:
            self.proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


@contextlib.contextmanager
def make_run(overrides: dict[str, Any]) -> Iterator[tuple[MakeRun, Any, subprocess.Popen]]:
    """The stack, with a Redis of its own (its CPU is then the stack's alone)."""
    work = Path(tempfile.mkdtemp(prefix="radiantgo-idle-"))
    port = free_port()
    redis_proc = subprocess.Popen(
        [
            *("redis-server", "--port", str(port), "--bind", "127.0.0.1"),
            *("--save", "", "--appendonly", "no", "--dir", str(work)),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    stack = None
    try:
        if not wait_for_port("127.0.0.1", port, 10):
            raise RuntimeError("redis-server did not start")
        env = {k: v for k, v in os.environ.items() if k != "MONGODB_URI"}  # the embedded one
        env.update({name: str(value) for name, value in overrides.items()})
        env["REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
        stack = MakeRun(env, work / "var")
        yield stack, load_settings(env), redis_proc
    finally:
        if stack is not None:
            stack.stop()
        redis_proc.terminate()
        redis_proc.wait(10)
        shutil.rmtree(work, ignore_errors=True)


# -- measures ---------------------------------------------------------------------


def memory(stack: MakeRun) -> dict[str, Any]:
    """RSS and PSS (MB) of every process, by program, and the totals."""
    programs, total_rss, total_pss = {}, 0.0, 0.0
    for name, procs in stack.processes().items():
        rows = []
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                info = proc.memory_full_info()
                rows.append(
                    {
                        "pid": proc.pid,
                        "rss_mb": round(info.rss / MB, 1),
                        "pss_mb": round(info.pss / MB, 1),
                    }
                )
        rss, pss = sum(r["rss_mb"] for r in rows), sum(r["pss_mb"] for r in rows)
        total_rss, total_pss = total_rss + rss, total_pss + pss
        programs[name] = {"rss_mb": round(rss, 1), "pss_mb": round(pss, 1), "processes": rows}
    return {"programs": programs, "rss_mb": round(total_rss, 1), "pss_mb": round(total_pss, 1)}


def largest_worker_mb(mem: dict[str, Any]) -> float:
    return max(
        (p["rss_mb"] for name in WORKER_PROGRAMS for p in mem["programs"][name]["processes"]),
        default=0.0,
    )


def cpu_seconds(procs: list[psutil.Process]) -> float:
    total = 0.0
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            t = proc.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
    return total


def idle_cpu(stack: MakeRun, redis_proc: subprocess.Popen, seconds: float) -> dict[str, Any]:
    """% of one core per program over `seconds` with no request: the stack's
    Redis in the total, the machine's RabbitMQ (shared with any other work) apart."""
    groups = {**stack.processes(), "Redis": [psutil.Process(redis_proc.pid)]}
    shared = {
        "RabbitMQ": [p for p in psutil.process_iter(["name"]) if p.info["name"] == "beam.smp"]
    }
    before = {name: cpu_seconds(procs) for name, procs in {**groups, **shared}.items()}
    started = time.monotonic()
    time.sleep(seconds)
    wall = time.monotonic() - started
    after = {name: cpu_seconds(procs) for name, procs in {**groups, **shared}.items()}
    pct = {name: round(100 * (after[name] - before[name]) / wall, 2) for name in before}
    stack_pct = sum(v for k, v in pct.items() if k not in shared)
    return {"wall_s": round(wall, 1), "pct_of_core": pct, "stack_pct": round(stack_pct, 2)}


def route_counters(redis_client) -> tuple[int, int]:
    lookups, misses = redis_client.mget(
        cache_keys.stats_key(cache_keys.ROUTES, cache_keys.LOOKUPS),
        cache_keys.stats_key(cache_keys.ROUTES, cache_keys.MISSES),
    )
    return int(lookups or 0), int(misses or 0)


def zipf_routes(db) -> list[tuple[str, str]]:
    """Every (origin, destination) of the schedule's airports, in a fixed random
    order: the first is searched most (rank k with weight 1 / k**ZIPF_S)."""
    airports = sorted(db.flights.distinct("origin"))
    pairs = [(a, b) for a in airports for b in airports if a != b]
    random.Random(LOAD_SEED).shuffle(pairs)
    return pairs


def zipf_searches(pairs: list[tuple[str, str]], count: int, seed: int):
    """`count` (route, day) searches: routes by Zipf rank, today 60 %, tomorrow 40 %."""
    rng = random.Random(seed)
    weights = [1 / (k + 1) ** ZIPF_S for k in range(len(pairs))]
    chosen = rng.choices(pairs, weights=weights, k=count)
    today = utcnow().date()
    days = [today if rng.random() < 0.6 else today + timedelta(days=1) for _ in range(count)]
    return chosen, days


def first_searches(pairs, rate: float, warm_up_s: float, measure_s: float) -> int:
    """Searches of the measured phase whose route nobody searched before: a
    miss for a cache that warms what is searched, whatever it does."""
    seen = set(zipf_searches(pairs, int(rate * warm_up_s), seed=1)[0])
    first = 0
    for route in zipf_searches(pairs, int(rate * measure_s), seed=2)[0]:
        first += route not in seen
        seen.add(route)
    return first


def search_load(base: str, pairs: list[tuple[str, str]], rate: float, seconds: float, seed: int):
    """Route searches at `rate`/s for `seconds` (open loop, 8 senders); the
    statuses seen."""
    chosen, days = zipf_searches(pairs, int(rate * seconds), seed)
    count = len(chosen)
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    local = threading.local()
    t0 = time.monotonic() + 0.5

    def search(i: int) -> None:
        delay = t0 + i / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        session = getattr(local, "session", None) or requests.Session()
        local.session = session
        origin, destination = chosen[i]
        params = {"origin": origin, "destination": destination, "date": days[i].isoformat()}
        try:
            status = session.get(f"{base}/api/routes", params=params, timeout=30).status_code
        except requests.RequestException:
            status = 0
        with lock:
            statuses[status] = statuses.get(status, 0) + 1

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(search, range(count)))
    return statuses


def hit_rate(stack_redis, base: str, pairs, rate: float, warm_up_s: float, measure_s: float):
    search_load(base, pairs, rate, warm_up_s, seed=1)
    time.sleep(2.5)  # the ingress adds its counts to Redis every second
    lookups0, misses0 = route_counters(stack_redis)
    statuses = search_load(base, pairs, rate, measure_s, seed=2)
    time.sleep(2.5)
    lookups1, misses1 = route_counters(stack_redis)
    lookups, misses = lookups1 - lookups0, misses1 - misses0
    return {
        "searches": sum(statuses.values()),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "lookups": lookups,
        "misses": misses,
        "hit_rate": round(1 - misses / lookups, 4) if lookups else None,
        "first_searches_of_a_route": first_searches(pairs, rate, warm_up_s, measure_s),
    }


def day_of_warming(settings, redis_client, warms: int, change_every: int, deadline: float):
    """`warms` beat warm tasks through the background worker, a change of booked
    space (the counter a booking bumps) before every `change_every`-th; returns
    the seconds it took to run them all."""
    from celeryconfig import create_celery_app

    app = create_celery_app(settings)
    queue = queues.queue_name(
        queues.TASKS[queues.WARM_CACHE_ON_SCHEDULE][1], settings.QUEUE_NAMESPACE
    )
    started = time.monotonic()
    sent = 0
    # No heartbeat: this connection only asks for a depth now and then, and
    # nothing here would answer the broker's heartbeats.
    with app.connection_for_write(heartbeat=0) as conn:
        channel = conn.default_channel

        def depth() -> int:
            return channel.queue_declare(queue, passive=True).message_count

        while sent < warms and time.monotonic() < deadline:
            # A few at a time: a long backlog of warms is not what a day looks like.
            if depth() < 2:
                for _ in range(min(4, warms - sent)):
                    if change_every and sent % change_every == change_every - 1:
                        redis_client.incr(cache_keys.BOOKING_PAGES_GENERATION)
                    app.send_task(queues.WARM_CACHE_ON_SCHEDULE, queue=queue)
                    sent += 1
            else:
                time.sleep(0.1)
        while depth() and time.monotonic() < deadline:
            time.sleep(0.2)
    return {"warms": sent, "seconds": round(time.monotonic() - started, 1)}


def settled(stack: MakeRun, program: str, deadline: float) -> bool:
    """Whether `program`'s processes went 3 s without using CPU (the last warm
    taken from the queue has finished) before `deadline`."""
    quiet, last = 0, None
    while quiet < 3 and time.monotonic() < deadline:
        used = cpu_seconds(stack.processes()[program])
        quiet = quiet + 1 if last is not None and used - last < 0.05 else 0
        last = used
        time.sleep(1)
    return quiet >= 3


# -- the run --------------------------------------------------------------------------


def run(
    *,
    flights: int,
    rate: float,
    warm_up_s: float,
    measure_s: float,
    idle_s: float,
    warms: int,
    change_every: int,
    warm_timeout_s: float,
) -> dict[str, Any]:
    overrides: dict[str, Any] = {
        "PORT": free_port(),
        "FLOWER_PORT": free_port(),
        "EMBEDDED_MONGO_PORT": free_port(),
        "QUEUE_NAMESPACE": f"bench-idle-{uuid.uuid4().hex[:6]}",
        "ADMIN_TOKEN": secrets.token_urlsafe(24),
        "DEMO_FLIGHTS": flights,
        "LOG_LEVEL": "WARNING",
        **{name: 1_000_000 for name in RATE_LIMITS},
    }
    figures: dict[str, Any] = {"flights": flights}
    with make_run(overrides) as (stack, settings, redis_proc):
        figures["settings"] = {
            name: getattr(settings, name)
            for name in (
                "WEB_WORKERS",
                "WEB_THREADS",
                "WORKER_CONCURRENCY",
                "BACKGROUND_CONCURRENCY",
                "WEBHOOK_PROCESSES",
                "CACHE_WARM_INTERVAL",
                "WARM_TOP_ROUTES",
                "WARM_MAX_ROUTES",
            )
        }
        stack.wait_serving(time.monotonic() + START_TIMEOUT_S)
        svc = connect_services(
            load_settings(
                stack.env, MONGODB_URI=f"mongodb://127.0.0.1:{settings.EMBEDDED_MONGO_PORT}"
            )
        )
        try:
            deadline = time.monotonic() + 900
            while not stack.seed_done() and time.monotonic() < deadline:
                time.sleep(1)
            figures["flights_stored"] = svc.db.flights.estimated_document_count()
            time.sleep(settings.CACHE_WARM_INTERVAL + 10)  # beat's first warms with the flights
            figures["idle_memory"] = memory(stack)
            base = f"http://127.0.0.1:{settings.PORT}"
            pairs = zipf_routes(svc.db)
            figures["routes_in_schedule"] = len(pairs)
            figures["zipf"] = {
                "rate": rate,
                "warm_up_s": warm_up_s,
                "measure_s": measure_s,
                **hit_rate(svc.redis, base, pairs, rate, warm_up_s, measure_s),
            }
            figures["idle_cpu"] = idle_cpu(stack, redis_proc, idle_s)
            _say("idle", figures)
            try:
                figures["warming"] = day_of_warming(
                    settings, svc.redis, warms, change_every, time.monotonic() + warm_timeout_s
                )
            except Exception as exc:  # the figures so far are still worth printing
                figures["warming"] = {"warms": 0, "seconds": 0, "error": repr(exc)}
            figures["warming"]["change_every"] = change_every
            figures["warming"]["settled"] = settled(stack, "background", time.monotonic() + 300)
            figures["memory_after_warms"] = memory(stack)
        finally:
            svc.close()
    return figures


def _say(phase: str, figures: dict[str, Any]) -> None:
    """The figures so far, on stderr: a run that fails later keeps them."""
    print(f"[{phase}] {json.dumps(figures)}", file=sys.stderr, flush=True)


def _verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def goals(f: dict[str, Any]) -> dict[str, str]:
    after = f["memory_after_warms"]
    largest = largest_worker_mb(after)
    rate = f["zipf"]["hit_rate"] or 0.0
    return {
        "idle stack RSS": f"{f['idle_memory']['rss_mb']:.0f} MB (< {STACK_GOAL_MB:.0f}):"
        f" {_verdict(f['idle_memory']['rss_mb'] < STACK_GOAL_MB)}",
        "largest worker process after warms": f"{largest:.0f} MB (< {WORKER_GOAL_MB:.0f}):"
        f" {_verdict(largest < WORKER_GOAL_MB)}",
        "idle CPU": f"{f['idle_cpu']['stack_pct']:.1f} % of a core (< {IDLE_CPU_GOAL_PCT:g}):"
        f" {_verdict(f['idle_cpu']['stack_pct'] < IDLE_CPU_GOAL_PCT)}",
        "route hit rate": f"{100 * rate:.1f} % (> {100 * HIT_RATE_GOAL:g}):"
        f" {_verdict(rate > HIT_RATE_GOAL)}",
    }


def _memory_lines(title: str, mem: dict[str, Any]) -> list[str]:
    lines = [f"{title}: RSS {mem['rss_mb']:.0f} MB, PSS {mem['pss_mb']:.0f} MB"]
    for name, p in mem["programs"].items():
        each = " ".join(f"{r['rss_mb']:.0f}" for r in p["processes"])
        lines.append(
            f"  {name:<24} RSS {p['rss_mb']:>6.0f}  PSS {p['pss_mb']:>6.0f}   processes: {each}"
        )
    return lines


def report(f: dict[str, Any]) -> str:
    s = f["settings"]
    lines = [
        f"Idle stack, `make run`'s programs: {f['flights_stored']} flights,"
        f" {f['routes_in_schedule']} routes; web {s['WEB_WORKERS']} x {s['WEB_THREADS']},"
        f" interactive worker x{s['WORKER_CONCURRENCY']},"
        f" background x{s['BACKGROUND_CONCURRENCY']},"
        f" webhooks x{s['WEBHOOK_PROCESSES']}, warm every {s['CACHE_WARM_INTERVAL']} s",
        "(a machine shared with other work: CPU figures include only the stack's processes)",
        "",
        *_memory_lines("Idle memory (MB)", f["idle_memory"]),
        "",
        f"Idle CPU over {f['idle_cpu']['wall_s']} s (% of one core):",
    ]
    for name, pct in sorted(f["idle_cpu"]["pct_of_core"].items(), key=lambda kv: -kv[1]):
        lines.append(f"  {name:<24} {pct:6.2f}")
    lines.append(
        f"  {'stack total':<24} {f['idle_cpu']['stack_pct']:6.2f}   (Redis, RabbitMQ not in it)"
    )
    z = f["zipf"]
    lines += [
        "",
        f"Zipf route searches (s={ZIPF_S}) at {z['rate']:g}/s: {z['warm_up_s']:g} s warm-up,"
        f" then {z['searches']} searches in {z['measure_s']:g} s: statuses {z['statuses']},"
        f" {z['lookups']} lookups, {z['misses']} misses, hit rate {z['hit_rate']}"
        f" ({z['first_searches_of_a_route']} were a route's first search in the run)",
        "",
        f"{f['warming']['warms']} beat warms (a booked-space change before every"
        f" {f['warming']['change_every']}th) in {f['warming']['seconds']} s"
        + (f" (stopped: {f['warming']['error']})" if "error" in f["warming"] else ""),
        *_memory_lines("Memory after them (MB)", f["memory_after_warms"]),
        "",
        "Goals:",
        *(f"  {name}: {verdict}" for name, verdict in goals(f).items()),
    ]
    return "\n".join(lines)


def main() -> None:
    parser = command_line(__doc__)
    parser.add_argument("--flights", type=int, default=100_000)
    parser.add_argument("--rate", type=float, default=20.0, help="route searches per second")
    parser.add_argument("--warm-up-s", type=float, default=90.0)
    parser.add_argument("--measure-s", type=float, default=150.0)
    parser.add_argument("--idle-s", type=float, default=200.0)
    parser.add_argument("--warms", type=int, default=1728, help="a day at 50 s")
    parser.add_argument("--change-every", type=int, default=10)
    parser.add_argument("--warm-timeout-s", type=float, default=1800.0)
    args = parser.parse_args()
    figures = run(
        flights=args.flights,
        rate=args.rate,
        warm_up_s=args.warm_up_s,
        measure_s=args.measure_s,
        idle_s=args.idle_s,
        warms=args.warms,
        change_every=args.change_every,
        warm_timeout_s=args.warm_timeout_s,
    )
    publish(report, figures, args.json)


if __name__ == "__main__":
    main()
