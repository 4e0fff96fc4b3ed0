"""The door: each request is admitted or shed (core.overload) before Flask
routes it, authenticates its caller or parses its body, and a shed request is
answered at once, 503 `overloaded` with Retry-After, at the cost of a routing
lookup and a counter (no backing service is asked anything).

Reads are shed like writes: they take the same threads and the same cores,
and a client told to come back in a second loses less than every client
waiting seconds in line. Writes are shed besides while the workers are behind
(the interactive queues' backlog, sampled once a second by BacklogSampler off
the request path). What operators need in an overload is never shed:
/health, /metrics, /api/admin and the API's documentation.
"""

from __future__ import annotations

import json
import logging
import random
import time

from amqp.exceptions import AMQPError, NotFound
from flask import Flask
from kombu.exceptions import KombuError
from werkzeug.exceptions import HTTPException

from core import backpressure, metrics, queues
from core.errors import REDIS_ERRORS, Overloaded
from core.flushing import PeriodicFlush
from core.overload import Admission, BacklogGate, GradientLimit, OverloadGuard, QueueDelayGate
from core.settings import Settings
from ingress.paths import metric_rule
from ingress.problems import PROBLEM_JSON
from ingress.serving import QUEUED_AT

log = logging.getLogger(__name__)
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
NEVER_SHED = ("/health", "/metrics", "/api/admin", "/api/docs", "/api/openapi.json")
SHED_DETAIL = "More requests are arriving than the service can answer now; nothing was done."


def install_shedding(app: Flask, settings: Settings) -> OverloadGuard | None:
    """Wrap the app's WSGI callable in the door, unless OVERLOAD_SHEDDING is off."""
    if not settings.OVERLOAD_SHEDDING:
        return None
    most = min(settings.OVERLOAD_MAX_LIMIT, settings.WEB_THREADS)
    guard = OverloadGuard(
        QueueDelayGate(
            settings.OVERLOAD_QUEUE_TARGET_MS / 1000, settings.OVERLOAD_QUEUE_INTERVAL_MS / 1000
        ),
        GradientLimit(
            initial=min(settings.OVERLOAD_INITIAL_LIMIT, most),
            min_limit=min(settings.OVERLOAD_MIN_LIMIT, most),
            max_limit=most,
            tolerance=settings.OVERLOAD_LATENCY_TOLERANCE,
        ),
        BacklogGate(settings.OVERLOAD_BACKLOG_TARGET_S),
    )
    sampler = BacklogSampler(app, guard.backlog, settings.QUEUE_NAMESPACE)
    app.wsgi_app = SheddingMiddleware(app, guard, settings.OVERLOAD_RETRY_AFTER_S, sampler)
    app.extensions["overload_guard"] = guard
    return guard


class BacklogSampler:
    """Once a second, from a thread of its own (started by the first request):
    the interactive queues' ready messages (a passive declare on one broker
    connection it holds) and their peak drain rates (Redis), into the BacklogGate.
    A failed sample leaves the gate open: the queues' bounds still hold."""

    def __init__(self, app: Flask, gate: BacklogGate, namespace: str):
        self.app, self.gate = app, gate
        self.names = [queues.queue_name(q, namespace) for q in queues.INTERACTIVE]
        self._conn = self._channel = None
        self._periodic = PeriodicFlush("overload-backlog", self.sample)

    def start(self) -> None:
        self._periodic.start()

    def sample(self) -> None:
        try:
            depths = {n: self._depth(n) for n in self.names}
            redis = self.app.extensions["radiantgo"].redis
            now = time.time()
            rates = {n: backpressure.peak_drain_rate(redis, n, now) for n in self.names}
        except (OSError, AMQPError, KombuError, *REDIS_ERRORS) as exc:
            log.debug("backlog not sampled: %s", exc)
            self.gate.observe({}, {})
            if self._conn is not None:
                self._conn.release()
                self._conn = self._channel = None
            return
        self.gate.observe(depths, rates)

    def _depth(self, name: str) -> int:
        if self._conn is None:
            self._conn = self.app.extensions["celery"].connection_for_write()
            # Each node of a cluster once (kombu's channel() alone tries two).
            nodes = len(self.app.extensions["radiantgo"].settings.broker_urls)
            self._conn.ensure_connection(max_retries=nodes - 1, interval_start=0)
        if self._channel is None:
            self._channel = self._conn.channel()
        try:
            return self._channel.queue_declare(name, passive=True).message_count
        except NotFound:  # not declared yet, so empty; the broker closed the channel
            self._channel = None
            return 0


class SheddingMiddleware:
    def __init__(
        self,
        app: Flask,
        guard: OverloadGuard,
        retry_after_s: int,
        sampler: BacklogSampler | None = None,
    ):
        self.flask, self.wsgi_app, self.guard = app, app.wsgi_app, guard
        self.retry_after = str(retry_after_s)
        self.sampler = sampler

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO", "").startswith(NEVER_SHED):
            return self.wsgi_app(environ, start_response)
        if self.sampler is not None:
            self.sampler.start()
        now = time.monotonic()
        queued_at = environ.get(QUEUED_AT)
        admission = self.guard.admit(
            now,
            None if queued_at is None else now - queued_at,
            write=environ.get("REQUEST_METHOD") in WRITE_METHODS,
            draw=random.random(),  # which writes the backlog sheds
        )
        if not isinstance(admission, Admission):
            return self.shed(environ, start_response, admission, now)
        try:
            return self.wsgi_app(environ, start_response)
        finally:
            self.guard.done(admission, time.monotonic())

    def shed(self, environ, start_response, reason: str, started: float):
        path = environ.get("PATH_INFO", "")
        error = Overloaded(SHED_DETAIL, retry_after=int(self.retry_after))
        body = json.dumps(error.to_problem(instance=path)).encode()
        start_response(
            "503 SERVICE UNAVAILABLE",
            [
                ("Content-Type", PROBLEM_JSON),
                ("Content-Length", str(len(body))),
                ("Retry-After", self.retry_after),
            ],
        )
        endpoint = self.endpoint(environ)
        tally = self.flask.extensions["request_tally"]
        tally.record_shed(endpoint, reason)
        tally.record(endpoint, 503, (time.monotonic() - started) * 1000, time.time())
        return [body]

    def endpoint(self, environ) -> str:
        """The metrics' name of the request's endpoint: a routing lookup, no view."""
        method = environ.get("REQUEST_METHOD", "")
        try:
            rule, _ = self.flask.url_map.bind_to_environ(environ).match(
                method=method, return_rule=True
            )
        except HTTPException:
            return metrics.endpoint_name(method, None)
        return metrics.endpoint_name(method, metric_rule(rule.rule))
