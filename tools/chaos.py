"""`make cluster-chaos`: nodes of the cluster killed under load, one after another.

    python -m tools.chaos              # the cluster of `make cluster` (started if it is not)

Under an open-loop load of creates and departs at the spec's peak (10 + 30/s),
sent to nginx: stop the RabbitMQ node leading the interactive queues, SIGKILL a
Redis lock master, SIGKILL an ingress process group (supervisord brings it
back); each comes back before the next. Every request carries an
Idempotency-Key and is sent again with it when refused (503, 502, a broken
connection), as a client should: a request the cluster took whose answer was
lost names the same job when sent again.

Then the verdict: every 202 ends succeeded; every create has its one booking
and no booking exists that no 202 named (none lost, none twice); every depart
is applied once (its booking at version 2, one DEPARTED event); /health showed
each fault's degraded service while it lasted and was healthy again after.
One line per fault: what was done, how long it was down, the first answers
refused meanwhile, accept latency during it, what /health said.

Everything is on 127.0.0.1; every loop is bounded by the plan's length or a deadline.
"""

from __future__ import annotations

import http.client
import itertools
import json
import os
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import click

from core import queues
from core.jobs import SUCCEEDED
from core.lifecycle import DEPARTED
from perf.scheduled_load import problem_type, schedule
from tools import cluster

CREATE, DEPART = "create", "depart"
ACCEPTED = 202
RETRIED = {429, 502, 503, 504}  # refused for now: sent again, same Idempotency-Key
IN_PROGRESS = b"idempotency-key-in-progress"  # a 409 that is "for now" too
RETRY_AFTER_MAX_S = 2.0
RETRY_DEFAULT_S = 0.5
REQUEST_TIMEOUT_S = 30.0
SENDERS = 64
# gunicorn closes a keep-alive connection idle for 2 s: a sender idle longer
# than this connects anew, or its POST would meet a closed socket (a client
# artifact, not a refusal).
IDLE_RECONNECT_S = 1.0
HEALTH_EVERY_S = 0.5
SETTLE_S = 5.0  # after a fault is mended, still counted as its time
GIVE_UP_S = 90.0  # past the load's end, a request still refused is given up
FINISH_TIMEOUT_S = 180.0  # for every accepted job to finish after the load
SPEC_PEAK = {CREATE: 10.0, DEPART: 30.0}
BODY = {"origin": "DEL", "destination": "BLR", "pieces": 5, "weight_kg": 125.5}
DEPART_BODY = {"location": "DEL", "notes": "chaos"}


@dataclass
class Outcome:
    """One request of the plan; times in seconds since t0."""

    kind: str
    due: float
    first_status: int | str = ""  # the first answer: HTTP status or exception name
    first_problem: str = ""  # its problem type (the last segment), if it was one
    first_ms: float = 0.0
    attempts: int = 0
    status: int | str = ""  # the last answer
    job: str | None = None  # Location of the accepted job
    ref_id: str | None = None  # the booking a depart is for


@dataclass
class Fault:
    """A fault: `inject` breaks something and says what; `mend` brings it back and
    returns once it answers again (seconds since t0 are recorded around them)."""

    name: str
    inject: Callable[[], str]
    mend: Callable[[], None]
    down_s: float
    degrades: str | None  # the /health service that should show it, if any
    started: float = 0.0
    mended: float = 0.0
    what: str = ""


@dataclass
class Plan:
    rates: dict[str, float] = field(default_factory=lambda: dict(SPEC_PEAK))
    lead_s: float = 10.0  # load before the first fault (the baseline)
    gap_s: float = 10.0  # between a fault's end and the next
    tail_s: float = 10.0  # load after the last


# -- faults ------------------------------------------------------------------------------


def leading_node(leaders: dict[str, str]) -> tuple[str, int]:
    """The node leading most of the interactive queues (those the load fills), and how many."""
    ours = Counter(leaders.get(queues.queue_name(q, "")) for q in queues.INTERACTIVE)
    ours.pop(None, None)
    if not ours:
        raise cluster.ClusterError("no node leads the work queues: are they declared?")
    return ours.most_common(1)[0]


