"""What a client may send about bookings: a booking, its transitions and
milestones, bulk envelopes, the list's query."""

from __future__ import annotations

from marshmallow import (
    RAISE,
    Schema,
    ValidationError,
    fields,
    post_load,
    validate,
    validates_schema,
)

from core.booking_lists import LIST_LIMIT_DEFAULT, LIST_LIMIT_MAX
from core.bookings import CURSOR_PATTERN
from core.clock import to_iso, utcnow
from core.ids import FLIGHT_ID, REF_ID
from core.lifecycle import MILESTONES, STATUSES, TARGETS
from core.schemas.fields import (
    AwbNumber,
    CalendarDateTime,
    FlightNumber,
    IataCode,
    Identifier,
    Patterned,
    QueryInteger,
    StrictInteger,
    StrictNumber,
    Text,
    bulk_items,
    customer_id_field,
    weight_range,
)
from core.schemas.rules import (
    AWB_CHECK_DIGIT_RULE,
    AWB_RESERVED_RULE,
    DIFFERENT_ENDS_RULE,
    MILESTONE_AHEAD,
    NOT_AHEAD_RULE,
    PIECES_DIMENSIONED_RULE,
)

MAX_BOOKING_WEIGHT_KG = 10_000  # a booking's weight; a route search's weight_kg too
MAX_BOOKING_PIECES = 1000
# A piece as a ULD position takes it: the main deck's 318 x 244 cm pallet
# (PMC/P6P), 300 cm high. Whole centimetres, as a waybill's dimension line
# gives them: a volume is then an exact integer (core.measures). With these
# bounds a booking holds at most 1,000 x 23,277,600 cm3 (2.3e10): far inside
# MongoDB's int64, and so is any sum of them on a flight.
PIECE_BOUNDS_CM = {"length_cm": 318, "width_cm": 244, "height_cm": 300}
MAX_DIMENSION_LINES = 50


class DimensionSchema(Schema):
    """`count` pieces of one size, in whole centimetres."""

    class Meta:
        unknown = RAISE

    count = StrictInteger(
        required=True, validate=validate.Range(1, MAX_BOOKING_PIECES), metadata={"example": 5}
    )
    length_cm = StrictInteger(
        required=True,
        validate=validate.Range(1, PIECE_BOUNDS_CM["length_cm"]),
        metadata={"example": 120},
    )
    width_cm = StrictInteger(
        required=True,
        validate=validate.Range(1, PIECE_BOUNDS_CM["width_cm"]),
        metadata={"example": 80},
    )
    height_cm = StrictInteger(
        required=True,
        validate=validate.Range(1, PIECE_BOUNDS_CM["height_cm"]),
        metadata={"example": 100},
    )


class BookingCreateSchema(Schema):
    TIED = (DIFFERENT_ENDS_RULE, PIECES_DIMENSIONED_RULE, AWB_CHECK_DIGIT_RULE, AWB_RESERVED_RULE)

    class Meta:
        unknown = RAISE

    origin = IataCode(required=True, metadata={"example": "DEL"})
    destination = IataCode(
        required=True, metadata={"example": "BLR", "description": "Differs from origin"}
    )
    pieces = StrictInteger(
        required=True, validate=validate.Range(1, MAX_BOOKING_PIECES), metadata={"example": 5}
    )
    weight_kg = StrictNumber(
        required=True, validate=weight_range(MAX_BOOKING_WEIGHT_KG), metadata={"example": 125.5}
    )
    customer_name = Text(validate=validate.Length(1, 100), metadata={"example": "Acme Corp"})
    customer_email = fields.Email(
        validate=validate.Length(max=254), metadata={"example": "shipping@acme.com"}
    )
    flight_ids = fields.List(
        Identifier(FLIGHT_ID),
        validate=validate.Length(1, 2),
        metadata={
            "description": "The route booked: 1 flight, or 2 via a third airport",
            "example": ["RG0001-20261128"],
        },
    )
    dimensions = fields.List(
        fields.Nested(DimensionSchema),
        validate=validate.Length(1, MAX_DIMENSION_LINES),
        metadata={
            "description": "The pieces' sizes, one line per size; without them the volume"
            " is unknown and only the weight is reserved on the flights",
            "example": [{"count": 5, "length_cm": 120, "width_cm": 80, "height_cm": 100}],
        },
    )
    awb = AwbNumber(
        metadata={
            "example": "176-12345675",
            "description": "The shipment's air waybill number, from its airline's stock"
            " (the hyphen may be left out). Without it, RadiantGo issues one of its"
            " AWB_PREFIX. Another booking's: 409 `awb-taken`",
        }
    )

    @validates_schema
    def _route_differs(self, data, **kwargs):
        if data.get("origin") and data.get("origin") == data.get("destination"):
            raise ValidationError(DIFFERENT_ENDS_RULE.message, DIFFERENT_ENDS_RULE.field)

    @validates_schema
    def _every_piece_dimensioned(self, data, **kwargs):
        lines, pieces = data.get("dimensions"), data.get("pieces")
        if lines and pieces is not None and sum(line["count"] for line in lines) != pieces:
            raise ValidationError(PIECES_DIMENSIONED_RULE.message, PIECES_DIMENSIONED_RULE.field)


