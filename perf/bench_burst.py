"""A burst at 10x the spec's peak: --seconds of open loop at --creates creates/s
plus --updates status updates/s, then measuring on until the backlog drains.

    make bench-burst                           # 60 s at 100 + 300/s
    make bench-overload SUSTAINABLE=160        # 60 s at twice 160 jobs/s
    python -m perf.bench_burst --seconds 10 --creates 20 --updates 60 --plot /tmp/burst.png
    python -m perf.bench_burst --seconds 30 --overload 160 --plot /tmp/overload.png

What it checks (issue 22), at 10x the spec's peak: accept p95 from each
request's due time within the spec's targets (creates < 200 ms, updates
< 100 ms), 0 errors of any kind, every job finished within 5 s of the load's
end, and at most 4.5 ms of CPU per job end to end (every process).

With --overload R, R being the jobs/s this machine sustains (creates and
updates as 1 to 3, as the spec's peak), it offers 2R and checks graceful
overload instead: every answer (202, or 503 `overloaded` shed at the door)
within 50 ms p95 from its due time; goodput (jobs finished per second of the
load) at least 90 % of R; nothing accepted lost (every accepted job finished);
a Retry-After on every 503. A 503 `queue-full` (a queue past its bound) is
backpressure too, counted with the 503s.

1. an isolated stack (perf.harness), its rate limits raised; BOOKED bookings
   inserted directly, one per update, so that each depart is valid and
   departs its booking once; a few unmeasured requests of each kind.
2. the load: a fixed schedule, request i of a kind due at t0 + i / rate,
   however slowly the answers come, sent by SENDERS threads each holding one
   keep-alive http.client connection. A request sent after its due time
   (every sender awaiting an answer, or the client short of CPU) records that
   lag: with a small lag the client was not the bottleneck. Accept latency is
   from send to answer, and from the due time (lag included): the goal is
   judged on the latter, since a lag with every connection busy is the
   ingress answering slower than the schedule sends.
3. beside it, every SAMPLE_S: the stack's queue depths (ready messages, by a
   passive queue_declare), and the workers' job-finished notices (Redis
   pub/sub) with their times.
4. after the schedule: measuring on until every accepted job has finished
   (its notice; past an empty queue, its job over HTTP), bounded by
   --drain-timeout. The drain time runs from the schedule's end to the last
   job finishing. Then every accepted job is read over HTTP (GET
   /api/jobs/{id}) for its final state: the job record, wherever the
   ingress keeps it, is the judge, not the notices.
5. CPU of each process group (perf.profiling) from the first request to the
   last job finished: CPU ms per accepted job, end to end. RabbitMQ and Redis
   are the machine's own, and "other" is whatever else ran meanwhile.

Everything is on 127.0.0.1; every loop is bounded by the schedule's length,
--drain-timeout or REQUEST_TIMEOUT_S.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

from core import monitoring
from core.jobs import FINISHED
from perf.burst_report import (
    OVERLOAD_FACTOR,
    OVERLOADED,
    UPDATES_PER_CREATE,
    report,
    stack_cpu_ms_per_job,
)
from perf.harness import (
    BODY,
    TRANSITION,
    command_line,
    isolated_stack,
    percentiles,
    publish,
    seed_bookings,
)
from perf.profiling import cpu_figures, cpu_snapshot, stack_processes
from perf.scheduled_load import (
    ACCEPTED,
    CREATE,
    SENDERS,
    SHOWN_QUEUES,
    START_DELAY_S,
    UNAVAILABLE,
    UPDATE,
    Answer,
    DepthSampler,
    FinishedNotices,
    final_states,
    job_id,
    job_states,
    lag_figures,
    offer,
    queue_settings,
    schedule,
    warm_up,
)

WARM_UP = 20  # unmeasured requests of each kind
HTTP_CHECK_EVERY_S = 1.0  # during the drain, past empty queues


def overload_rates(sustainable: float) -> dict[str, float]:
    """OVERLOAD_FACTOR times `sustainable` jobs/s, as creates and updates 1 to 3."""
    offered = OVERLOAD_FACTOR * sustainable
    creates = offered / (1 + UPDATES_PER_CREATE)
    return {CREATE: round(creates, 2), UPDATE: round(offered - creates, 2)}


# -- the figures (pure functions of what was recorded) -----------------------------------


def _is_error(answer: Answer) -> bool:
    return answer.status != ACCEPTED


def per_second(answers: list[Answer]) -> list[dict[str, Any]]:
    """Per second of send time: requests sent, accepted, accept latency
    p50/p95/max (ms) of the accepted, 503s, other errors, and the largest lag."""
    buckets: dict[int, list[Answer]] = {}
    for answer in answers:
        buckets.setdefault(int(answer.sent), []).append(answer)
    rows = []
    for second in range(max(buckets, default=-1) + 1):
        mine = buckets.get(second, [])
        ok = [a.latency_ms for a in mine if a.status == ACCEPTED]
        p = percentiles(ok)
        unavailable = sum(1 for a in mine if a.status == UNAVAILABLE)
        answered = [a.latency_ms for a in mine if a.status in (ACCEPTED, UNAVAILABLE)]
        rows.append(
            {
                "t": second,
                "sent": len(mine),
                "accepted": len(ok),
                "p50_ms": p["p50"],
                "p95_ms": p["p95"],
                "max_ms": None if p["max"] is None else round(p["max"], 2),
                "answer_p95_ms": percentiles(answered)["p95"],  # 202s and 503s alike
                "unavailable": unavailable,
                "shed": sum(1 for a in mine if a.problem == OVERLOADED),
                "other_errors": sum(1 for a in mine if _is_error(a)) - unavailable,
                "max_lag_ms": round(max((a.sent - a.due for a in mine), default=0) * 1000, 2),
            }
        )
    return rows


def finished_per_second(times: list[float]) -> list[int]:
    """Jobs finished in each second since t0, from their finish times."""
    counts = Counter(int(t) for t in times if t >= 0)
    return [counts.get(s, 0) for s in range(max(counts, default=-1) + 1)]


def kind_figures(answers: list[Answer], rate: float) -> dict[str, Any]:
    """One kind's figures: offered, sent and accepted rates; latency; errors by status."""
    if not answers:
        return {"offered_rate": rate, "requests": 0}
    span = max(a.sent for a in answers) + 1 / rate  # == count / rate when on schedule
    accepted = [a for a in answers if a.status == ACCEPTED]
    errors = Counter(str(a.status) for a in answers if _is_error(a))
    unavailable = [a for a in answers if a.status == UNAVAILABLE]
    return {
        "offered_rate": rate,
        "requests": len(answers),
        "sent_rate": round(len(answers) / span, 1),
        "accepted_rate": round(len(accepted) / span, 1),
        "accepted": len(accepted),
        "accept_ms": percentiles([a.latency_ms for a in accepted]),
        "accept_from_due_ms": from_due_ms(accepted),
        "unavailable": len(unavailable),
        "unavailable_with_retry_after": sum(1 for a in unavailable if a.retry_after),
        "shed": sum(1 for a in unavailable if a.problem == OVERLOADED),
        "answer_from_due_ms": answer_from_due_ms(answers),
        "other_errors": sum(errors.values()) - len(unavailable),
        "errors_by_status": dict(errors),
    }


