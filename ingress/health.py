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
from ingress.docs import Blueprint
from ingress.responses.monitoring import HealthSchema

log = logging.getLogger(__name__)

blp = Blueprint("health", __name__, url_prefix="/health", description="Service health")
# How long one round of probes answers /health (seconds).
PROBE_TTL_S = 1.0
# app.extensions keys: the cached probe rounds, the broker probes (one per
# RabbitMQ node) and the lock masters' probe clients.
PROBES, BROKER_PINGS, LOCK_PROBES = "health_probes", "health_broker_pings", "health_lock_probes"


@blp.record_once
def _install_probes(state) -> None:
    """Per app (so per process): a broker connection per node for the probes,
    opened on first use (after gunicorn forks), the lock masters' probe clients
    (which connect on first use too), and the cache of probe rounds."""
    app = state.app
    svc, celery = app.extensions["radiantgo"], app.extensions["celery"]
    timeout = svc.settings.BROKER_TIMEOUT_S

    def connect(url: str):
        # That node alone: a URL without alternates never fails over to
        # another. No heartbeats (nobody would send them between probes);
        # socket timeouts bound a round trip to a broker that stopped answering.
        return lambda: celery.connection_for_write(
            url, heartbeat=0, transport_options={"read_timeout": timeout, "write_timeout": timeout}
        )

    ping_brokers = tuple(
        health.BrokerPing(connect(url), timeout_s=timeout) for url in svc.settings.broker_urls
    )
    lock_probes = health.connect_lock_probes(svc.settings)
    app.extensions[BROKER_PINGS], app.extensions[LOCK_PROBES] = ping_brokers, lock_probes
    app.extensions[PROBES] = health.ProbeCache(
        functools.partial(health.check_services, svc, ping_brokers, lock_probes), ttl=PROBE_TTL_S
    )


@blp.route("")
class Health(MethodView):
    @blp.alt_response(200, schema=HealthSchema, success=True, description="Healthy or degraded")
    @blp.alt_response(503, schema=HealthSchema, description="MongoDB or all RabbitMQ nodes down")
    def get(self):
        """Status and latency of MongoDB, Redis, RabbitMQ and the workers (probed at most
        once a second per process).

        With LOCK_REDIS_URLS set, of the lock masters too (`locks`). A service of
        several nodes (a RabbitMQ cluster, the lock masters) says how many answered:
        degraded while some do (the lock masters: a majority), unhealthy below."""
        return current_app.extensions[PROBES].get()