def stop_rabbit_leader(layout: cluster.Layout, down_s: float) -> Fault:
    chosen: dict[str, int] = {}

    def inject() -> str:
        node, led = leading_node(cluster.queue_leaders(layout))
        chosen["i"] = layout.nodes.index(node)
        cluster.stop_node(layout, chosen["i"])
        return f"stopped RabbitMQ {node} (leading {led}/{len(queues.INTERACTIVE)} work queues)"

    def mend() -> None:
        cluster.start_node(layout, chosen["i"])
        cluster.wait_for_node(layout, chosen["i"])

    return Fault("rabbitmq-node", inject, mend, down_s, "rabbitmq")


def kill_lock_master(layout: cluster.Layout, down_s: float) -> Fault:
    port = layout.lock_ports[0]

    def inject() -> str:
        cluster.kill_pid(cluster.lock_master_pid(layout, port), signal.SIGKILL)
        return f"SIGKILLed lock master :{port}"

    return Fault(
        "lock-master", inject, lambda: cluster.start_lock_master(layout, port), down_s, "locks"
    )


def kill_ingress_group(layout: cluster.Layout) -> Fault:
    port = layout.ingress_ports[0]

    def inject() -> str:
        pid = cluster.ingress_pid(layout, 0)
        os.killpg(pid, signal.SIGKILL)  # supervisord made it a group leader: its workers too
        return f"SIGKILLed ingress group {layout.ingress_name(0)} (:{port}, pgid {pid})"

    def mend() -> None:  # supervisord restarts it; wait until it answers
        if not cluster.stack._wait_healthy(f"http://127.0.0.1:{port}", lambda: True, 60):
            raise cluster.ClusterError(f"{layout.ingress_name(0)} did not come back")

    return Fault("ingress-group", inject, mend, 0.0, None)


def full_faults(layout: cluster.Layout, down_s: float = 15.0) -> list[Fault]:
    return [
        stop_rabbit_leader(layout, down_s),
        kill_lock_master(layout, down_s),
        kill_ingress_group(layout),
    ]


# -- the load ----------------------------------------------------------------------------


def _post(conn, path: str, body: bytes, headers: dict[str, str]):
    conn.request("POST", path, body=body, headers=headers)
    response = conn.getresponse()
    return response, response.read()