def from_due_ms(answers: list[Answer]) -> dict[str, Any]:
    """Accept latency counted from the due time: with the lag, what a caller on the
    schedule would have waited (a lagging client's wait is the server's slowness
    too, when every connection was waiting on an answer)."""
    return percentiles(
        [(a.sent - a.due) * 1000 + a.latency_ms for a in answers if a.status == ACCEPTED]
    )


def answer_from_due_ms(answers: list[Answer]) -> dict[str, Any]:
    """Every answer's latency from its due time, 202s and 503s alike: how long a
    caller waited to learn whether to come back (the overload goal)."""
    return percentiles(
        [
            (a.sent - a.due) * 1000 + a.latency_ms
            for a in answers
            if a.status in (ACCEPTED, UNAVAILABLE)
        ]
    )


def goodput(finish_times: list[float], seconds: float) -> float | None:
    """Jobs finished per second of the load (the work done while it was offered)."""
    return round(sum(1 for t in finish_times if t <= seconds) / seconds, 1) if seconds else None


def peak_in_flight(answers: list[Answer]) -> int:
    """The most requests awaiting an answer at once: at SENDERS, every connection
    was busy and the next request waited in the client (that lag is the server's)."""
    events = sorted(
        [(a.sent, 1) for a in answers] + [(a.sent + a.latency_ms / 1000, -1) for a in answers],
        key=lambda e: (e[0], e[1]),  # an answer before a send at the same instant
    )
    peak = now = 0
    for _, step in events:
        now += step
        peak = max(peak, now)
    return peak


def drain_figures(
    finish_times: list[float], seconds: float, unfinished: int
) -> dict[str, float | None]:
    """The drain (schedule end -> last job finished; None while jobs are unfinished)
    and the jobs finished per second during the load and during the drain."""
    last = max(finish_times, default=None)
    during_load = sum(1 for t in finish_times if t <= seconds)
    during_drain = len(finish_times) - during_load
    drain = None if unfinished or last is None else max(0.0, last - seconds)
    return {
        "drain_s": None if drain is None else round(drain, 2),
        "last_finished_s": None if last is None else round(last, 2),
        "finished_per_s_during_load": round(during_load / seconds, 1) if seconds else None,
        # (not over a drain shorter than a second: a few jobs over an instant)
        "finished_per_s_during_drain": round(during_drain / drain, 1)
        if drain and drain >= 1.0
        else None,
    }


