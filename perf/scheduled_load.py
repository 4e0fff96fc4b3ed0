"""A fixed schedule of requests sent over keep-alive connections, what runs
beside it, and the jobs it made read back over HTTP (perf.bench_burst's load,
which perf.bench_versus sends to both systems).

Request i of a kind is due at t0 + i / rate, however slowly the answers come,
sent by SENDERS threads each holding one http.client connection; a request
sent after its due time records that lag.
"""

from __future__ import annotations

import dataclasses
import http.client
import itertools
import json
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from kombu.exceptions import KombuError

from core import queues
from core.jobs import FINISHED, JOB_FINISHED_CHANNEL
from perf.harness import (
    BODY,
    TRANSITION,
    percentiles,
)

CREATE, UPDATE = "create", "update"
ACCEPTED = 202
# 503: shed at the door (overloaded), a queue past its bound (queue-full), or the
# broker down; the first two are backpressure, with a Retry-After.
UNAVAILABLE = 503
# Threads, each with one connection: on schedule at 400/s while answers take up
# to ~1 s. Fewer (96) fell 6 s behind at 400/s once the ingress answered in
# 0.4-1 s: the requests then waited in the client, unmeasured, not in the server.
SENDERS = 400
# gunicorn closes a keep-alive connection idle for 2 s (its default keepalive):
# a POST sent on one it has closed fails (BrokenPipeError), a client artifact.
# A sender idle longer than this connects anew instead (a POST is not retried).
IDLE_RECONNECT_S = 1.0
SAMPLE_S = 0.5
REQUEST_TIMEOUT_S = 30.0
START_DELAY_S = 0.5  # from the schedule's set-up to its first request
WARM_UP_TIMEOUT_S = 60.0
CHECKERS = 8  # threads reading the jobs over HTTP
SHOWN_QUEUES = queues.INTERACTIVE  # the burst's queues; the others stay empty


class Answer(NamedTuple):
    """One request of the schedule; times in seconds since t0."""

    kind: str
    due: float
    sent: float
    latency_ms: float
    status: int | str  # the HTTP status, or the exception's name
    job: str | None  # the Location (/api/jobs/<id>) of an accepted job
    retry_after: bool  # the answer had a Retry-After header
    problem: str | None = None  # a 503's problem type (its last path segment): why


# -- the schedule and the load --------------------------------------------------------


def schedule(rates: dict[str, float], seconds: float) -> list[tuple[float, str, int]]:
    """(due, kind, i) for every request: the i-th of a kind at i / rate, by due time."""
    plan = [
        (i / rate, kind, i)
        for kind, rate in rates.items()
        if rate > 0
        for i in range(int(rate * seconds))
    ]
    return sorted(plan)


def _send(conn: http.client.HTTPConnection, method: str, path: str, body: bytes | None, headers):
    conn.request(method, path, body=body, headers=headers)
    response = conn.getresponse()
    payload = response.read()
    return response, payload


