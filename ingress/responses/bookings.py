"""The answers about bookings: one with its events, and a page of them."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from core import awb
from core.ids import REF_ID_PATTERN
from core.lifecycle import CODES, STATUSES
from core.schemas.bookings import DimensionSchema
from ingress.responses.common import UtcDateTime


class EventSchema(Schema):
    type = fields.String(metadata={"example": "BOOKING_CREATED"})
    code = fields.String(
        allow_none=True,
        validate=validate.OneOf(CODES),
        metadata={
            "example": "BKD",
            "description": "Its IATA status code (Cargo-IMP/Cargo-XML FSU): BKD booked,"
            " DEP departed, ARR arrived, DLV delivered, or a milestone (RCS, MAN, RCF,"
            " NFD); null for a cancellation, which has no FSU code",
        },
    )
    status = fields.String(
        validate=validate.OneOf(STATUSES),
        metadata={"description": "The booking's, once this event was recorded"},
    )
    at_ts = UtcDateTime(metadata={"description": "When it was recorded (the timeline's order)"})
    occurred_at = UtcDateTime(
        allow_none=True,
        metadata={"description": "A milestone's: when it happened, as reported; else null"},
    )
    location = fields.String(allow_none=True)
    notes = fields.String(allow_none=True)
    flight_number = fields.String(allow_none=True)
    reason = fields.String(allow_none=True)
    job_id = fields.String(allow_none=True)


class BookingSchema(Schema):
    flight_ids = fields.List(fields.String(), allow_none=True)
    ref_id = fields.String(metadata={"pattern": REF_ID_PATTERN.pattern})
    awb = fields.String(
        allow_none=True,
        metadata={
            "pattern": awb.CANONICAL_PATTERN,
            "description": "The air waybill number (none for bookings made before AWBs)",
        },
    )
    customer_id = fields.String(
        allow_none=True, metadata={"description": "The owner (none for older bookings)"}
    )
    origin = fields.String()
    destination = fields.String()
    pieces = fields.Integer()
    weight_kg = fields.Float()
    dimensions = fields.List(
        fields.Nested(DimensionSchema), allow_none=True, metadata={"description": "As booked"}
    )
    volume_m3 = fields.Float(
        allow_none=True,
        metadata={"description": "From the dimensions (exact to the cm3); null without them"},
    )
    volumetric_weight_kg = fields.Float(
        allow_none=True,
        metadata={
            "description": "volume in cm3 / 6,000 (the IATA divisor), to the gram; null"
            " without dimensions"
        },
    )
    chargeable_weight_kg = fields.Float(
        metadata={
            "description": "The greater of weight_kg and volumetric_weight_kg (weight_kg"
            " without dimensions), rounded up to the next 0.5 kg"
        }
    )
    customer_name = fields.String(allow_none=True)
    customer_email = fields.String(allow_none=True)
    status = fields.String(validate=validate.OneOf(STATUSES))
    version = fields.Integer()
    created_at = UtcDateTime()
    updated_at = UtcDateTime()


class BookingDetailSchema(BookingSchema):
    events = fields.List(fields.Nested(EventSchema))


class BookingPageSchema(Schema):
    items = fields.List(fields.Nested(BookingSchema))
    next_cursor = fields.String(allow_none=True)
