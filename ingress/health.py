"""/health: can this ingress do its job right now?

Public and cheap: each service's status and latency (the reasons go to the
log), and the spec's `metrics` block (totals and averages, nothing per customer).
Each process probes at most once per PROBE_TTL_S, over connections it keeps
(the broker's included), however many callers ask.
"""

from __future__ import annotations

import functools
import logging

from flask import current_app
from flask.views import MethodView

from core import health
from core.schemas import HealthSchema
from ingress.docs import Blueprint

log = logging.getLogger(__name__)

blp = Blueprint("health", __name__, url_prefix="/health", description="Service health")
# How long one round of probes answers /health (seconds).
PROBE_TTL_S = 1.0
# app.extensions keys: the cached probe rounds and the broker probe.
PROBES, BROKER_PING = "health_probes", "health_broker_ping"


@blp.record_once
def _install_probes(state) -> None:
    """Per app (so per process): a broker connection for the probe, opened on first
    use (after gunicorn forks), and the cache of probe rounds."""
    app = state.app
    svc, celery = app.extensions["radiantgo"], app.extensions["celery"]
    timeout = svc.settings.BROKER_TIMEOUT_S
    ping_broker = health.BrokerPing(
        # No heartbeats (nobody would send them between probes); socket
        # timeouts bound a round trip to a broker that stopped answering.
        lambda: celery.connection_for_write(
            heartbeat=0, transport_options={"read_timeout": timeout, "write_timeout": timeout}
        ),
        timeout_s=timeout,
    )
    app.extensions[BROKER_PING] = ping_broker
    app.extensions[PROBES] = health.ProbeCache(
        functools.partial(health.check_services, svc, ping_broker), ttl=PROBE_TTL_S
    )


@blp.route("")
class Health(MethodView):
    @blp.alt_response(200, schema=HealthSchema, success=True, description="Healthy or degraded")
    @blp.alt_response(503, schema=HealthSchema, description="MongoDB or RabbitMQ is down")
    def get(self):
        """Status and latency of MongoDB, Redis, RabbitMQ and the workers (probed at most
        once a second per process)."""
        return current_app.extensions[PROBES].get()