def offer(
    base: str,
    plan: list[tuple[float, str, int]],
    request_for,
    t0: float,
    *,
    senders: int = SENDERS,
) -> list[Answer]:
    """Send every request of `plan` at t0 + due (time.perf_counter()), on `senders`
    threads; `request_for(kind, i)` gives (path, body bytes, headers)."""
    url = urlsplit(base)
    answers: list[Answer] = []
    claim = itertools.count()  # next() is atomic under the GIL: each index goes out once

    def sender() -> None:
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=REQUEST_TIMEOUT_S)
        mine = []
        last_used = time.perf_counter()
        try:
            for n in iter(claim.__next__, None):
                if n >= len(plan):
                    break
                due, kind, i = plan[n]
                path, body, headers = request_for(kind, i)
                delay = t0 + due - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                if time.perf_counter() - last_used > IDLE_RECONNECT_S:
                    conn.close()  # the server may have closed it: connect anew on the request
                sent = time.perf_counter()
                problem = None
                try:
                    response, payload = _send(conn, "POST", path, body, headers)
                    status: int | str = response.status
                    location = response.getheader("Location")
                    retry_after = response.getheader("Retry-After") is not None
                except (OSError, http.client.HTTPException) as exc:
                    conn.close()  # reconnects on the next request
                    status, location, retry_after = type(exc).__name__, None, False
                last_used = time.perf_counter()
                latency = (last_used - sent) * 1000
                if status == UNAVAILABLE:
                    problem = problem_type(payload)
                job = location if status == ACCEPTED else None
                mine.append(
                    Answer(kind, due, sent - t0, latency, status, job, retry_after, problem)
                )
        finally:
            conn.close()
            answers.extend(mine)  # list.extend is atomic under the GIL

    threads = [threading.Thread(target=sender) for _ in range(senders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers


def problem_type(payload: bytes) -> str | None:
    """The last segment of a problem document's type ("overloaded"), if it is one."""
    try:
        return str(json.loads(payload)["type"]).rsplit("/", 1)[-1]
    except (ValueError, KeyError, TypeError):
        return None


# -- what runs beside the load ------------------------------------------------------------


class FinishedNotices(threading.Thread):
    """The workers' job-finished notices (job id -> seconds since t0 it was seen).
    The channel is shared by every stack on this Redis: the ids are matched
    against the accepted ones afterwards."""

    def __init__(self, redis_client, t0: float):
        super().__init__(daemon=True)
        self.t0 = t0
        self.seen: dict[str, float] = {}
        self.pubsub = redis_client.pubsub(ignore_subscribe_messages=True)
        self.pubsub.subscribe(JOB_FINISHED_CHANNEL)
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            message = self.pubsub.get_message(timeout=0.2)
            if message:
                job_id = message["data"]
                job_id = job_id.decode() if isinstance(job_id, bytes) else job_id
                self.seen.setdefault(job_id, time.perf_counter() - self.t0)

    def mark(self, job_id: str) -> None:
        """A job found finished over HTTP (its notice lost, or not sent)."""
        self.seen.setdefault(job_id, time.perf_counter() - self.t0)

    def stop(self) -> None:
        self.stopping.set()
        self.join(5)
        self.pubsub.close()


class DepthSampler(threading.Thread):
    """Every SAMPLE_S, the ready messages of each of the stack's queues, on one
    broker connection held for the run: {"t": seconds since t0, "depths": {...}}."""

    def __init__(self, stack, t0: float, interval: float = SAMPLE_S):
        super().__init__(daemon=True)
        self.stack, self.t0, self.interval = stack, t0, interval
        self.samples: list[dict[str, Any]] = []
        self.errors: Counter[str] = Counter()
        self.stopping = threading.Event()

    def latest(self) -> dict[str, int] | None:
        return self.samples[-1]["depths"] if self.samples else None

    def run(self) -> None:
        names = {
            q: queues.queue_name(q, self.stack.settings.QUEUE_NAMESPACE) for q in queues.ALL_QUEUES
        }
        with self.stack.celery.connection_for_write() as conn:
            while True:
                try:
                    channel = conn.default_channel
                    depths = {
                        q: channel.queue_declare(name, passive=True).message_count
                        for q, name in names.items()
                    }
                    self.samples.append({"t": time.perf_counter() - self.t0, "depths": depths})
                except (OSError, KombuError, conn.connection_errors, conn.channel_errors) as exc:
                    self.errors[type(exc).__name__] += 1  # counted; the next sample retries
                if self.stopping.wait(self.interval):
                    break

    def stop(self) -> None:
        self.stopping.set()
        self.join(10)


# -- reading the jobs over HTTP ------------------------------------------------------------


def job_states(
    base: str, headers: dict[str, str], paths: list[str], *, threads: int = CHECKERS
) -> dict[str, str]:
    """path -> the job's state (or the HTTP status / exception name where there was
    none), one GET each on `threads` keep-alive connections."""
    url = urlsplit(base)
    local = threading.local()

    def read(path: str) -> tuple[str, str]:
        conn = getattr(local, "conn", None)
        if conn is None:
            conn = local.conn = http.client.HTTPConnection(
                url.hostname, url.port, timeout=REQUEST_TIMEOUT_S
            )
        try:
            response, body = _send(conn, "GET", path, None, headers)
        except (OSError, http.client.HTTPException):
            conn.close()  # kept alive past the server's keepalive: a GET may be sent again
            try:
                response, body = _send(conn, "GET", path, None, headers)
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                return path, type(exc).__name__
        if response.status != 200:
            return path, f"HTTP {response.status}"
        return path, json.loads(body)["state"]

    with ThreadPoolExecutor(threads) as pool:
        return dict(pool.map(read, paths))


def final_states(base: str, headers: dict[str, str], paths: list[str], deadline: float):
    """Every job's state, reading again the unfinished ones (once a second) until
    `deadline` (time.perf_counter()); one pass at least."""
    states = job_states(base, headers, paths)
    while time.perf_counter() < deadline:
        unfinished = [p for p, state in states.items() if state not in FINISHED]
        if not unfinished:
            break
        time.sleep(1.0)
        states |= job_states(base, headers, unfinished)
    return states


def queue_settings(settings) -> dict[str, Any]:
    """The QUEUE_* settings but the namespace: the queues' bounds, where they have any."""
    return {
        f.name: getattr(settings, f.name)
        for f in dataclasses.fields(settings)
        if f.name.startswith("QUEUE_") and f.name != "QUEUE_NAMESPACE"
    }


def job_id(path: str) -> str:
    return path.rsplit("/", 1)[-1]


def warm_up(stack, refs: list[str]) -> None:
    """Unmeasured requests of each kind, and their jobs worked off: warm pools."""
    url = urlsplit(stack.base)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=REQUEST_TIMEOUT_S)
    paths = []
    try:
        for ref_id in refs:
            for path, body, headers in (
                ("/api/bookings", BODY, stack.customer),
                (f"/api/bookings/{ref_id}/depart", TRANSITION, stack.operator),
            ):
                headers = {**headers, "Content-Type": "application/json"}
                response, _ = _send(conn, "POST", path, json.dumps(body).encode(), headers)
                if response.getheader("Location"):
                    paths.append(response.getheader("Location"))
    finally:
        conn.close()
    final_states(stack.base, stack.operator, paths, time.perf_counter() + WARM_UP_TIMEOUT_S)


def lag_figures(answers: list[Answer]) -> dict[str, Any]:
    """How late the client sent (ms after the due time): it kept its schedule if small."""
    return percentiles([(a.sent - a.due) * 1000 for a in answers])
