"""/api/webhooks: the caller's webhook endpoints (the admin's token: every
one), their secrets (core.webhook_endpoints), test events and deliveries
(core.endpoint_deliveries).

A key manages the endpoints it made; another's is a 404, never a 403. Every
view spends the caller's RATE_LIMIT_WEBHOOKS budget (per minute).
"""

from __future__ import annotations

from flask.views import MethodView

from core import access, endpoint_deliveries, webhook_endpoints
from core.clock import utcnow
from core.errors import AllBookingsRequired
from core.ids import WEBHOOK_EVENT_ID
from core.schemas.webhooks import (
    DeliveryListQuerySchema,
    WebhookCreateSchema,
    WebhookListQuerySchema,
    WebhookUpdateSchema,
)
from ingress.context import services
from ingress.docs import Blueprint, link, links, rate_limited
from ingress.responses.webhooks import (
    DeliveryPageSchema,
    DeliverySchema,
    WebhookEndpointPageSchema,
    WebhookEndpointSchema,
    WebhookEndpointSecretSchema,
    WebhookEventSchema,
    WebhookTestEventSchema,
)
from ingress.security import MINUTE, current_principal, rate_limit

blp = Blueprint("webhooks", __name__, url_prefix="/api/webhooks", description="Webhook endpoints")

RATE_LIMITED = rate_limited("Too many calls (`RATE_LIMIT_WEBHOOKS` per minute per caller).")
URL_REFUSED = (
    f"The URL may not receive deliveries (a problem of type `{webhook_endpoints.URL_REFUSED_SLUG}`:"
    " its scheme, or a host that is not public), or all_bookings is false for an endpoint"
    f" of no owner (type `{AllBookingsRequired.slug}`)."
)
ALL_BOOKINGS_FORBIDDEN = (
    "The caller's role may not do this, or all_bookings is true and the caller (or the"
    " endpoint's owner) is a customer."
)
NO_ENDPOINT = "No such endpoint, or another owner's."
DISABLED = "The endpoint is disabled (type `endpoint-disabled`): enable it first."
ENDPOINT = "$response.body#/endpoint_id"
ENDPOINT_LINKS = {
    "endpoint": link("/api/webhooks/{endpoint_id}", "get", endpoint_id=ENDPOINT),
    "update": link("/api/webhooks/{endpoint_id}", "patch", endpoint_id=ENDPOINT),
    "rotate": link("/api/webhooks/{endpoint_id}/secret", "post", endpoint_id=ENDPOINT),
    "test": link("/api/webhooks/{endpoint_id}/test", "post", endpoint_id=ENDPOINT),
    "deliveries": link("/api/webhooks/{endpoint_id}/deliveries", "get", endpoint_id=ENDPOINT),
}


def header(name: str, description: str, **schema) -> dict:
    return {
        "name": name,
        "in": "header",
        "required": True,
        "description": description,
        "schema": {"type": "string", **schema},
    }


# What a receiver gets (Standard Webhooks), documented as the create's callback.
CALLBACKS = {
    "event": {
        "{$request.body#/url}": {
            "post": {
                "summary": "An event, delivered to the endpoint",
                "description": "Sent for each subscribed event (and `webhook.test`), at least"
                " once: retried after 5 s, 5 min, 30 min, 2 h, 5 h, 10 h and 10 h until a 2xx"
                " comes within 15 s (Retry-After honoured on 429 and 503). Verify the"
                " signature before trusting the body.",
                "parameters": [
                    header(
                        "webhook-id",
                        "The event's id: the same on every attempt (an idempotency key).",
                        pattern=WEBHOOK_EVENT_ID.pattern,
                    ),
                    header(
                        "webhook-timestamp",
                        "Seconds since the epoch when this attempt was signed.",
                        pattern="^[0-9]+$",
                    ),
                    header(
                        "webhook-signature",
                        "Space-separated `v1,<base64 HMAC-SHA256 of id.timestamp.body>`, one"
                        " per live secret (two for a day after a rotation).",
                    ),
                ],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": WebhookEventSchema}},
                },
                "responses": {
                    "2XX": {"description": "Delivered."},
                    "410": {"description": "Gone: the endpoint is disabled."},
                    "default": {"description": "Not delivered: tried again later."},
                },
            }
        }
    }
}


def managed(view):
    """Who may call (WEBHOOKS: every role) and the budget spent."""
    view = blp.requires(access.WEBHOOKS)(view)
    view = blp.alt_response(429, **RATE_LIMITED)(view)
    return rate_limit("RATE_LIMIT_WEBHOOKS", MINUTE, scope="webhooks")(view)


def owner() -> str | None:
    """Whose endpoints the caller manages (None: every one)."""
    return access.webhook_owner(current_principal())


def reads_all() -> bool:
    return access.READ_ALL in current_principal().permissions


