"""What the admin may send about customers: a new one, the list's query."""

from __future__ import annotations

from marshmallow import RAISE, Schema, fields, validate

from core.access import KEY_ROLES
from core.schemas.fields import QueryInteger, Text, customer_id_field


class CustomerCreateSchema(Schema):
    class Meta:
        unknown = RAISE

    name = Text(required=True, validate=validate.Length(1, 100), metadata={"example": "Acme Corp"})
    email = fields.Email(
        required=True, validate=validate.Length(max=254), metadata={"example": "ops@acme.com"}
    )
    role = fields.String(
        required=True,
        validate=validate.OneOf(KEY_ROLES),
        metadata={"description": "customer: books and tracks its own; operator: handles all"},
    )


class CustomerListQuerySchema(Schema):
    class Meta:
        unknown = RAISE

    limit = QueryInteger(load_default=100, validate=validate.Range(1, 500))
    cursor = customer_id_field()