def peak_depths(samples: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Each queue's largest sampled depth and when."""
    peaks: dict[str, dict[str, float]] = {}
    for sample in samples:
        for q, depth in sample["depths"].items():
            if depth > peaks.get(q, {"depth": -1})["depth"]:
                peaks[q] = {"depth": depth, "t": round(sample["t"], 1)}
    return peaks


# -- the run ---------------------------------------------------------------------------


def drain(stack, accepted: list[str], notices, sampler, deadline: float) -> int:
    """Wait until every accepted job has finished, or `deadline` (perf_counter).
    Past empty queues, the jobs without a notice are read over HTTP (a lost
    notice must not hold the wait to its deadline). Returns how many were."""
    waiting = {job_id(path): path for path in accepted}
    checked = 0
    last_check = 0.0
    while time.perf_counter() < deadline:
        waiting = {j: p for j, p in waiting.items() if j not in notices.seen}
        if not waiting:
            break
        depths = sampler.latest()
        queues_empty = depths is not None and not any(depths.values())
        if queues_empty and time.perf_counter() - last_check >= HTTP_CHECK_EVERY_S:
            last_check = time.perf_counter()
            states = job_states(stack.base, stack.operator, list(waiting.values()))
            checked += len(states)
            for path, state in states.items():
                if state in FINISHED:
                    notices.mark(job_id(path))
        time.sleep(0.1)
    return checked


def run(
    seconds: float = 60.0,
    creates: float = 100.0,
    updates: float = 300.0,
    drain_timeout: float = 600.0,
    senders: int = SENDERS,
    sustainable: float | None = None,
) -> dict[str, Any]:
    """The run; with `sustainable` (jobs/s), `creates` and `updates` are the
    overload's (overload_rates) and the figures are judged by overload_goals."""
    rates = {CREATE: creates, UPDATE: updates}
    plan = schedule(rates, seconds)
    with isolated_stack() as stack:
        cfg = stack.settings
        refs = seed_bookings(stack.services.db, int(updates * seconds) + WARM_UP, stack.customer_id)
        warm_up(stack, refs[:WARM_UP])
        refs = refs[WARM_UP:]
        create_body = json.dumps(BODY).encode()
        depart_body = json.dumps(TRANSITION).encode()
        create_headers = {**stack.customer, "Content-Type": "application/json"}
        depart_headers = {**stack.operator, "Content-Type": "application/json"}

        def request_for(kind: str, i: int):
            if kind == CREATE:
                return "/api/bookings", create_body, create_headers
            return f"/api/bookings/{refs[i]}/depart", depart_body, depart_headers

        processes = stack_processes(stack)
        t0 = time.perf_counter() + START_DELAY_S
        notices = FinishedNotices(stack.services.redis, t0)
        sampler = DepthSampler(stack, t0)
        notices.start()
        sampler.start()
        cpu_before, client_before = cpu_snapshot(processes, []), time.process_time()
        try:
            answers = offer(stack.base, plan, request_for, t0, senders=senders)
            load_end = time.perf_counter() - t0
            client_cpu = time.process_time() - client_before
            accepted = [a.job for a in answers if a.job]
            deadline = t0 + seconds + drain_timeout
            checked_over_http = drain(stack, accepted, notices, sampler, deadline)
            cpu_after = cpu_snapshot(processes, [])
            cpu_wall = time.perf_counter() - t0
        finally:
            sampler.stop()
            notices.stop()
        verify_started = time.perf_counter()
        # The drain's deadline, or a minute more to read a drained backlog's jobs.
        states = final_states(
            stack.base, stack.operator, accepted, max(deadline, verify_started + 60)
        )
        verify_s = time.perf_counter() - verify_started
        shed_by_reason: Counter[str] = Counter()  # every ingress process's, flushed by now
        for by_reason in monitoring.shed_counters(stack.services.redis).values():
            shed_by_reason.update(by_reason)
        stack_info = {
            "ingress": f"gunicorn gthread {cfg.WEB_WORKERS} x {cfg.WEB_THREADS}, shedding "
            + ("on" if cfg.OVERLOAD_SHEDDING else "off"),
            "worker": f"celery {cfg.WORKER_POOL} x{cfg.WORKER_CONCURRENCY}",
            "queue_settings": queue_settings(cfg),
        }
    return burst_figures(
        rates=rates,
        seconds=seconds,
        answers=answers,
        states={job_id(path): state for path, state in states.items()},
        finished_at=notices.seen,
        samples=sampler.samples,
        cpu=cpu_figures(cpu_before, cpu_after, cpu_wall, len(accepted) or None),
        client_cpu_s=client_cpu,
        load_end=load_end,
        extra={
            "stack": stack_info,
            "senders": senders,
            "drain_timeout_s": drain_timeout,
            "sampler_errors": dict(sampler.errors),
            "checked_over_http_in_drain": checked_over_http,
            "verify_s": round(verify_s, 1),
            "sustainable": sustainable,
            "shed_by_reason": dict(shed_by_reason),
            "shedding": "on" if cfg.OVERLOAD_SHEDDING else "off",
        },
    )


def burst_figures(
    *,
    rates: dict[str, float],
    seconds: float,
    answers: list[Answer],
    states: dict[str, str],
    finished_at: dict[str, float],
    samples: list[dict[str, Any]],
    cpu: dict[str, Any],
    client_cpu_s: float,
    load_end: float,
    extra: dict[str, Any],
) -> dict[str, Any]:
    """The figures of a run from what it recorded: the answers, each accepted job's
    final state (job id -> state), when each finished (job id -> seconds since t0),
    the depth samples, the CPU figures (perf.profiling.cpu_figures)."""
    accepted = [job_id(a.job) for a in answers if a.job]
    finished = [j for j in accepted if states.get(j) in FINISHED]
    finish_times = [finished_at[j] for j in finished if j in finished_at]
    unfinished = len(accepted) - len(finished)
    by_kind = {
        kind: kind_figures([a for a in answers if a.kind == kind], rate)
        for kind, rate in rates.items()
    }
    return {
        "seconds": seconds,
        "offered": rates,
        **extra,
        "kinds": by_kind,
        "accept_ms": percentiles([a.latency_ms for a in answers if a.status == ACCEPTED]),
        "accept_from_due_ms": from_due_ms(answers),
        "answer_from_due_ms": answer_from_due_ms(answers),
        "requests": len(answers),
        "accepted": len(accepted),
        "unavailable": sum(k.get("unavailable", 0) for k in by_kind.values()),
        "shed": sum(k.get("shed", 0) for k in by_kind.values()),
        "unavailable_with_retry_after": sum(
            k.get("unavailable_with_retry_after", 0) for k in by_kind.values()
        ),
        "goodput_per_s": goodput(finish_times, seconds),
        "other_errors": sum(k.get("other_errors", 0) for k in by_kind.values()),
        "load_end_s": round(load_end, 2),
        "client": {
            "lag_ms": lag_figures(answers),
            "peak_in_flight": peak_in_flight(answers),
            "cpu_ms_per_request": round(1000 * client_cpu_s / len(answers), 3) if answers else None,
            "cores": round(client_cpu_s / load_end, 2) if load_end > 0 else None,
        },
        "jobs": {
            "accepted": len(accepted),
            "states": dict(Counter(states.get(j, "unknown") for j in accepted)),
            "unfinished": unfinished,
            "finish_times_known": len(finish_times),  # by notice, or found over HTTP
        },
        **drain_figures(finish_times, seconds, unfinished),
        "peak_depths": peak_depths(samples),
        "cpu": cpu,
        "stack_cpu_ms_per_job": stack_cpu_ms_per_job(cpu),
        "series": {
            "per_second": per_second(answers),
            "depths": [
                {"t": round(s["t"], 2), "depths": {q: s["depths"].get(q, 0) for q in SHOWN_QUEUES}}
                for s in samples
            ],
            "finished_per_second": finished_per_second(finish_times),
        },
    }


def main() -> None:
    parser = command_line(__doc__)
    parser.add_argument("--seconds", type=float, default=60.0, help="open-loop seconds")
    parser.add_argument("--creates", type=float, default=100.0, help="creates/s offered")
    parser.add_argument("--updates", type=float, default=300.0, help="status updates/s offered")
    parser.add_argument(
        "--drain-timeout", type=float, default=600.0, help="seconds after the load to drain"
    )
    parser.add_argument("--senders", type=int, default=SENDERS, help="client threads")
    parser.add_argument(
        "--overload",
        type=float,
        metavar="R",
        help=f"offer {OVERLOAD_FACTOR:g}x R jobs/s (R: what this machine sustains; creates and "
        "updates 1 to 3) and judge graceful overload (overrides --creates, --updates)",
    )
    parser.add_argument("--plot", type=Path, help="draw queue depth and accept latency (PNG)")
    args = parser.parse_args()
    creates, updates = args.creates, args.updates
    if args.overload:
        rates = overload_rates(args.overload)
        creates, updates = rates[CREATE], rates[UPDATE]
    figures = run(
        args.seconds, creates, updates, args.drain_timeout, args.senders, sustainable=args.overload
    )
    publish(report, figures, args.json)
    if args.plot:
        from perf.plots import plot_burst

        plot_burst(figures, args.plot)
        print(f"plot: {args.plot}")


if __name__ == "__main__":
    main()
