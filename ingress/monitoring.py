"""/metrics: every process's figures in Prometheus text format, for a scraper
holding the metrics token (METRICS_TOKEN, the admin token when unset)."""

from __future__ import annotations

import functools
import hmac
import time

from flask import Response, current_app, request
from flask.views import MethodView
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from core import access, ledger, metrics, monitoring, scaling
from core.errors import Forbidden, Unauthorized
from core.ids import API_KEY_PREFIX
from core.settings import Settings
from ingress.context import services
from ingress.docs import ADMIN_TOKEN, METRICS_TOKEN, ROLES_EXTENSION, Blueprint
from ingress.security import current_principal, guard_secret_tokens

blp = Blueprint("monitoring", __name__, url_prefix="", description="Monitoring")
NEEDED = "the metrics token (METRICS_TOKEN, by default the admin token)"


def opens_metrics(token: str, settings: Settings) -> bool:
    """The metrics token or the admin token (who sees the same figures in
    /api/admin/performance); compared in constant time, an unset one matches nothing."""
    tokens = [t for t in (settings.metrics_token, settings.ADMIN_TOKEN) if t]
    # A list, not any() over a generator: both comparisons run, whichever matches.
    return any([hmac.compare_digest(token.encode(), t.encode()) for t in tokens])


def scraper_only(view):
    """The metrics token or the admin token: 401 without credentials or with
    unknown ones, 403 for a customer's or an operator's key (the figures are
    everyone's traffic). Documented with both schemes; x-roles names the admin,
    the one role whose credentials open it.

    A wrong token counts as a failed credential of the client IP, and past
    that budget no token is compared (ingress.security): a scraper's
    successful polls cost nothing."""

    @functools.wraps(view)
    def guarded(*args, **kwargs):
        scheme, _, token = request.headers.get("Authorization", "").strip().partition(" ")
        token = token.strip()
        if scheme.lower() == "bearer" and token and not token.startswith(API_KEY_PREFIX):
            guard_secret_tokens()
            if opens_metrics(token, services().settings):
                return view(*args, **kwargs)
        principal = current_principal()  # 401 for a malformed header, a wrong key or token
        if principal.authenticated:
            held = access.CREDENTIAL[principal.role]
            raise Forbidden(f"{held[0].upper()}{held[1:]} may not read /metrics; {NEEDED} may.")
        raise Unauthorized(f"To read /metrics, send Authorization: Bearer with {NEEDED}.")

    security = [{METRICS_TOKEN: []}, {ADMIN_TOKEN: []}]
    guarded = blp.doc(security=security, **{ROLES_EXTENSION: [access.ADMIN]})(guarded)
    return blp.problems(401, 403)(guarded)


def current_figures() -> dict:
    current_app.extensions["request_tally"].flush()  # this process's last second too
    svc = services()
    return monitoring.performance_figures(
        svc.redis,
        svc.cache.stats(),
        monitoring.lock_figures(svc.redis, svc.locks.held()),
        time.time(),
        ledger.last_check(svc.redis),
        db=svc.db,
    )


