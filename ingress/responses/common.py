"""What every answer may hold: times in UTC, links, problem details."""

from __future__ import annotations

from marshmallow import INCLUDE, Schema, fields, validate

from core.clock import to_iso


class UtcDateTime(fields.DateTime):
    """Serialized as ISO 8601 UTC with a `Z`."""

    def _serialize(self, value, attr, obj, **kwargs):
        return to_iso(value) if value is not None else None


class LinksSchema(Schema):
    job = fields.String()
    booking = fields.String()


class ProblemSchema(Schema):
    """RFC 9457 problem details, with the extension members RadiantGo adds; a
    client ignores members it does not know (the RFC's rule), so more may come."""

    class Meta:
        unknown = INCLUDE

    type = fields.String(metadata={"example": "https://radiantgo.dev/problems/validation-failed"})
    title = fields.String()
    status = fields.Integer()
    detail = fields.String()
    instance = fields.String()
    errors = fields.Dict(
        keys=fields.String(), values=fields.Raw(), metadata={"description": "field -> messages"}
    )
    flight_id = fields.String(
        metadata={"description": "flight-full, capacity-below-booked: the flight"}
    )
    short_of = fields.String(
        validate=validate.OneOf(("weight", "volume")),
        metadata={
            "description": "flight-full: the measure that ran out on that flight;"
            " capacity-below-booked: the measure the new capacity is below"
        },
    )
    awb = fields.String(metadata={"description": "awb-taken: the air waybill number"})
    job_id = fields.String(metadata={"description": "The job the problem is about"})
    links = fields.Nested(LinksSchema)