@blp.route("")
class Webhooks(MethodView):
    @managed
    @blp.arguments(WebhookCreateSchema())
    @blp.doc(callbacks=CALLBACKS)
    @links(201, **ENDPOINT_LINKS)
    @blp.alt_response(
        201,
        schema=WebhookEndpointSecretSchema,
        success=True,
        description="Created: `secret` is shown this once.",
    )
    @blp.problems(
        400, 403, 409, 413, 415, 422, described={403: ALL_BOOKINGS_FORBIDDEN, 422: URL_REFUSED}
    )
    def post(self, data):
        """Register an endpoint (at most WEBHOOK_MAX_ENDPOINTS per owner: 409 past
        them), owned by the caller's key (the admin's: no owner), with its secret."""
        svc = services()
        made = webhook_endpoints.create_endpoint(
            svc.db,
            owner=owner(),
            may_read_all=reads_all(),
            now=utcnow(),
            max_endpoints=svc.settings.WEBHOOK_MAX_ENDPOINTS,
            allow_private=svc.settings.WEBHOOK_ALLOW_PRIVATE,
            **data,
        )
        return made, 201

    @managed
    @blp.arguments(WebhookListQuerySchema(), location="query", as_kwargs=True)
    @blp.alt_response(200, schema=WebhookEndpointPageSchema, success=True)
    @blp.problems(400)
    def get(self, limit, cursor=None):
        """The caller's endpoints (the admin's token: every one) by endpoint_id,
        with `next_cursor` while more follow; secrets are never shown."""
        return webhook_endpoints.list_endpoints(
            services().db, owner=owner(), limit=limit, cursor=cursor
        )


@blp.route("/<endpoint_id:endpoint_id>")
class Webhook(MethodView):
    @managed
    @blp.alt_response(200, schema=WebhookEndpointSchema, success=True)
    @blp.problems(404, described={404: NO_ENDPOINT})
    def get(self, endpoint_id):
        """An endpoint (its secret is never shown)."""
        return webhook_endpoints.get_endpoint(services().db, endpoint_id, owner=owner())

    @managed
    @blp.arguments(WebhookUpdateSchema(), required=False)  # every field optional: the body too
    @blp.alt_response(200, schema=WebhookEndpointSchema, success=True)
    @blp.problems(
        400,
        403,
        404,
        409,
        413,
        415,
        422,
        described={403: ALL_BOOKINGS_FORBIDDEN, 404: NO_ENDPOINT, 422: URL_REFUSED},
    )
    def patch(self, data, endpoint_id):
        """Change an endpoint's url, events, description, enabled or all_bookings
        (those sent; none: the endpoint as it is)."""
        svc = services()
        return webhook_endpoints.update_endpoint(
            svc.db,
            endpoint_id,
            data,
            owner=owner(),
            may_read_all=reads_all(),
            now=utcnow(),
            allow_private=svc.settings.WEBHOOK_ALLOW_PRIVATE,
        )

    @managed
    @blp.alt_response(204, success=True, description="Deleted, with its deliveries.")
    @blp.problems(404, described={404: NO_ENDPOINT})
    def delete(self, endpoint_id):
        """Delete an endpoint and its deliveries: nothing more is sent to it."""
        webhook_endpoints.delete_endpoint(services().db, endpoint_id, owner=owner())
        return "", 204


@blp.route("/<endpoint_id:endpoint_id>/secret", methods=["POST"])
class Secret(MethodView):
    @managed
    @blp.alt_response(
        200,
        schema=WebhookEndpointSecretSchema,
        success=True,
        description="The endpoint with its new `secret`, shown this once.",
    )
    @blp.problems(404, 409, described={404: NO_ENDPOINT})
    def post(self, endpoint_id):
        """Rotate the signing secret: the old one still signs for
        WEBHOOK_SECRET_OVERLAP_H hours (24 by default); at most 3 are kept."""
        svc = services()
        return webhook_endpoints.rotate_secret(
            svc.db,
            endpoint_id,
            owner=owner(),
            now=utcnow(),
            overlap_h=svc.settings.WEBHOOK_SECRET_OVERLAP_H,
        )


@blp.route("/<endpoint_id:endpoint_id>/test", methods=["POST"])
class Test(MethodView):
    @managed
    @blp.alt_response(
        202, schema=WebhookTestEventSchema, success=True, description="Recorded: sent shortly."
    )
    @blp.problems(404, 409, described={404: NO_ENDPOINT, 409: DISABLED})
    def post(self, endpoint_id):
        """Send a `webhook.test` event to this endpoint alone."""
        event = endpoint_deliveries.send_test_event(
            services().db, endpoint_id, owner=owner(), now=utcnow()
        )
        return event, 202


@blp.route("/<endpoint_id:endpoint_id>/deliveries", methods=["GET"])
class Deliveries(MethodView):
    @managed
    @blp.arguments(DeliveryListQuerySchema(), location="query", as_kwargs=True)
    @blp.alt_response(200, schema=DeliveryPageSchema, success=True)
    @blp.problems(400, 404, described={404: NO_ENDPOINT})
    def get(self, endpoint_id, limit, cursor=None):
        """The endpoint's deliveries, newest first, each with its attempts; and
        whether the endpoint is enabled (if not, why)."""
        return endpoint_deliveries.list_deliveries(
            services().db, endpoint_id, owner=owner(), limit=limit, cursor=cursor
        )


@blp.route("/<endpoint_id:endpoint_id>/deliveries/<delivery_id:delivery_id>/retry")
class Retry(MethodView):
    @managed
    @blp.alt_response(
        202, schema=DeliverySchema, success=True, description="Pending: sent within seconds."
    )
    @blp.problems(404, 409, described={409: DISABLED})
    def post(self, endpoint_id, delivery_id):
        """Send a delivery again now, whatever became of it."""
        delivery = endpoint_deliveries.retry_delivery(
            services().db, endpoint_id, delivery_id, owner=owner(), now=utcnow()
        )
        return delivery, 202