class _FiguresCollector:
    """Exposes the Redis-aggregated figures (all processes) as Prometheus metrics."""

    def __init__(self, figures: dict, webhook_counters: dict[str, dict[str, int]]):
        self.figures = figures
        self.webhook_counters = webhook_counters

    def collect(self):
        f = self.figures
        requests = CounterMetricFamily("radiantgo_requests", "HTTP requests", labels=["endpoint"])
        errors = CounterMetricFamily(
            "radiantgo_request_errors", "HTTP 4xx/5xx answers", labels=["endpoint", "status"]
        )
        latency = GaugeMetricFamily(
            "radiantgo_request_latency_ms",
            "Recent latency percentiles",
            labels=["endpoint", "quantile"],
        )
        for endpoint, entry in f["requests"]["endpoints"].items():
            requests.add_metric([endpoint], entry["count"])
            for status, n in entry["errors"]["by_status"].items():
                errors.add_metric([endpoint, status], n)
            for q in ("p50", "p95", "p99"):
                if entry["latency_ms"][q] is not None:
                    latency.add_metric([endpoint, q], entry["latency_ms"][q])
        yield from (requests, errors, latency)
        tasks = CounterMetricFamily("radiantgo_tasks", "Tasks run", labels=["type", "outcome"])
        task_ms = GaugeMetricFamily(
            "radiantgo_task_ms",
            "Task queue wait and run time percentiles",
            labels=["type", "phase", "quantile"],
        )
        for task_type, entry in f["tasks"].items():
            tasks.add_metric([task_type, "all"], entry["count"])
            tasks.add_metric([task_type, "failed"], entry["failed"])
            for phase in ("queue_wait_ms", "run_ms"):
                for q, value in entry[phase].items():
                    if value is not None:
                        task_ms.add_metric([task_type, phase.removesuffix("_ms"), q], value)
        yield from (tasks, task_ms)
        cache = CounterMetricFamily(
            "radiantgo_cache_lookups", "Cache lookups", labels=["kind", "outcome"]
        )
        for kind, entry in f["cache"]["kinds"].items():
            cache.add_metric([kind, "hit"], entry["hits"])
            cache.add_metric([kind, "miss"], entry["misses"])
        yield cache
        yield from self._locks(f["locks"]["by_kind"])
        yield from self._queues(f["queues"])
        yield from self._webhooks(f["webhooks"], self.webhook_counters)
        memory = GaugeMetricFamily(
            "radiantgo_memory_used_ratio",
            "Fraction of memory in use per host (its container's limit when it has one)",
            labels=["host"],
        )
        for host, used in f["memory"]["by_host"].items():
            memory.add_metric([host], used)
        yield memory
        restarts = CounterMetricFamily(
            "radiantgo_process_restarts",
            "Restarts of a make run process by its supervisor, after it died",
            labels=["program"],
        )
        for program, n in f["processes"]["restarts"].items():
            restarts.add_metric([program], n)
        yield restarts
        if f["ledger"] is not None:
            yield GaugeMetricFamily(
                "radiantgo_ledger_unbalanced_flights",
                "Flights whose cargo space did not balance at the last audit",
                value=f["ledger"]["flights_unbalanced"],
            )

    @staticmethod
    def _queues(by_queue: dict):
        """Depths as beat samples them (every 15 s), whether the backlog rose in
        each of the last GROWING_SAMPLES samples, and when the last was taken (a
        stale sample means beat or the maintenance worker is down)."""
        depth = GaugeMetricFamily(
            "radiantgo_queue_messages", "Ready messages per queue", labels=["queue"]
        )
        growing = GaugeMetricFamily(
            "radiantgo_queue_growing",
            f"1 when the depth rose in each of the last {scaling.GROWING_SAMPLES} samples",
            labels=["queue"],
        )
        sampled = GaugeMetricFamily(
            "radiantgo_queue_sampled_timestamp_seconds",
            "When the queue's depth was last sampled",
            labels=["queue"],
        )
        for queue, entry in by_queue.items():
            if entry["messages"] is not None:
                depth.add_metric([queue], entry["messages"])
                growing.add_metric([queue], int(entry["growing"]))
                sampled.add_metric([queue], entry["sampled_at"])
        yield from (depth, growing, sampled)

    @staticmethod
    def _webhooks(hooks: dict, counters: dict[str, dict[str, int]]):
        """Per endpoint, TOP_WEBHOOK_ENDPOINTS of them and the rest summed as
        "(other)": the counters for the endpoints with the most attempts (an
        order that seldom changes, so a series seldom moves to "(other)" and
        back), the backlog for those with the largest (as the performance
        endpoint lists them)."""
        other = metrics.OTHER_ENDPOINT
        deliveries = CounterMetricFamily(
            "radiantgo_webhook_deliveries",
            "Webhook deliveries ended: delivered (a 2xx) or failed (given up)",
            labels=["endpoint", "outcome"],
        )
        attempts = CounterMetricFamily(
            "radiantgo_webhook_attempts", "Webhook delivery attempts", labels=["endpoint"]
        )
        failed = CounterMetricFamily(
            "radiantgo_webhook_attempts_failed",
            "Webhook delivery attempts without a 2xx",
            labels=["endpoint"],
        )
        for endpoint, entry in _top_and_other(counters, "attempts").items():
            deliveries.add_metric([endpoint, "delivered"], entry["delivered"])
            deliveries.add_metric([endpoint, "failed"], entry["failed"])
            attempts.add_metric([endpoint], entry["attempts"])
            failed.add_metric([endpoint], entry["failed_attempts"])
        yield from (deliveries, attempts, failed)
        backlog = GaugeMetricFamily(
            "radiantgo_webhook_backlog",
            "Webhook deliveries pending: due now, or waiting for a retry",
            labels=["endpoint", "state"],
        )
        in_flight = GaugeMetricFamily(
            "radiantgo_webhook_in_flight", "Webhook attempts under way", labels=["endpoint"]
        )
        listed = [e for e in hooks["endpoints"] if e["endpoint_id"] != other]
        rest = {
            name: hooks[name] - sum(e[name] for e in listed)
            for name in ("backlog", "due", "in_flight")
        }
        for endpoint, entry in [*((e["endpoint_id"], e) for e in listed), (other, rest)]:
            backlog.add_metric([endpoint, "due"], entry["due"])
            backlog.add_metric([endpoint, "waiting"], entry["backlog"] - entry["due"])
            in_flight.add_metric([endpoint], entry["in_flight"])
        lag = GaugeMetricFamily(
            "radiantgo_webhook_lag_ms",
            f"An event's commit -> its delivery's 2xx, over the last {metrics.SAMPLES} deliveries",
            labels=["quantile"],
        )
        for q, value in hooks["lag_ms"].items():
            if value is not None:
                lag.add_metric([q], value)
        growing = GaugeMetricFamily(
            "radiantgo_webhook_backlog_growing",
            f"1 when the webhook backlog rose in its last {scaling.GROWING_SAMPLES} samples",
            value=int(hooks["backlog_growing"]),
        )
        disabled = GaugeMetricFamily(
            "radiantgo_webhook_endpoints_disabled",
            "Webhook endpoints disabled",
            value=hooks["disabled_endpoints"],
        )
        yield from (backlog, in_flight, lag, growing, disabled)

    @staticmethod
    def _locks(by_kind: dict):
        """Per kind of lock only: the totals are the sums over kinds (a kind="all"
        series would count every acquisition twice in a sum())."""
        counts = CounterMetricFamily(
            "radiantgo_lock_acquisitions", "Lock acquisitions", labels=["kind", "outcome"]
        )
        attempts = CounterMetricFamily(
            "radiantgo_lock_attempts",
            "Lock tries: more than acquisitions + failures is contention",
            labels=["kind"],
        )
        acquire_ms = GaugeMetricFamily(
            "radiantgo_lock_acquire_ms", "Lock acquisition time", labels=["kind", "quantile"]
        )
        held = GaugeMetricFamily("radiantgo_locks_held", "Locks held now", labels=["kind"])
        for kind, lock in by_kind.items():
            for outcome in ("acquired", "failed", "errors"):
                counts.add_metric([kind, outcome], lock[outcome])
            attempts.add_metric([kind], lock["attempts"])
            for q, value in lock["acquire_ms"].items():
                if value is not None:
                    acquire_ms.add_metric([kind, q], value)
            held.add_metric([kind], lock["held"])
        yield from (counts, attempts, acquire_ms, held)


