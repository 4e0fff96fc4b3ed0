"""Locust scenarios for RadiantGo: the spec's load, at its peak and at 10x.

    locust -f perf/locustfile.py --headless --host http://127.0.0.1:5000 \
        --scenario mixed --scale 10 --run-time 60s --ref-ids refs.txt

`make perf` (perf/run_perf.py) runs every scenario against an isolated stack and
writes the report; run this file by hand only against a stack whose rate limits
are raised (RATE_LIMIT_* settings), with a customer's and an operator's API key
(--customer-key, --operator-key or PERF_CUSTOMER_KEY, PERF_OPERATOR_KEY) and,
for `updates`/`mixed`, with a file of BOOKED ref_ids (one per line) that no
other run departs.

Creates and route searches send the customer's key, departs the operator's;
each user polls its jobs with the key that submitted them.

Scenarios (perf/scenarios.py SCENARIOS; rates at --scale 1, --scale multiplies them):
  create   POST /api/bookings at 10/s, each job polled to its end
  updates  POST /api/bookings/<ref>/depart at 30/s on bookings that exist, polled
  routes   GET /api/routes at 20/s, (route, day) pairs drawn with Zipf weights
  mixed    all three at once (the spec's peak: 10 creates/s + 30 updates/s)

Locust users are closed-loop. Each user runs at most one task per --period
seconds (constant_throughput) and a scenario starts rate x period users, spread
over one period, so the offered rate is known: users / period. A task that
outlasts the period (a slow accept, a job still running) delays that user's
next one, and the achieved rate (Locust's requests/s) falls below the offered
one: report both.

After its 202 every job is polled at GET /api/jobs/<id> as the API asks (after
each answer's Retry-After, 1 s; or every --poll-interval seconds) until it ends,
for at most --poll-timeout seconds. Two custom request types go into Locust's
stats beside the HTTP requests, named `create` and `depart`:
  E2E         accepted -> committed, from the job's own created_at/finished_at
              (the server's clock: exact whatever the polling interval)
  E2E-client  the POST sent -> the poll that saw the job finished (what a
              polling client waits: up to one poll interval more)
A failed or unfinished job is an E2E failure.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import random
import time
from datetime import UTC, datetime
from pathlib import Path

import gevent
from locust import FastHttpUser, LoadTestShape, constant_throughput, events, task
from locust.exception import StopUser

from perf.harness import TRANSITION
from perf.scenarios import (
    AIRPORTS,
    DEFAULT_POPULAR,
    SCENARIOS,
    ZipfRoutes,
    scenario_users,
)

log = logging.getLogger("perf")
DEFAULT_RETRY_AFTER_S = 1.0
JSON_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}


@events.init_command_line_parser.add_listener
def _arguments(parser) -> None:
    group = parser.add_argument_group("RadiantGo scenarios (perf/locustfile.py)")
    group.add_argument(
        "--scenario",
        choices=sorted(SCENARIOS),
        default="mixed",
        env_var="PERF_SCENARIO",
        help="which load to run",
    )
    group.add_argument(
        "--scale",
        type=float,
        default=1.0,
        env_var="PERF_SCALE",
        help="multiplies every rate (10: ten times the spec's peak)",
    )
    group.add_argument(
        "--period",
        type=float,
        default=3.0,
        env_var="PERF_PERIOD",
        help="seconds per task per user (users = rate x period)",
    )
    group.add_argument(
        "--ref-ids",
        default="",
        env_var="PERF_REF_IDS",
        help="file of BOOKED ref_ids (one a line) for the depart task",
    )
    group.add_argument(
        "--poll-interval",
        type=float,
        default=0.0,
        env_var="PERF_POLL_INTERVAL",
        help="seconds between polls of a job; 0: follow the answers' Retry-After",
    )
    group.add_argument(
        "--poll-timeout",
        type=float,
        default=30.0,
        env_var="PERF_POLL_TIMEOUT",
        help="seconds to poll a job before counting it unfinished",
    )
    group.add_argument(
        "--customer-key",
        default="",
        env_var="PERF_CUSTOMER_KEY",
        help="a customer's API key: creates, route searches",
    )
    group.add_argument(
        "--operator-key",
        default="",
        env_var="PERF_OPERATOR_KEY",
        help="an operator's API key: departs",
    )
    group.add_argument(
        "--popular-routes",
        default=DEFAULT_POPULAR,
        env_var="PERF_POPULAR_ROUTES",
        help="ORIGIN-DESTINATION pairs ranked first in the Zipf popularity",
    )


# -- run-wide state, set once Locust has parsed its options -------------------------

STATE: dict[str, object] = {}


@events.init.add_listener
def _configure(environment, **_kwargs) -> None:
    options = environment.parsed_options
    if options is None:  # imported by something other than the locust command
        return
    users = scenario_users(options.scenario, options.scale, options.period)
    for cls in (CreateBooking, DepartBooking, RouteSearch):
        cls.fixed_count = users.get(cls.__name__, 0)
        cls.wait_time = constant_throughput(1.0 / options.period)
    refs: collections.deque[str] = collections.deque()
    if options.ref_ids:
        refs.extend(line.strip() for line in Path(options.ref_ids).read_text().splitlines())
    STATE.update(
        options=options,
        users=users,
        refs=refs,
        zipf=ZipfRoutes(options.popular_routes, datetime.now(UTC).date()),
        rng=random.Random(int(os.environ.get("PERF_SEED", "5"))),
    )
    for option in ("customer_key", "operator_key"):
        if not getattr(options, option):
            log.warning("no --%s: its users' requests will answer 401", option.replace("_", "-"))
    log.info("scenario %s x%s: users %s", options.scenario, options.scale, users)


def _poll_delay(headers) -> float:
    """--poll-interval if given, else the answer's Retry-After (what the API asks)."""
    interval = STATE["options"].poll_interval
    if interval > 0:
        return interval
    try:
        return max(0.05, float(headers.get("Retry-After") or DEFAULT_RETRY_AFTER_S))
    except ValueError:
        return DEFAULT_RETRY_AFTER_S


