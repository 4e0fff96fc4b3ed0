"""RadiantGo against a synchronous service doing the same work (issue 22): the CPU
of every process of each system per stored result, creates and departs, at a
steady rate and at saturation.

    make bench-versus
    python -m perf.bench_versus --rounds 1 --seconds 5 --saturation-requests 500

The synchronous service (perf.versus): FastAPI under uvicorn, two worker
processes, PostgreSQL through psycopg 3's pool, each create and depart done in
its request, in one transaction, answered with the booking. RadiantGo: the
isolated stack of perf.harness (the gunicorn ingress, a Celery worker,
SecantusDB, the machine's RabbitMQ and Redis), a create or depart stored by
its worker after the 202.

Both systems run side by side for the whole benchmark; rounds alternate
between them (RadiantGo, sync, RadiantGo, ...), each round measuring one
system in four phases:

- steady create / steady depart: an open loop of --rate requests/s for
  --seconds (perf.bench_burst's fixed schedule; a depart departs a BOOKED
  booking seeded beforehand, each once);
- saturation create / saturation depart: --saturation-requests requests
  sent over --connections keep-alive connections, each sending its next as
  soon as its last is answered (a closed loop).

A result is stored when the synchronous service has answered 201 (create) or
200 (depart), and for RadiantGo when the job of a 202 has succeeded: its
finished notice is awaited (perf.bench_burst's, a job without one read over
HTTP) and every job's final state is read over HTTP afterwards. A phase's
time runs from its first due request to its last stored result; its CPU is
the user + system time of each process group over that span
(perf.profiling): RadiantGo's ingress, worker, SecantusDB, RabbitMQ and
Redis; the service's uvicorn (supervisor and workers) and PostgreSQL (the
server's whole process tree: backends, WAL writer, checkpointer, autovacuum).
RabbitMQ, Redis and PostgreSQL are the machine's own servers: whatever else
uses them on a shared machine is counted too, so their idle use is measured
for BACKGROUND_S before each phase and the CPU per result less that
background over the phase is shown beside the whole (the goals are judged on
the whole). The other system's processes, idle meanwhile, and the rest of the
machine are shown apart, not counted. RadiantGo's Redis database is flushed at
the start (--redis-url: another than DB 13 when another benchmark runs beside).

Figures: per system, round and phase, CPU ms per stored result (by process
group) and stored results/s; their medians over rounds; the ratios
RadiantGo / sync, judged against the issue's goals: CPU per create and per
depart at most 0.5x, at the steady rate and at saturation; departs/s at
saturation at least 2x.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from core.jobs import FINISHED
from perf.harness import (
    BENCH_REDIS_URL,
    BODY,
    TRANSITION,
    command_line,
    isolated_stack,
    percentiles,
    publish,
    seed_bookings,
)
from perf.profiling import OTHER, cpu_figures, cpu_snapshot, stack_processes
from perf.scheduled_load import (
    Answer,
    FinishedNotices,
    final_states,
    job_id,
    job_states,
    lag_figures,
    offer,
    schedule,
    warm_up,
)
from perf.versus import store
from perf.versus.service import DEFAULT_DSN, POOL_SIZE, WORKERS, versus_service

RADIANTGO, SYNC = "RadiantGo", "sync"
SYSTEMS = (RADIANTGO, SYNC)
CREATE, DEPART = "create", "depart"
KINDS = (CREATE, DEPART)
STEADY, SATURATION = "steady", "saturation"
LOADS = (STEADY, SATURATION)
PHASES = tuple(f"{load} {kind}" for load in LOADS for kind in KINDS)
# What a stored result is answered with: RadiantGo accepts (its worker stores),
# the synchronous service answers with what it stored.
ACCEPTED = 202
STORED_STATUS = {CREATE: 201, DEPART: 200}
SUCCEEDED = "succeeded"

GOAL_CPU_RATIO = 0.5  # RadiantGo's CPU per result, at most this fraction of the sync service's
GOAL_DEPARTS_RATIO = 2.0  # RadiantGo's departs/s at saturation, at least this multiple

STEADY_SENDERS = 32  # connections of the open loop: ample at 60/s with answers in ms
START_DELAY_S = 0.3  # from the schedule's set-up to its first request
WARM_UP = 20  # unmeasured requests of each kind, per system
BACKGROUND_S = 1.5  # the shared servers' idle use, measured before each phase
QUIET_S = 3.0  # no job finished for this long: read the ones without a notice over HTTP
JOBS_TIMEOUT_S = 300.0  # a phase's jobs all finished within this, or the run fails
VERIFY_TIMEOUT_S = 120.0
REQUEST_TIMEOUT_S = 30.0


# -- the figures (pure functions of what was recorded) ---------------------------------


def phase_figures(
    *,
    cpu_s: dict[str, float],
    own: Iterable[str],
    stored: int,
    requests: int,
    errors: dict[str, int],
    wall_s: float,
    answer_ms: dict[str, Any],
    background_cores: dict[str, float] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """One phase of one system: CPU seconds by process group (`cpu_s`, every group
    measured; `own` are the system's), the results stored, the requests sent
    and the errors among them, the span from the first due request to the last
    stored result. The groups not the system's are shown as cores, apart.

    `background_cores`: of the system's groups that are the machine's servers,
    shared with whatever else runs (RabbitMQ, Redis, PostgreSQL), the cores
    each used just before, idle; the CPU per result less that background over
    the span is given beside the whole."""
    own = list(own)
    background_cores = background_cores or {}
    total = sum(cpu_s[group] for group in own)
    background = sum(cores * wall_s for cores in background_cores.values())

    def per_result(seconds: float) -> float | None:
        return round(1000 * seconds / stored, 3) if stored else None

    def cores(seconds: float) -> float | None:
        return round(seconds / wall_s, 2) if wall_s > 0 else None

    return {
        "requests": requests,
        "stored": stored,
        "errors": errors,
        "wall_s": round(wall_s, 3),
        "results_per_s": round(stored / wall_s, 1) if stored and wall_s > 0 else None,
        "cpu_ms_per_result": per_result(total),
        "cpu_ms_per_result_by_group": {group: per_result(cpu_s[group]) for group in own},
        "cpu_ms_per_result_less_background": per_result(max(0.0, total - background)),
        "background_cores": background_cores,
        "cores": cores(total),
        "cores_not_counted": {g: cores(s) for g, s in cpu_s.items() if g not in own},
        "answer_ms": answer_ms,
        **extra,
    }


def _median(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return round(statistics.median(known), 3) if known else None


MEDIANS = ("cpu_ms_per_result", "cpu_ms_per_result_less_background", "results_per_s")


def medians(rounds: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """system -> phase -> the medians over its rounds of CPU ms per result (whole,
    by group, less the background) and of results/s, with each round's values."""
    result: dict[str, dict[str, dict[str, Any]]] = {}
    for system in SYSTEMS:
        mine = [r["phases"] for r in rounds if r["system"] == system]
        result[system] = {}
        for phase in PHASES:
            runs = [phases[phase] for phases in mine if phase in phases]
            if not runs:
                continue
            groups = runs[0]["cpu_ms_per_result_by_group"]
            m: dict[str, Any] = {}
            for name in MEDIANS:
                m[name] = _median([r[name] for r in runs])
                m[f"{name}_rounds"] = [r[name] for r in runs]
            m["cpu_ms_per_result_by_group"] = {
                g: _median([r["cpu_ms_per_result_by_group"][g] for r in runs]) for g in groups
            }
            m["errors"] = sum(sum(r["errors"].values()) for r in runs)
            result[system][phase] = m
    return result


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def ratios(m: dict[str, dict[str, dict[str, Any]]]) -> dict[str, dict[str, float | None]]:
    """phase -> RadiantGo / sync of each median (CPU per result, whole and less
    the background; results/s)."""
    result = {}
    for phase in PHASES:
        ours, theirs = m.get(RADIANTGO, {}).get(phase), m.get(SYNC, {}).get(phase)
        if ours is not None and theirs is not None:
            result[phase] = {name: _ratio(ours[name], theirs[name]) for name in MEDIANS}
    return result


def goals(r: dict[str, dict[str, float | None]]) -> dict[str, str]:
    """Each of the issue's goals, on the CPU of every process (the background
    not taken off) -> 'met', 'missed: <the ratio>' or 'not measured'."""

    def judged(ratio: float | None, ok: Callable[[float], bool]) -> str:
        if ratio is None:
            return "not measured"
        return "met" if ok(ratio) else f"missed: {ratio:.2f}x"

    verdicts = {
        f"CPU per {kind} at {load} <= {GOAL_CPU_RATIO}x the sync service's": judged(
            r.get(f"{load} {kind}", {}).get("cpu_ms_per_result"),
            lambda x: x <= GOAL_CPU_RATIO,
        )
        for load in LOADS
        for kind in KINDS
    }
    verdicts[f"departs/s at saturation >= {GOAL_DEPARTS_RATIO:g}x the sync service's"] = judged(
        r.get(f"{SATURATION} {DEPART}", {}).get("results_per_s"),
        lambda x: x >= GOAL_DEPARTS_RATIO,
    )
    return verdicts


def summary(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    m = medians(rounds)
    r = ratios(m)
    return {"medians": m, "ratios": r, "goals": goals(r)}


# -- the load and the measurements ---------------------------------------------------------


def saturation_plan(kind: str, count: int) -> list[tuple[float, str, int]]:
    """Every request due at once: `offer`'s senders then form a closed loop, each
    sending its next request as soon as its last is answered."""
    return [(0.0, kind, i) for i in range(count)]


def _errors(answers: list[Answer], ok: int) -> dict[str, int]:
    return dict(Counter(str(a.status) for a in answers if a.status != ok))


def _answers_end(answers: list[Answer]) -> float:
    """Seconds since t0 of the last answer."""
    return max((a.sent + a.latency_ms / 1000 for a in answers), default=0.0)


class Requests:
    """request_for(kind, i) for perf.bench_burst.offer: the create body, or the
    depart of the i-th of `refs`."""

    def __init__(self, customer: dict[str, str], operator: dict[str, str], refs: list[str]):
        self.create = ("/api/bookings", json.dumps(BODY).encode(), _json(customer))
        self.depart_body = json.dumps(TRANSITION).encode()
        self.operator = _json(operator)
        self.refs = refs

    def __call__(self, kind: str, i: int) -> tuple[str, bytes, dict[str, str]]:
        if kind == CREATE:
            return self.create
        return f"/api/bookings/{self.refs[i]}/depart", self.depart_body, self.operator


def _json(headers: dict[str, str]) -> dict[str, str]:
    return {**headers, "Content-Type": "application/json"}


@dataclass
class System:
    """One of the two systems as the benchmark drives it."""

    name: str
    base: str
    customer: dict[str, str]
    operator: dict[str, str]
    groups: dict[str, list[int]]  # its processes, by group
    shared: tuple[str, ...]  # its groups that are the machine's servers
    refs: list[str]  # BOOKED bookings seeded for its departs, each departed once


def idle_cores(groups: dict[str, list[int]], seconds: float) -> dict[str, float]:
    """The cores each group uses over `seconds` with no load of ours."""
    before = cpu_snapshot(groups, [])
    time.sleep(seconds)
    after = cpu_snapshot(groups, [])
    return {g: round(max(0.0, after[g] - before[g]) / seconds, 3) for g in groups}


def wait_for_jobs(stack, paths: list[str], notices: FinishedNotices, timeout: float) -> None:
    """Until every job of `paths` has finished (its notice; after QUIET_S without
    one, the jobs still without a notice are read over HTTP)."""
    waiting = {job_id(path): path for path in paths}
    deadline = time.perf_counter() + timeout
    progress = time.perf_counter()
    while waiting:
        now = time.perf_counter()
        if now > deadline:
            raise RuntimeError(f"{len(waiting)} jobs unfinished after {timeout:.0f} s")
        left = {j: p for j, p in waiting.items() if j not in notices.seen}
        if len(left) < len(waiting):
            progress = now
        elif now - progress > QUIET_S:
            for path, state in job_states(stack.base, stack.operator, list(left.values())).items():
                if state in FINISHED:
                    notices.mark(job_id(path))
            progress = now
        waiting = left
        time.sleep(0.02)


def load_radiantgo(stack, measured, plan, requests, senders) -> tuple[dict, dict]:
    """The load on RadiantGo until its last job finished, CPU snapshots of the
    `measured` groups around it: (snapshots, figures but the CPU's)."""
    t0 = time.perf_counter() + START_DELAY_S
    notices = FinishedNotices(stack.services.redis, t0)
    notices.start()
    before = cpu_snapshot(measured, [])
    try:
        answers = offer(stack.base, plan, requests, t0, senders=senders)
        accepted = [a.job for a in answers if a.job]
        wait_for_jobs(stack, accepted, notices, JOBS_TIMEOUT_S)
        after = cpu_snapshot(measured, [])
        wall = time.perf_counter() - t0
    finally:
        notices.stop()
    last_finished = max((notices.seen[job_id(p)] for p in accepted), default=0.0)
    # Read after the CPU's snapshot: the judge of what was stored, not measured.
    states = final_states(
        stack.base, stack.operator, accepted, time.perf_counter() + VERIFY_TIMEOUT_S
    )
    return (before, after, wall), {
        "stored": sum(1 for state in states.values() if state == SUCCEEDED),
        "requests": len(answers),
        "errors": _errors(answers, ACCEPTED),
        "wall_s": max(last_finished, _answers_end(answers)),
        "answer_ms": percentiles([a.latency_ms for a in answers if a.status == ACCEPTED]),
        "accepted": len(accepted),
        "job_states": dict(Counter(states.values())),
        "client_lag_ms": lag_figures(answers),
    }


def load_sync(base, kind, measured, plan, requests, senders) -> tuple[dict, dict]:
    """The load on the synchronous service, CPU snapshots around it."""
    t0 = time.perf_counter() + START_DELAY_S
    before = cpu_snapshot(measured, [])
    answers = offer(base, plan, requests, t0, senders=senders)
    after = cpu_snapshot(measured, [])
    wall = time.perf_counter() - t0
    ok = STORED_STATUS[kind]
    return (before, after, wall), {
        "stored": sum(1 for a in answers if a.status == ok),
        "requests": len(answers),
        "errors": _errors(answers, ok),
        "wall_s": _answers_end(answers),
        "answer_ms": percentiles([a.latency_ms for a in answers if a.status == ok]),
        "client_lag_ms": lag_figures(answers),
    }


def _used(before: dict[str, float], after: dict[str, float], wall: float) -> dict[str, float]:
    """CPU seconds by group between two snapshots, the rest of the machine as OTHER."""
    figures = cpu_figures(before, after, wall, None)["cpu"]
    figures.pop("py-spy", None)
    return {group: f["cpu_s"] for group, f in figures.items()}


def warm_up_sync(versus, refs: list[str]) -> None:
    """Unmeasured creates and departs: the pools' connections used, statements prepared."""
    url = urlsplit(versus.base)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=REQUEST_TIMEOUT_S)
    requests = Requests(versus.customer, versus.operator, refs)
    try:
        for i in range(len(refs)):
            for kind in KINDS:
                path, body, headers = requests(kind, i)
                conn.request("POST", path, body=body, headers=headers)
                conn.getresponse().read()
    finally:
        conn.close()


def measure_round(stack, system: System, other: System, refs: list[str], cfg) -> dict:
    """The four phases of one round on `system`, departing `refs`."""
    steady = int(cfg.rate * cfg.seconds)
    plans = {
        f"{STEADY} {kind}": (schedule({kind: cfg.rate}, cfg.seconds), refs[:steady], STEADY_SENDERS)
        for kind in KINDS
    } | {
        f"{SATURATION} {kind}": (
            saturation_plan(kind, cfg.saturation_requests),
            refs[steady:],
            cfg.connections,
        )
        for kind in KINDS
    }
    measured = {**system.groups, **other.groups}
    phases = {}
    for phase, (plan, mine, senders) in plans.items():
        kind = phase.split()[-1]
        shared = {g: system.groups[g] for g in system.shared}
        background = idle_cores(shared, BACKGROUND_S)
        requests = Requests(system.customer, system.operator, mine)
        if system.name == RADIANTGO:
            cpu, figures = load_radiantgo(stack, measured, plan, requests, senders)
        else:
            cpu, figures = load_sync(system.base, kind, measured, plan, requests, senders)
        phases[phase] = phase_figures(
            cpu_s=_used(*cpu), own=system.groups, background_cores=background, **figures
        )
        print(_progress(system.name, phase, phases[phase]), flush=True)
    return phases


def run(
    rounds: int = 3,
    seconds: float = 10.0,
    rate: float = 60.0,
    saturation_requests: int = 2000,
    connections: int = 64,
    dsn: str = DEFAULT_DSN,
    redis_url: str = BENCH_REDIS_URL,
) -> dict[str, Any]:
    cfg = argparse.Namespace(
        rate=rate,
        seconds=seconds,
        saturation_requests=saturation_requests,
        connections=connections,
    )
    per_round = int(rate * seconds) + saturation_requests  # departs each round
    seeded = WARM_UP + rounds * per_round
    measured: list[dict[str, Any]] = []
    with isolated_stack(REDIS_URL=redis_url) as stack, versus_service(dsn) as versus:
        systems = {
            RADIANTGO: System(
                RADIANTGO,
                stack.base,
                stack.customer,
                stack.operator,
                stack_processes(stack),
                ("RabbitMQ", "Redis"),
                seed_bookings(stack.services.db, seeded, stack.customer_id),
            ),
            SYNC: System(
                SYNC,
                versus.base,
                versus.customer,
                versus.operator,
                {"uvicorn": [versus.server.pid], "PostgreSQL": [versus.postmaster]},
                ("PostgreSQL",),
                store.seed_bookings(versus.dsn, BODY, seeded, versus.customer_id),
            ),
        }
        warm_up(stack, systems[RADIANTGO].refs[:WARM_UP])
        warm_up_sync(versus, systems[SYNC].refs[:WARM_UP])
        for n in range(rounds):
            for name in SYSTEMS:
                system, other = systems[name], systems[SYNC if name == RADIANTGO else RADIANTGO]
                refs = system.refs[WARM_UP + n * per_round : WARM_UP + (n + 1) * per_round]
                print(f"round {n + 1}, {name}", flush=True)
                phases = measure_round(stack, system, other, refs, cfg)
                measured.append({"system": name, "round": n + 1, "phases": phases})
        s = stack.settings
        described = {
            RADIANTGO: f"gunicorn gthread {s.WEB_WORKERS} x {s.WEB_THREADS} ingress, celery "
            f"{s.WORKER_POOL} x{s.WORKER_CONCURRENCY} worker, SecantusDB, RabbitMQ, Redis",
            SYNC: f"uvicorn (uvloop, httptools) {WORKERS} workers, FastAPI, a psycopg pool of "
            f"{POOL_SIZE} per worker, PostgreSQL (the machine's server)",
        }
    return {
        "config": {
            **vars(cfg),
            "rounds": rounds,
            "systems": described,
            "groups": {name: list(s.groups) for name, s in systems.items()},
            "shared_groups": {name: list(s.shared) for name, s in systems.items()},
            "cpus": os.cpu_count(),
        },
        "rounds": measured,
        **summary(measured),
    }


# -- the terminal report -----------------------------------------------------------------


def _num(value: float | None, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def _progress(system: str, phase: str, p: dict[str, Any]) -> str:
    errors = f", errors {p['errors']}" if p["errors"] else ""
    return (
        f"  {system:<9} {phase:<17} {p['stored']:>5} stored of {p['requests']} in "
        f"{p['wall_s']:.1f} s: {_num(p['results_per_s'], '.0f')}/s, "
        f"{_num(p['cpu_ms_per_result'])} CPU ms each{errors}"
    )


def _groups(by_group: dict[str, float | None]) -> str:
    return ", ".join(f"{g} {_num(ms)}" for g, ms in by_group.items())


def report(f: dict[str, Any]) -> str:
    c = f["config"]
    lines = [
        f"RadiantGo against a synchronous service, {c['rounds']} rounds of each, alternating: "
        f"steady {c['rate']:g}/s for {c['seconds']:g} s, saturation "
        f"{c['saturation_requests']} requests over {c['connections']} connections "
        f"({c['cpus']} CPUs)",
    ]
    lines += [f"  {system:<9} {text}" for system, text in c["systems"].items()]
    for r in f["rounds"]:
        lines.append(f"  round {r['round']} {r['system']}")
        for phase, p in r["phases"].items():
            errors = f", errors {p['errors']}" if p["errors"] else ""
            # A closed loop has no schedule to lag behind: every request is due at once.
            lag = (
                f"; client lag p95 {_num(p['client_lag_ms']['p95'], '.0f')} ms"
                if phase.startswith(STEADY)
                else ""
            )
            lines += [
                f"    {phase:<17} {p['stored']:>5} stored of {p['requests']} in "
                f"{p['wall_s']:.1f} s = {_num(p['results_per_s'], '.0f')}/s; answer p50 "
                f"{_num(p['answer_ms']['p50'], '.1f')} p95 {_num(p['answer_ms']['p95'], '.1f')}"
                f" ms{lag}{errors}",
                f"      CPU ms each {_num(p['cpu_ms_per_result'])} "
                f"({_groups(p['cpu_ms_per_result_by_group'])}); less the background "
                f"{_num(p['cpu_ms_per_result_less_background'])} "
                f"(idle cores before: {_groups(p['background_cores'])})",
                f"      not counted, cores: {_groups(p['cores_not_counted'])}",
            ]
    lines.append(
        "  medians over rounds: CPU ms per stored result (by group; less the shared"
        " servers' background), stored results/s"
    )
    for phase in PHASES:
        for system in SYSTEMS:
            m = f["medians"].get(system, {}).get(phase)
            if m is not None:
                lines.append(
                    f"    {phase:<17} {system:<9} {_num(m['cpu_ms_per_result']):>6} ms "
                    f"({_groups(m['cpu_ms_per_result_by_group'])}; "
                    f"{_num(m['cpu_ms_per_result_less_background'])}), "
                    f"{_num(m['results_per_s'], '.0f')}/s"
                )
        ratio = f["ratios"].get(phase)
        if ratio is not None:
            lines.append(
                f"    {'':<17} RadiantGo/sync: CPU {_num(ratio['cpu_ms_per_result'])}x "
                f"({_num(ratio['cpu_ms_per_result_less_background'])}x less the background), "
                f"results/s {_num(ratio['results_per_s'])}x"
            )
    lines += [f"  goal {goal}: {verdict}" for goal, verdict in f["goals"].items()]
    lines.append(
        f"  (RabbitMQ, Redis and PostgreSQL are the machine's servers: all their CPU is "
        f"counted, and beside it the CPU less their idle use just before; '{OTHER}' is "
        "the rest of the machine, not counted)"
    )
    return "\n".join(lines)


def main() -> None:
    parser = command_line(__doc__)
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each system")
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds of each steady loop")
    parser.add_argument("--rate", type=float, default=60.0, help="steady requests/s")
    parser.add_argument(
        "--saturation-requests", type=int, default=2000, help="requests of each saturation phase"
    )
    parser.add_argument(
        "--connections", type=int, default=64, help="connections of the saturation closed loop"
    )
    parser.add_argument("--dsn", default=DEFAULT_DSN, help="PostgreSQL: the database to create")
    parser.add_argument(
        "--redis-url", default=BENCH_REDIS_URL, help="RadiantGo's Redis database (flushed)"
    )
    args = parser.parse_args()
    figures = run(
        args.rounds,
        args.seconds,
        args.rate,
        args.saturation_requests,
        args.connections,
        args.dsn,
        args.redis_url,
    )
    publish(report, figures, args.json)


if __name__ == "__main__":
    main()
