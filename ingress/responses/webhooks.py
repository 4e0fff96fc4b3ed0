"""The answers about webhooks: endpoints, their deliveries, a test event,
and the body of each delivery."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from core.ids import WEBHOOK_DELIVERY_ID, WEBHOOK_ENDPOINT_ID, WEBHOOK_EVENT_ID
from core.webhook_endpoints import ALL_EVENTS, EVENT_TYPES, TEST_EVENT
from ingress.responses.common import UtcDateTime


class WebhookEndpointSchema(Schema):
    endpoint_id = fields.String(
        metadata={"pattern": WEBHOOK_ENDPOINT_ID.pattern, "example": WEBHOOK_ENDPOINT_ID.example}
    )
    owner = fields.String(
        allow_none=True,
        metadata={"description": "The customer (or operator) whose key made it; null: the admin's"},
    )
    url = fields.String()
    events = fields.List(fields.String(validate=validate.OneOf((*EVENT_TYPES, ALL_EVENTS))))
    description = fields.String()
    all_bookings = fields.Boolean()
    enabled = fields.Boolean()
    disabled_reason = fields.String(
        allow_none=True,
        metadata={"description": "Why deliveries stopped (a 410, days of failures, a request)"},
    )
    disabled_at = UtcDateTime(allow_none=True)
    failing_since = UtcDateTime(
        allow_none=True, metadata={"description": "The first failure since the last success"}
    )
    created_at = UtcDateTime()
    updated_at = UtcDateTime()
    version = fields.Integer()


class WebhookEndpointSecretSchema(WebhookEndpointSchema):
    secret = fields.String(
        required=True,
        metadata={
            "example": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "description": "The signing secret, shown this once (Standard Webhooks: the"
            " HMAC-SHA256 key is the base64 after `whsec_`)",
        },
    )


class WebhookEndpointPageSchema(Schema):
    items = fields.List(fields.Nested(WebhookEndpointSchema))
    next_cursor = fields.String(allow_none=True)


class WebhookTestDataSchema(Schema):
    endpoint_id = fields.String()
    message = fields.String()


class WebhookTestEventSchema(Schema):
    event_id = fields.String(
        metadata={"pattern": WEBHOOK_EVENT_ID.pattern, "example": WEBHOOK_EVENT_ID.example}
    )
    type = fields.String(validate=validate.OneOf((TEST_EVENT,)))
    created_at = UtcDateTime()
    endpoint_id = fields.String()
    data = fields.Nested(WebhookTestDataSchema)


class DeliveryAttemptSchema(Schema):
    at = UtcDateTime()
    status_code = fields.Integer(
        allow_none=True, metadata={"description": "null: no answer (refused, timed out)"}
    )
    duration_ms = fields.Float(allow_none=True)
    error = fields.String(allow_none=True)


class DeliverySchema(Schema):
    delivery_id = fields.String(
        metadata={"pattern": WEBHOOK_DELIVERY_ID.pattern, "example": WEBHOOK_DELIVERY_ID.example}
    )
    event_id = fields.String()
    event_type = fields.String()
    state = fields.String(validate=validate.OneOf(("pending", "delivered", "failed")))
    created_at = UtcDateTime()
    next_attempt_at = UtcDateTime(allow_none=True)
    attempts = fields.List(fields.Nested(DeliveryAttemptSchema))


class DeliveryEndpointStateSchema(Schema):
    enabled = fields.Boolean()
    disabled_reason = fields.String(allow_none=True)


class DeliveryPageSchema(Schema):
    deliveries = fields.List(fields.Nested(DeliverySchema))
    next_cursor = fields.String(allow_none=True)
    endpoint = fields.Nested(DeliveryEndpointStateSchema)


class WebhookEventSchema(Schema):
    """What a receiver gets: the body of each delivery."""

    id = fields.String(
        required=True,
        metadata={
            "pattern": WEBHOOK_EVENT_ID.pattern,
            "description": "The event's id, also its `webhook-id`: the same on every attempt"
            " (the receiver's idempotency key)",
        },
    )
    type = fields.String(required=True, validate=validate.OneOf((*EVENT_TYPES, TEST_EVENT)))
    created_at = UtcDateTime(required=True)
    data = fields.Dict(
        required=True,
        metadata={
            "description": "booking.* (but booking.failed): the booking as its owner reads"
            " it (GET /api/bookings/{ref_id}) at that event's status, with its `version`"
            " to order events or drop stale ones, and `event`: the event's IATA status"
            " `code` (null for a cancellation), and its `location`, `notes`,"
            " `flight_number`, `reason` or (a milestone's) `occurred_at` where given;"
            " booking.failed: the job, with `ref_id`; bulk.finished: the job;"
            " webhook.test: {endpoint_id, message}"
        },
    )
