"""/health: can this ingress do its job right now?"""

from __future__ import annotations

import time

from flask.views import MethodView

from core import health, metrics
from core.schemas import HealthSchema
from ingress.context import publisher, services
from ingress.docs import Blueprint

blp = Blueprint("health", __name__, url_prefix="/health", description="Service health")
# Without MongoDB nothing can be read or recorded; without RabbitMQ nothing
# can be accepted. Redis or the workers being down only degrades service.
CRITICAL = ("mongodb", "rabbitmq")


def ping_broker() -> None:
    # A fresh connection, not a pooled one: a pooled socket can look alive
    # until its next write after the broker died.
    with publisher().connection_for_write() as connection:
        connection.ensure_connection(
            max_retries=1,
            interval_start=0,
            interval_step=0.1,
            timeout=services().settings.BROKER_TIMEOUT_S,
        )


@blp.route("")
class Health(MethodView):
    @blp.alt_response(200, schema=HealthSchema, success=True, description="Healthy or degraded")
    @blp.alt_response(503, schema=HealthSchema, description="MongoDB or RabbitMQ is down")
    def get(self):
        """Status and latency of MongoDB, Redis, RabbitMQ and the workers."""
        svc = services()
        checks = {
            "mongodb": health.probe(health.ping_mongo(svc.db)),
            "redis": health.probe(health.ping_redis(svc.redis)),
            "rabbitmq": health.probe(ping_broker),
            "workers": health.probe(health.count_workers(svc.redis)),
        }
        status = health.overall_status(checks, CRITICAL)
        body = {"status": status, "services": checks}
        if checks["redis"]["status"] == health.HEALTHY:
            body["metrics"] = metrics.health_summary(svc.redis, svc.cache.hit_stats(), time.time())
        return body, 503 if status == health.UNHEALTHY else 200