class TransitionSchema(Schema):
    """Body of depart / arrive / deliver (every field optional)."""

    class Meta:
        unknown = RAISE

    location = Text(validate=validate.Length(1, 100), metadata={"example": "DEL Airport"})
    notes = Text(validate=validate.Length(max=500), metadata={"example": "Departed on schedule"})
    flight_number = FlightNumber(metadata={"example": "RG001"})


class CancelSchema(TransitionSchema):
    reason = Text(validate=validate.Length(1, 500), metadata={"example": "Customer request"})


class MilestoneSchema(Schema):
    """Body of POST /api/bookings/{ref_id}/milestones."""

    TIED = (NOT_AHEAD_RULE,)

    class Meta:
        unknown = RAISE

    code = fields.String(
        required=True,
        validate=validate.OneOf(tuple(MILESTONES)),
        metadata={
            "example": "RCS",
            "description": "RCS (received from shipper) and MAN (manifested) while the"
            " booking is BOOKED; RCF (received from flight) and NFD (notified for"
            " delivery) while it is ARRIVED",
        },
    )
    location = IataCode(
        required=True,
        metadata={"example": "DEL", "description": "The airport where it happened (IATA code)"},
    )
    at = CalendarDateTime(
        metadata={
            "example": "2026-11-28T08:30:00+05:30",
            "description": "When it happened (default: when it is recorded)",
        }
    )

    @validates_schema
    def _not_ahead(self, data, **kwargs):
        if "at" in data and data["at"] > utcnow() + MILESTONE_AHEAD:
            raise ValidationError(NOT_AHEAD_RULE.message, NOT_AHEAD_RULE.field)

    @post_load
    def _at_as_text(self, data, **kwargs):
        # A job's request travels as JSON (kombu, the idempotency fingerprint).
        if "at" in data:
            data["at"] = to_iso(data["at"])
        return data


class BulkBookingsSchema(Schema):
    """Envelope of a bulk booking: items are validated one by one by the worker."""

    class Meta:
        unknown = RAISE

    customer_id = customer_id_field("The customer who will own every booking (default: none)")

    bookings = bulk_items("Bookings shaped like POST /api/bookings")


class EventDataSchema(TransitionSchema):
    reason = Text(validate=validate.Length(1, 500))


class BulkStatusItemSchema(Schema):
    class Meta:
        unknown = RAISE

    ref_id = Identifier(REF_ID, required=True)
    newStatus = fields.String(required=True, validate=validate.OneOf(TARGETS))
    eventData = fields.Nested(EventDataSchema, load_default=dict)


class BulkStatusSchema(Schema):
    """Envelope of a bulk status update: items are validated one by one by the worker."""

    class Meta:
        unknown = RAISE

    updates = bulk_items("Items shaped like BulkStatusItemSchema")


class BookingCursor(Patterned):
    pattern = CURSOR_PATTERN
    default_error_messages = {"pattern": "Invalid cursor."}


class BookingListQuerySchema(Schema):
    TIED = (AWB_CHECK_DIGIT_RULE,)

    class Meta:
        unknown = RAISE

    awb = AwbNumber(
        metadata={"description": "The booking with this air waybill number (at most one)"}
    )
    status = fields.String(validate=validate.OneOf(STATUSES))
    origin = IataCode()
    destination = IataCode()
    limit = QueryInteger(
        load_default=LIST_LIMIT_DEFAULT, validate=validate.Range(1, LIST_LIMIT_MAX)
    )
    cursor = BookingCursor(metadata={"description": "`next_cursor` of the page before"})