def _top_and_other(per_endpoint: dict[str, dict[str, int]], by: str) -> dict[str, dict[str, int]]:
    """The TOP_WEBHOOK_ENDPOINTS endpoints with the largest `by`, and the
    others' figures summed as "(other)"."""
    other = metrics.OTHER_ENDPOINT
    ranked = sorted(
        (e for e in per_endpoint if e != other), key=lambda e: (-per_endpoint[e][by], e)
    )
    shown = {e: per_endpoint[e] for e in ranked[: monitoring.TOP_WEBHOOK_ENDPOINTS]}
    rest = [per_endpoint[e] for e in ranked[monitoring.TOP_WEBHOOK_ENDPOINTS :]]
    rest += [per_endpoint[other]] if other in per_endpoint else []
    if rest:
        shown[other] = {name: sum(r[name] for r in rest) for name in metrics.WEBHOOK_COUNTS}
    return shown


class _ShedCollector:
    """Requests the ingress shed at the door (core.overload), by endpoint and reason."""

    def __init__(self, counters: dict[str, dict[str, int]]):
        self.counters = counters

    def collect(self):
        shed = CounterMetricFamily(
            "radiantgo_requests_shed",
            "Requests answered 503 overloaded before any work (load shedding)",
            labels=["endpoint", "reason"],
        )
        for endpoint, by_reason in self.counters.items():
            for reason, n in by_reason.items():
                shed.add_metric([endpoint, reason], n)
        yield shed


@blp.route("/metrics")
class Metrics(MethodView):
    @scraper_only
    @blp.alt_response(
        200,
        description="Prometheus text exposition format",
        success=True,
        content_type="text/plain; version=0.0.4",
    )
    def get(self):
        """Every process's figures, aggregated, in Prometheus text format."""
        registry = CollectorRegistry()
        counters = monitoring.webhook_counters(services().redis)
        registry.register(_FiguresCollector(current_figures(), counters))
        registry.register(_ShedCollector(monitoring.shed_counters(services().redis)))
        return Response(generate_latest(registry), mimetype="text/plain; version=0.0.4")
