"""What a client may send about webhook endpoints: one to create or change,
and the queries of the endpoint and delivery lists."""

from __future__ import annotations

import re

from marshmallow import RAISE, Schema, ValidationError, fields, validate

from core.endpoint_deliveries import DELIVERY_CURSOR
from core.ids import WEBHOOK_ENDPOINT_ID
from core.schemas.fields import Identifier, Patterned, QueryInteger, StrictBoolean, Text
from core.schemas.rules import EVERY_EVENT_ALONE, EVERY_EVENT_ALONE_RULE
from core.webhook_endpoints import ALL_EVENTS, EVENT_TYPES, TEST_EVENT, URL_REFUSED_SLUG


class WebhookUrl(Patterned):
    """http(s), then printable ASCII without spaces (an IDN host in punycode);
    whether it may receive deliveries is core.webhook_targets's to say (a 422)."""

    pattern = re.compile(r"^https?://[!-~]+$")
    default_error_messages = {"pattern": "Must be an https:// URL (printable ASCII, no spaces)."}


WEBHOOK_URL_RULES = (
    "https; http too, and private, loopback and link-local hosts, only where the"
    " WEBHOOK_ALLOW_PRIVATE setting allows them. A URL of the right shape whose scheme"
    " or host (every address it resolves to must be public) may not receive deliveries"
    f" is refused with a 422 problem of type `{URL_REFUSED_SLUG}`"
)
ALL_BOOKINGS_RULES = (
    "Every booking's events, not only the owner's. True takes an operator's key or"
    " the admin token (a customer's key: 403). Endpoints of no owner (the admin's, a"
    " guest's) always have it: false for one is a 422. Default: true for those, false"
    " for a key's"
)


def _distinct(events: list) -> None:
    if len(set(events)) != len(events):
        raise ValidationError("Must not repeat an event type.")


def _every_event_alone(events: list) -> None:
    if ALL_EVENTS in events and events != [ALL_EVENTS]:
        raise ValidationError(EVERY_EVENT_ALONE)


def webhook_events_field(**kwargs) -> fields.List:
    return fields.List(
        fields.String(validate=validate.OneOf((*EVENT_TYPES, ALL_EVENTS))),
        validate=[validate.Length(min=1), _distinct, _every_event_alone],
        metadata={
            "uniqueItems": True,
            "example": ["booking.created", "booking.delivered"],
            "description": f'Event types, or ["{ALL_EVENTS}"] alone for every type'
            f" ({TEST_EVENT} is never subscribed: a test goes to its endpoint)",
        },
        **kwargs,
    )


class WebhookCreateSchema(Schema):
    TIED = (EVERY_EVENT_ALONE_RULE,)

    class Meta:
        unknown = RAISE

    url = WebhookUrl(
        required=True,
        validate=validate.Length(max=2048),
        metadata={"example": "https://example.com/webhooks", "description": WEBHOOK_URL_RULES},
    )
    events = webhook_events_field(required=True)
    description = Text(validate=validate.Length(max=256), metadata={"example": "Our TMS"})
    all_bookings = StrictBoolean(metadata={"description": ALL_BOOKINGS_RULES})


class WebhookUpdateSchema(Schema):
    """Every field optional: those sent are changed, each checked as at creation."""

    TIED = (EVERY_EVENT_ALONE_RULE,)

    class Meta:
        unknown = RAISE

    url = WebhookUrl(
        validate=validate.Length(max=2048), metadata={"description": WEBHOOK_URL_RULES}
    )
    events = webhook_events_field()
    description = Text(validate=validate.Length(max=256))
    enabled = StrictBoolean(
        metadata={
            "description": "true on a disabled endpoint clears disabled_reason, disabled_at"
            " and failing_since; false disables it (disabled_reason says it was asked)"
        }
    )
    all_bookings = StrictBoolean(metadata={"description": ALL_BOOKINGS_RULES})


class WebhookListQuerySchema(Schema):
    class Meta:
        unknown = RAISE

    limit = QueryInteger(load_default=50, validate=validate.Range(1, 100))
    cursor = Identifier(
        WEBHOOK_ENDPOINT_ID, metadata={"description": "`next_cursor` of the page before"}
    )


class DeliveryCursor(Patterned):
    pattern = DELIVERY_CURSOR
    default_error_messages = {"pattern": "Invalid cursor."}


class DeliveryListQuerySchema(Schema):
    class Meta:
        unknown = RAISE

    limit = QueryInteger(load_default=20, validate=validate.Range(1, 100))
    cursor = DeliveryCursor(metadata={"description": "`next_cursor` of the page before"})