def offer(
    base: str,
    plan: list[tuple[float, str, int]],
    request_for: Callable[[str, int], tuple[str, bytes, dict[str, str]]],
    t0: float,
    give_up_at: float,
) -> list[Outcome]:
    """Every request at t0 + due; each refused one sent again (same key) until
    accepted or `give_up_at` (perf_counter)."""
    url = urlsplit(base)
    outcomes: list[Outcome] = []
    claim = itertools.count()

    def sender() -> None:
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=REQUEST_TIMEOUT_S)
        mine = []
        last_used = time.perf_counter()
        for n in iter(claim.__next__, None):
            if n >= len(plan):
                break
            due, kind, i = plan[n]
            path, body, headers = request_for(kind, i)
            headers = {**headers, "Idempotency-Key": uuid.uuid4().hex}
            outcome = Outcome(kind, due, ref_id=path.split("/")[3] if kind == DEPART else None)
            delay = t0 + due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            while True:
                if time.perf_counter() - last_used > IDLE_RECONNECT_S:
                    conn.close()
                sent = time.perf_counter()
                wait = RETRY_DEFAULT_S
                try:
                    response, payload = _post(conn, path, body, headers)
                    status: int | str = response.status
                    if status == 409 and IN_PROGRESS in payload:
                        status = "409 in progress"
                    wait = min(float(response.getheader("Retry-After") or wait), RETRY_AFTER_MAX_S)
                    if status == ACCEPTED:
                        outcome.job = response.getheader("Location")
                except (OSError, http.client.HTTPException) as exc:
                    conn.close()
                    status, payload = type(exc).__name__, b""
                last_used = time.perf_counter()
                outcome.attempts += 1
                outcome.status = status
                if outcome.attempts == 1:
                    outcome.first_status = status
                    outcome.first_problem = (status != ACCEPTED and problem_type(payload)) or ""
                    outcome.first_ms = (time.perf_counter() - sent) * 1000
                retry = status not in (ACCEPTED,) and (isinstance(status, str) or status in RETRIED)
                if not retry or time.perf_counter() + wait > give_up_at:
                    break
                time.sleep(wait)
            mine.append(outcome)
        conn.close()
        outcomes.extend(mine)

    threads = [threading.Thread(target=sender) for _ in range(SENDERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


class HealthWatch(threading.Thread):
    """/health every HEALTH_EVERY_S: (t, overall status, {service: status})."""

    def __init__(self, base: str, t0: float):
        super().__init__(daemon=True)
        self.base, self.t0 = urlsplit(base), t0
        self.samples: list[tuple[float, str, dict[str, str]]] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(HEALTH_EVERY_S):
            conn = http.client.HTTPConnection(self.base.hostname, self.base.port, timeout=3)
            at = time.perf_counter() - self.t0
            try:
                conn.request("GET", "/health")
                body = json.loads(conn.getresponse().read())
                services = {k: v["status"] for k, v in body.get("services", {}).items()}
                self.samples.append((at, body.get("status", "?"), services))
            except (OSError, http.client.HTTPException, ValueError) as exc:
                self.samples.append((at, type(exc).__name__, {}))
            finally:
                conn.close()

    def stop(self) -> None:
        self.stopping.set()
        self.join(10)


MEND_ALLOWANCE_S = 12.0  # planned for each fault's mending (a node's restart takes 5-10 s)


def fault_times(faults: list[Fault], plan: Plan) -> tuple[list[float], float]:
    """When each fault is due (seconds since t0), and the load's length."""
    due, at = [], plan.lead_s
    for fault in faults:
        due.append(at)
        at += fault.down_s + MEND_ALLOWANCE_S + plan.gap_s
    return due, at - plan.gap_s + plan.tail_s


def run_faults(faults: list[Fault], due: list[float], t0: float, errors: list[str]) -> None:
    """Each fault at its time (or once the one before is mended): inject, stay down, mend."""
    for fault, at in zip(faults, due, strict=True):
        time.sleep(max(0.0, t0 + at - time.perf_counter()))
        fault.started = time.perf_counter() - t0
        try:
            fault.what = fault.inject()
            time.sleep(fault.down_s)
            fault.mend()
        except Exception as exc:  # a fault not made or not mended fails the run
            errors.append(f"{fault.name}: {type(exc).__name__}: {exc}")
        fault.mended = time.perf_counter() - t0


# -- the run -----------------------------------------------------------------------------


def connect_database(settings):
    from core.db import connect_mongo
    from tools.stack import database_uri

    return connect_mongo(cluster.replace(settings, MONGODB_URI=database_uri(settings)))


def run(layout: cluster.Layout, faults: list[Fault], plan: Plan) -> dict[str, Any]:
    """Load, faults and verification against a running cluster: the figures."""
    from core.db import database
    from perf.harness import create_callers, seed_bookings

    settings = cluster.cluster_settings(layout)
    due, seconds = fault_times(faults, plan)
    requests = schedule(plan.rates, seconds)
    client = connect_database(settings)
    try:
        db = database(client)
        caller = create_callers(db)
        refs = seed_bookings(db, int(plan.rates[DEPART] * seconds) + 1, caller["customer_id"])
        create = json.dumps(BODY).encode()
        depart = json.dumps(DEPART_BODY).encode()
        json_type = {"Content-Type": "application/json"}
        customer = {**json_type, "Authorization": f"Bearer {caller['customer_key']}"}
        operator = {**json_type, "Authorization": f"Bearer {caller['operator_key']}"}

        def request_for(kind: str, i: int):
            if kind == CREATE:
                return "/api/bookings", create, customer
            return f"/api/bookings/{refs[i]}/depart", depart, operator

        t0 = time.perf_counter() + 0.5
        errors: list[str] = []
        health = HealthWatch(layout.base, t0)
        health.start()
        faulting = threading.Thread(target=run_faults, args=(faults, due, t0, errors))
        faulting.start()
        try:
            outcomes = offer(layout.base, requests, request_for, t0, t0 + seconds + GIVE_UP_S)
        finally:
            faulting.join()
        load_end = time.perf_counter() - t0
        states = finished_states(layout.base, operator, [o.job for o in outcomes if o.job])
        health.stop()
        checked = verify_bookings(db, caller["customer_id"], outcomes, set(refs))
    finally:
        client.close()
    return {
        "outcomes": outcomes,
        "faults": faults,
        "health": health.samples,
        "states": states,
        "errors": errors,
        "seconds": seconds,
        "load_end": load_end,
        **checked,
    }


def finished_states(base: str, headers: dict[str, str], paths: list[str]) -> dict[str, str]:
    """Every accepted job's state, read again until all have finished or FINISH_TIMEOUT_S."""
    from perf.scheduled_load import final_states

    return final_states(base, headers, paths, time.perf_counter() + FINISH_TIMEOUT_S)


def verify_bookings(
    db, customer_id: str, outcomes: list[Outcome], seeded: set[str]
) -> dict[str, Any]:
    """What MongoDB holds: the run's customer's bookings against its accepted
    creates, and the departed bookings' versions and DEPARTED events."""
    create_jobs = {o.job.rsplit("/", 1)[-1] for o in outcomes if o.kind == CREATE and o.job}
    made = [
        b
        for b in db.bookings.find({"customer_id": customer_id}, {"job_id": 1, "ref_id": 1})
        if b["ref_id"] not in seeded
    ]
    per_job = Counter(b["job_id"] for b in made if b["job_id"] in create_jobs)
    departed = {o.ref_id for o in outcomes if o.kind == DEPART and o.job}
    docs = {
        b["ref_id"]: b
        for b in db.bookings.find(
            {"ref_id": {"$in": sorted(departed)}}, {"ref_id": 1, "status": 1, "version": 1}
        )
    }
    events = Counter(
        e["booking_id"]
        for e in db.booking_events.find(
            {"booking_id": {"$in": sorted(seeded)}, "status": DEPARTED}, {"booking_id": 1}
        )
    )
    return {
        "creates_without_booking": len(create_jobs - set(per_job)),
        "creates_booked_twice": sum(1 for n in per_job.values() if n > 1),
        "bookings_without_202": sum(1 for b in made if b.get("job_id") not in create_jobs),
        "departs_not_applied": sum(
            1 for r in departed if docs.get(r, {}).get("status") != DEPARTED
        ),
        "departs_applied_twice": sum(1 for r in departed if docs.get(r, {}).get("version", 0) > 2)
        + sum(1 for n in events.values() if n > 1),
        "departed_without_202": sum(1 for r in seeded - departed if events.get(r)),
    }


# -- the verdict -------------------------------------------------------------------------


def _p(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def fault_figures(result: dict[str, Any], fault: Fault) -> dict[str, Any]:
    """What one fault cost: the first answers refused while it lasted (and
    SETTLE_S after), their span, accept latency then, what /health said."""
    end = fault.mended + SETTLE_S
    # From a second before: the requests in flight when it struck count too.
    during = [o for o in result["outcomes"] if fault.started - 1.0 <= o.due < end]
    refused = [o for o in during if o.first_status != ACCEPTED]
    samples = [(t, overall, svc) for t, overall, svc in result["health"] if fault.started <= t]
    in_fault = [x for x in samples if x[0] < fault.mended]
    shown = (
        sorted({svc.get(fault.degrades, "-") for _, _, svc in in_fault}) if fault.degrades else []
    )
    healthy_again = next(
        (
            t - fault.mended
            for t, overall, _ in samples
            if t >= fault.mended and overall == "healthy"
        ),
        None,
    )
    after = [svc for t, _, svc in samples if t >= fault.mended]
    unwell = Counter(name for svc in after for name, status in svc.items() if status != "healthy")
    return {
        "unwell_after": dict(unwell),  # service -> samples not healthy after the mend
        "down_s": fault.mended - fault.started,
        "requests": len(during),
        "refused": len(refused),
        "refused_by": dict(Counter(f"{o.first_status} {o.first_problem}".strip() for o in refused)),
        "refusing_s": (max(o.due for o in refused) - min(o.due for o in refused)) if refused else 0,
        "p95_ms": _p([o.first_ms for o in during], 0.95),
        "max_ms": max((o.first_ms for o in during), default=0.0),
        "health_during": sorted({overall for _, overall, _ in in_fault}),
        "service_during": shown,
        "healthy_again_s": healthy_again,
    }


def verdict(result: dict[str, Any]) -> tuple[bool, list[str]]:
    """The report's lines, and whether every promise held."""
    outcomes = result["outcomes"]
    first = min((f.started for f in result["faults"]), default=result["load_end"])
    baseline = [o.first_ms for o in outcomes if o.due < first]
    accepted = [o for o in outcomes if o.job]
    not_accepted = Counter(str(o.status) for o in outcomes if not o.job)
    states = Counter(result["states"].values())
    lines = [
        f"load: {len(outcomes)} requests over {result['seconds']:.0f} s"
        f" ({', '.join(f'{k} {n}' for k, n in Counter(o.kind for o in outcomes).items())}),"
        f" accept p95 {_p(baseline, 0.95):.0f} ms before the first fault",
    ]
    problems = list(result["errors"])
    for fault in result["faults"]:
        f = fault_figures(result, fault)
        health = "/health " + "/".join(f["health_during"])
        if fault.degrades:
            health += f" ({fault.degrades} {'/'.join(f['service_during'])})"
            if set(f["service_during"]) <= {"healthy", "-"}:
                problems.append(f"{fault.name}: /health never showed {fault.degrades} degraded")
        again = f["healthy_again_s"]
        health += (
            f", healthy {again:.1f} s after"
            if again is not None
            else f", never healthy after (not healthy: {f['unwell_after']})"
        )
        if again is None:
            problems.append(f"{fault.name}: /health not healthy again")
        lines.append(
            f"{fault.name}: {fault.what}; down {f['down_s']:.1f} s;"
            f" {f['refused']}/{f['requests']} first answers refused"
            + (f" {f['refused_by']} over {f['refusing_s']:.1f} s" if f["refused"] else "")
            + f"; accept p95 {f['p95_ms']:.0f} ms, max {f['max_ms']:.0f} ms; {health}"
        )
    unfinished = len(accepted) - states.get(SUCCEEDED, 0)
    checks = {
        "accepted jobs not succeeded": unfinished,
        "requests never accepted": sum(not_accepted.values()),
        "creates without their booking": result["creates_without_booking"],
        "creates booked twice": result["creates_booked_twice"],
        "bookings no 202 named": result["bookings_without_202"],
        "departs not applied": result["departs_not_applied"],
        "departs applied twice": result["departs_applied_twice"],
        "departs applied without a 202": result["departed_without_202"],
    }
    problems += [f"{name}: {n}" for name, n in checks.items() if n]
    if not_accepted:
        problems.append(f"never accepted, last answers: {dict(not_accepted)}")
    if unfinished:
        problems.append(f"job states: {dict(states)}")
    retried = sum(1 for o in outcomes if o.attempts > 1)
    lines.append(
        f"jobs: {len(accepted)} accepted ({retried} after a refusal, same Idempotency-Key),"
        f" {states.get(SUCCEEDED, 0)} succeeded; bookings: none lost, none twice"
        if not problems
        else f"jobs: {len(accepted)} accepted, states {dict(states)}"
    )
    ok = not problems
    lines.append("verdict: PASS" if ok else "verdict: FAIL: " + "; ".join(problems))
    return ok, lines


@click.command()
@click.option(
    "--down", "down_s", default=15.0, show_default=True, help="Seconds each node stays down."
)
def main(down_s: float) -> None:
    """Kill nodes of `make cluster` under load at the spec's peak; print a line per fault."""
    layout = cluster.Layout()
    cluster.start(layout)
    if not cluster.wait_healthy(layout):
        raise cluster.ClusterError("the cluster's ingress does not answer")
    result = run(layout, full_faults(layout, down_s), Plan())
    ok, lines = verdict(result)
    click.echo("\n".join(lines))
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
