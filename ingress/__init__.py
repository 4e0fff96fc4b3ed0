"""The HTTP ingress: validates, enqueues writes, answers reads."""

from __future__ import annotations

import logging
import time

from flask import Flask, g, request
from flask.json.provider import DefaultJSONProvider
from werkzeug.exceptions import UnsupportedMediaType

from celeryconfig import create_celery_app
from core import logs, metrics
from core.access import Principal
from core.clock import to_iso
from core.services import Services, connect_services
from core.settings import Settings, load_settings
from core.waiting import JobWaiter
from ingress import admin, awb, bookings, docs, flights, health, jobs, monitoring, webhooks
from ingress.overload import NEVER_SHED, install_shedding
from ingress.paths import install_path_ids, metric_rule
from ingress.problems import ProblemApi, register_error_handlers
from ingress.security import install_rate_limits

log = logging.getLogger(__name__)
BODY_METHODS = ("POST", "PUT", "PATCH")


class JSONProvider(DefaultJSONProvider):
    """Datetimes go out as ISO 8601 UTC with `Z`; key order is kept."""

    sort_keys = False

    @staticmethod
    def default(value):
        if hasattr(value, "isoformat") and hasattr(value, "tzinfo"):
            return to_iso(value)
        return DefaultJSONProvider.default(value)


def create_app(settings: Settings | None = None, *, services: Services | None = None) -> Flask:
    settings = settings or load_settings()
    logs.configure_logging(settings)
    app = Flask(__name__)
    app.json = JSONProvider(app)
    app.url_map.strict_slashes = False
    app.config.update(
        MAX_CONTENT_LENGTH=settings.MAX_CONTENT_LENGTH,
        API_TITLE="RadiantGo",
        API_VERSION="1.0",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/api",
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="docs",
        OPENAPI_SWAGGER_UI_URL=docs.SWAGGER_ASSETS,
    )
    svc = services or connect_services(settings)
    app.extensions["radiantgo"] = svc
    app.extensions["celery"] = create_celery_app(settings)
    app.extensions["job_waiter"] = JobWaiter(svc.redis, settings.MAX_WAITERS)
    app.extensions["request_tally"] = metrics.RequestTally(svc.redis)

    api = ProblemApi(app)
    for name, scheme in docs.SECURITY_SCHEMES.items():
        api.spec.components.security_scheme(name, scheme)
    install_path_ids(app, api)
    for module in (bookings, awb, flights, jobs, health, admin, monitoring, webhooks):
        api.register_blueprint(module.blp)
    if not settings.REQUIRE_API_KEYS:
        docs.document_guest_access(api.spec)
    app.register_blueprint(docs.assets)
    register_error_handlers(app)
    app.extensions["limiter"] = install_rate_limits(app, settings)
    _install_request_hooks(app, svc)
    if install_shedding(app, settings):  # outermost: a shed request costs no other work
        docs.document_shedding(api.spec, NEVER_SHED)
    return app


def _install_request_hooks(app: Flask, svc: Services) -> None:
    @app.before_request
    def begin():
        g.started = time.perf_counter()
        rid = logs.request_id(request.headers.get("X-Request-ID"))
        g.request_id = rid
        logs.clear()
        logs.bind(request_id=rid)
        has_body = request.content_length or request.headers.get("Transfer-Encoding")
        if request.method in BODY_METHODS and has_body and not request.is_json:
            raise UnsupportedMediaType("Send the body as application/json.")

    @app.after_request
    def finish(response):
        response.headers["X-Request-ID"] = g.get("request_id", "")
        elapsed_ms = (time.perf_counter() - g.get("started", time.perf_counter())) * 1000
        rule = metric_rule(request.url_rule.rule) if request.url_rule else None
        principal = g.get("principal")
        customer = principal.customer_id if isinstance(principal, Principal) else None
        app.extensions["request_tally"].record(
            metrics.endpoint_name(request.method, rule),
            response.status_code,
            elapsed_ms,
            time.time(),
            customer_id=customer,
        )
        log.info(
            "%s %s %s",
            request.method,
            request.path,
            response.status_code,
            extra={"fields": {"ms": round(elapsed_ms, 1)}},
        )
        return response