def _iso_ms(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000


# -- users ------------------------------------------------------------------------


class _SpreadUser(FastHttpUser):
    """Starts at a random point of its period. Locust spawns users in batches
    (spawn_rate per second at once) and constant_throughput keeps a batch in
    step, so without this the load arrives in bursts: 179 of 280 creates came
    within 5 ms of the one before (measured), a queue no steady 10/s makes,
    and create p50 was 35 ms against 8 ms for the same rate spread out.
    Spread, the users arrive as independent clients would."""

    abstract = True
    connection_timeout = 10.0
    network_timeout = 30.0
    key_option = "customer_key"  # whose API key this user sends

    def on_start(self) -> None:
        key = getattr(STATE["options"], self.key_option)
        self.auth = {"Authorization": f"Bearer {key}"} if key else {}
        gevent.sleep(STATE["rng"].uniform(0, STATE["options"].period))
        # constant_throughput paces from the user's creation: without this it
        # subtracts the sleep above from the first wait and puts the user back
        # in step with its spawn batch (then half the posts came on the tick).
        self._cp_last_run = time.perf_counter()
        self._cp_last_wait_time = 0

    def _get(self, path: str, name: str):
        """GET with this user's key; an answer other than 200 is a Locust failure."""
        with self.client.get(path, headers=self.auth, name=name, catch_response=True) as r:
            if r.status_code != 200:
                r.failure(f"{r.status_code}: {r.text[:200]}")
        return r


class _JobUser(_SpreadUser):
    """Submits work (202 + job), then polls the job to its end."""

    abstract = True

    def _fire(self, kind: str, name: str, ms: float, exc: Exception | None = None) -> None:
        self.environment.events.request.fire(
            request_type=kind,
            name=name,
            response_time=ms,
            response_length=0,
            exception=exc,
            context={},
        )

    def submit_and_follow(self, path: str, body: dict, name: str, e2e_name: str) -> None:
        sent = time.perf_counter()
        # Bytes, not json=: locust passes a JSON str on, which geventhttpclient
        # sends in a second write after the headers, and that write waits on
        # the server's delayed ACK (Nagle): +40 ms on every POST, measured.
        with self.client.post(
            path,
            data=json.dumps(body).encode(),
            headers={**JSON_HEADERS, **self.auth},
            name=name,
            catch_response=True,
        ) as r:
            if r.status_code != 202:
                r.failure(f"{r.status_code}: {r.text[:200]}")
                return
            job_id = r.json()["job_id"]
            delay = _poll_delay(r.headers)
        options = STATE["options"]
        deadline = sent + options.poll_timeout
        while True:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                exc = TimeoutError(f"job not finished after {options.poll_timeout:.0f} s")
                self._fire("E2E", e2e_name, (time.perf_counter() - sent) * 1000, exc)
                return
            # The last poll comes at the deadline, even when Retry-After says later.
            gevent.sleep(min(delay, remaining))
            r = self._get(f"/api/jobs/{job_id}", "/api/jobs/[job_id]")
            job = r.json() if r.status_code == 200 else None
            delay = _poll_delay(r.headers)
            if job is not None and job["state"] in ("succeeded", "failed"):
                break
        client_ms = (time.perf_counter() - sent) * 1000
        if job["state"] == "failed":
            error = job.get("error") or {}
            exc = RuntimeError(f"job failed: {error.get('title') or error}")
            self._fire("E2E", e2e_name, client_ms, exc)
            return
        server_ms = _iso_ms(job["finished_at"]) - _iso_ms(job["created_at"])
        self._fire("E2E", e2e_name, max(server_ms, 0.0))
        self._fire("E2E-client", e2e_name, client_ms)


class CreateBooking(_JobUser):
    @task
    def create(self) -> None:
        rng = STATE["rng"]
        origin, destination = rng.sample(AIRPORTS, 2)
        body = {
            "origin": origin,
            "destination": destination,
            "pieces": rng.randint(1, 20),
            "weight_kg": round(rng.uniform(5, 2000), 1),
        }
        self.submit_and_follow("/api/bookings", body, "/api/bookings", "create")


class DepartBooking(_JobUser):
    key_option = "operator_key"

    @task
    def depart(self) -> None:
        refs = STATE["refs"]
        if not refs:
            log.error("no BOOKED ref_id left (--ref-ids): this user stops")
            raise StopUser()
        ref_id = refs.popleft()
        self.submit_and_follow(
            f"/api/bookings/{ref_id}/depart",
            TRANSITION,
            "/api/bookings/[ref_id]/depart",
            "depart",
        )


class RouteSearch(_SpreadUser):
    @task
    def search(self) -> None:
        origin, destination, day = STATE["zipf"].draw(STATE["rng"])
        query = f"origin={origin}&destination={destination}&date={day.isoformat()}"
        self._get(f"/api/routes?{query}", "/api/routes")


class ScenarioShape(LoadTestShape):
    """Starts the scenario's users over one period, holds them for --run-time, stops."""

    use_common_options = True  # reads --run-time

    def tick(self):
        options = STATE["options"]
        run_time = options.run_time or 60
        if self.get_run_time() >= run_time:
            return None
        users = STATE["users"]
        classes = [c for c in (CreateBooking, DepartBooking, RouteSearch) if users.get(c.__name__)]
        total = sum(users.values())
        return total, max(1.0, total / options.period), classes
