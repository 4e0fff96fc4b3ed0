"""/metrics: every process's figures in Prometheus text format (scraped internally)."""

from __future__ import annotations

import time

from flask import Response
from flask.views import MethodView
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from core import locks, metrics
from ingress.context import services
from ingress.docs import Blueprint

blp = Blueprint("monitoring", __name__, url_prefix="", description="Monitoring")


def current_figures() -> dict:
    svc = services()
    return metrics.performance_figures(
        svc.redis, svc.cache.stats(), locks.lock_metrics(svc.redis), time.time()
    )


class _FiguresCollector:
    """Exposes the Redis-aggregated figures (all processes) as Prometheus metrics."""

    def __init__(self, figures: dict):
        self.figures = figures

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
        lock = f["locks"]
        lock_counts = CounterMetricFamily(
            "radiantgo_lock_acquisitions", "Lock acquisitions", labels=["outcome"]
        )
        for outcome in ("acquired", "failed", "errors"):
            lock_counts.add_metric([outcome], lock[outcome])
        yield lock_counts
        lock_ms = GaugeMetricFamily(
            "radiantgo_lock_acquire_ms", "Lock acquisition time", labels=["quantile"]
        )
        for q, value in lock["acquire_ms"].items():
            if value is not None:
                lock_ms.add_metric([q], value)
        yield lock_ms
        depth = GaugeMetricFamily(
            "radiantgo_queue_messages", "Ready messages per queue", labels=["queue"]
        )
        for queue, entry in f["queues"].items():
            if entry["messages"] is not None:
                depth.add_metric([queue], entry["messages"])
        yield depth


@blp.route("/metrics")
class Metrics(MethodView):
    @blp.alt_response(
        200,
        description="Prometheus text exposition format",
        success=True,
        content_type="text/plain; version=0.0.4",
    )
    def get(self):
        """Every process's figures, aggregated, in Prometheus text format."""
        registry = CollectorRegistry()
        registry.register(_FiguresCollector(current_figures()))
        return Response(generate_latest(registry), mimetype="text/plain; version=0.0.4")
