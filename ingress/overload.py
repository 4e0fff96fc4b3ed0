"""The door: each request is admitted or shed (core.overload) before Flask
routes it, authenticates its caller or parses its body, and a shed request is
answered at once, 503 `overloaded` with Retry-After, at the cost of a routing
lookup and a counter (no backing service is asked anything).

Reads are shed like writes: they take the same threads and the same cores,
and a client told to come back in a second loses less than every client
waiting seconds in line. What operators need in an overload is never shed:
/health, /metrics, /api/admin and the API's documentation.
"""

from __future__ import annotations

import json
import time

from flask import Flask
from werkzeug.exceptions import HTTPException

from core import metrics
from core.errors import Overloaded
from core.overload import Admission, GradientLimit, OverloadGuard, QueueDelayGate
from core.settings import Settings
from ingress.paths import metric_rule
from ingress.problems import PROBLEM_JSON
from ingress.serving import QUEUED_AT

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
    )
    app.wsgi_app = SheddingMiddleware(app, guard, settings.OVERLOAD_RETRY_AFTER_S)
    app.extensions["overload_guard"] = guard
    return guard


class SheddingMiddleware:
    def __init__(self, app: Flask, guard: OverloadGuard, retry_after_s: int):
        self.flask, self.wsgi_app, self.guard = app, app.wsgi_app, guard
        self.retry_after = str(retry_after_s)

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO", "").startswith(NEVER_SHED):
            return self.wsgi_app(environ, start_response)
        now = time.monotonic()
        queued_at = environ.get(QUEUED_AT)
        admission = self.guard.admit(now, None if queued_at is None else now - queued_at)
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
