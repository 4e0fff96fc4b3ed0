"""The answers about customers: one, one with its new key, a page of them."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from core.access import KEY_ROLES
from ingress.responses.common import UtcDateTime


class CustomerSchema(Schema):
    customer_id = fields.String(metadata={"example": "cus_0123456789abcdef"})
    name = fields.String()
    email = fields.String()
    role = fields.String(validate=validate.OneOf(KEY_ROLES))
    key_hint = fields.String(metadata={"description": "The key's first characters"})
    active = fields.Boolean()
    created_at = UtcDateTime()
    key_rotated_at = UtcDateTime()
    disabled_at = UtcDateTime(allow_none=True)


class CustomerKeySchema(CustomerSchema):
    api_key = fields.String(
        required=True, metadata={"description": "Shown this once: only its hash is stored"}
    )


class CustomerPageSchema(Schema):
    items = fields.List(fields.Nested(CustomerSchema))
    next_cursor = fields.String(allow_none=True)
