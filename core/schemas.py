"""Marshmallow schemas: what clients may send, and the shapes we answer with.

Input schemas validate; output schemas document (the OpenAPI document is
generated from them) and describe exactly what `core` builds for responses.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import timedelta

from marshmallow import (
    INCLUDE,
    RAISE,
    Schema,
    ValidationError,
    fields,
    post_load,
    validate,
    validates_schema,
)

from core import awb
from core.access import KEY_ROLES
from core.booking_lists import LIST_LIMIT_DEFAULT, LIST_LIMIT_MAX
from core.bookings import CURSOR_PATTERN
from core.clock import EARLIEST_DAY, LATEST_DAY, in_calendar, to_iso, utcnow
from core.ids import (
    AWB,
    CUSTOMER_ID,
    FLIGHT_ID,
    REF_ID,
    REF_ID_PATTERN,
    WEBHOOK_DELIVERY_ID,
    WEBHOOK_ENDPOINT_ID,
    WEBHOOK_EVENT_ID,
    Shape,
)
from core.lifecycle import CODES, MILESTONES, STATUSES, TARGETS
from core.locks import LATENCY_SAMPLES, LOCK_KINDS, LOCK_PREFIXES
from core.metrics import SAMPLES, TOP_WEBHOOK_ENDPOINTS, WEBHOOK_BACKLOG_SCAN
from core.webhook_endpoints import (
    ALL_EVENTS,
    DELIVERY_CURSOR,
    EVENT_TYPES,
    TEST_EVENT,
    URL_REFUSED_SLUG,
)

IATA_PATTERN = re.compile(r"^[A-Za-z]{3}$")


@dataclass(frozen=True)
class TiedFields:
    """A rule that ties two fields together (or a field to the time the request
    is received), which JSON Schema cannot state. A schema lists its rules in
    TIED; an operation taking it states them in its description and its 400's
    (ingress.docs), and the 400 names `field` with `message`."""

    field: str
    message: str
    statement: str


DIFFERENT_ENDS = "Must differ from origin."
ARRIVES_AFTER = "Must be after departure_ts."
DIFFERENT_ENDS_RULE = TiedFields(
    "destination", DIFFERENT_ENDS, "`destination` must differ from `origin` (in any case)"
)
ARRIVES_AFTER_RULE = TiedFields(
    "arrival_ts", ARRIVES_AFTER, "`arrival_ts` must be after `departure_ts`"
)
EVERY_EVENT_ALONE = f'"{ALL_EVENTS}" stands alone: ["{ALL_EVENTS}"], or event types.'
EVERY_EVENT_ALONE_RULE = TiedFields(
    "events", EVERY_EVENT_ALONE, f'`events` holds `"{ALL_EVENTS}"` only as its one item'
)
# A milestone is what happened: a time ahead of ours by more than a reporter's
# clock may be is a typo (or a plan, which FSU does not carry).
MILESTONE_AHEAD = timedelta(minutes=5)
NOT_AHEAD = "Must not be in the future."
NOT_AHEAD_RULE = TiedFields(
    "at", NOT_AHEAD, "`at` must not be later than the time it is received (5 minutes' slack)"
)
# A booking's dimension lines describe every piece once (core.measures).
PIECES_DIMENSIONED = "The dimension lines' counts must add up to pieces."
PIECES_DIMENSIONED_RULE = TiedFields(
    "dimensions",
    PIECES_DIMENSIONED,
    "the `count`s of `dimensions`, when given, add up to `pieces`",
)
# An AWB's check digit (core.awb), which no pattern states; and the AWBs of
# RadiantGo's own prefix, which only it issues (checked as the create is accepted).
AWB_CHECK_DIGIT_RULE = TiedFields(
    "awb", awb.CHECK_DIGIT_MESSAGE, "`awb`'s check digit (its last) must be its serial mod 7"
)
AWB_RESERVED_RULE = TiedFields(
    "awb",
    awb.RESERVED_MESSAGE,
    "`awb` must not be of RadiantGo's own prefix (the AWB_PREFIX setting), whose"
    " numbers it issues itself",
)
JOB_STATES = ("queued", "running", "succeeded", "failed")


# -- fields -------------------------------------------------------------------


class Patterned(fields.String):
    """A string that must match `pattern` whole; the OpenAPI document states it too."""

    pattern: re.Pattern
    upper = False  # upper-case what it takes in (codes), after the match
    default_error_messages = {"pattern": "Invalid value."}

    def __init__(self, **kwargs):
        metadata = {"pattern": self.pattern.pattern, **kwargs.pop("metadata", {})}
        super().__init__(metadata=metadata, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        if not self.pattern.fullmatch(text):
            raise self.make_error("pattern")
        return text.upper() if self.upper else text


class Identifier(Patterned):
    """An id of one shape (core.ids), matched whole: a trailing newline is no id."""

    def __init__(self, shape: Shape, **kwargs):
        self.pattern = re.compile(shape.pattern)
        metadata = {"example": shape.example, **kwargs.pop("metadata", {})}
        super().__init__(metadata=metadata, **kwargs)
        self.error_messages["pattern"] = f"Must be {shape.described()}."


class AwbNumber(Identifier):
    """An air waybill number, hyphen optional in, PPP-SSSSSSSC out; its check
    digit must be its serial mod 7 (AWB_CHECK_DIGIT_RULE)."""

    def __init__(self, **kwargs):
        super().__init__(AWB, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        if awb.broken_rule(text) is not None:
            raise ValidationError(AWB_CHECK_DIGIT_RULE.message)
        return awb.normalized(text)


class IataCode(Patterned):
    """Three letters, any case in, upper case out."""

    pattern = IATA_PATTERN
    upper = True
    default_error_messages = {"pattern": "Must be a three-letter IATA code."}


class Text(Patterned):
    """A string without control characters (a NUL byte is never a name)."""

    pattern = re.compile(r"^[^\x00-\x08\x0b-\x1f\x7f]*$")  # tab and newline allowed
    default_error_messages = {
        "pattern": "Must not contain control characters.",
        "encoding": "Must be valid Unicode text.",
    }

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        try:
            text.encode("utf-8")  # a lone surrogate ("\ud800") parses as JSON but cannot be stored
        except UnicodeEncodeError:
            raise self.make_error("encoding") from None
        return text


class StrictInteger(fields.Integer):
    """A JSON integer: not a string, not a boolean, not 5.0."""

    def __init__(self, **kwargs):
        super().__init__(strict=True, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, bool):
            raise self.make_error("invalid")
        return super()._deserialize(value, attr, data, **kwargs)


class StrictBoolean(fields.Boolean):
    """A JSON true or false: not "true", not 1."""

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, bool):
            raise self.make_error("invalid")
        return value


class StrictNumber(fields.Float):
    """A finite JSON number: not a string, not a boolean."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.make_error("invalid")
        if isinstance(value, int) and abs(value) > 2**53:
            raise self.make_error("too_large")
        result = super()._deserialize(value, attr, data, **kwargs)
        if not math.isfinite(result):
            raise self.make_error("special")
        return result


# The calendar's years (core.clock), as OpenAPI can say it of a date string.
CALENDAR_PATTERN = r"^20[0-9]{2}-"
CALENDAR_TEXT = f"between {EARLIEST_DAY} and {LATEST_DAY}"


class CalendarDate(fields.Date):
    """A date in RadiantGo's calendar (core.clock): a search far outside it is a 400."""

    default_error_messages = {"calendar": f"Must be a date {CALENDAR_TEXT}."}

    def __init__(self, **kwargs):
        metadata = {
            "pattern": CALENDAR_PATTERN + "[0-9]{2}-[0-9]{2}$",
            **kwargs.pop("metadata", {}),
        }
        super().__init__(metadata=metadata, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        day = super()._deserialize(value, attr, data, **kwargs)
        if not EARLIEST_DAY <= day <= LATEST_DAY:
            raise self.make_error("calendar")
        return day


class CalendarDateTime(fields.AwareDateTime):
    """A moment with a UTC offset, in RadiantGo's calendar once in UTC."""

    default_error_messages = {"calendar": f"Must be a time {CALENDAR_TEXT} (UTC)."}

    def __init__(self, **kwargs):
        metadata = {"pattern": CALENDAR_PATTERN, **kwargs.pop("metadata", {})}
        super().__init__(format="iso", metadata=metadata, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        try:
            moment = super()._deserialize(value, attr, data, **kwargs)
            inside = in_calendar(moment)
        except OverflowError:  # an offset that pushes it past datetime's own edge
            inside = False
        if not inside:
            raise self.make_error("calendar")
        return moment


class UtcDateTime(fields.DateTime):
    """Serialized as ISO 8601 UTC with a `Z`."""

    def _serialize(self, value, attr, obj, **kwargs):
        return to_iso(value) if value is not None else None


# -- input --------------------------------------------------------------------


FLIGHT_ID_PATTERN = re.compile(FLIGHT_ID.pattern)  # the anchored form; match it with fullmatch


MAX_BOOKING_WEIGHT_KG = 10_000  # a booking's weight; a route search's weight_kg too
# Cargo space is kept in whole grams (core.measures.grams): a weight, a search's
# weight or a capacity below one gram would round to nothing.
MIN_WEIGHT_KG = 0.001


def weight_range(max_kg: float) -> validate.Range:
    """At least one gram, at most `max_kg` (the OpenAPI document says both)."""
    return validate.Range(MIN_WEIGHT_KG, max_kg)


MAX_BOOKING_PIECES = 1000
# A piece as a ULD position takes it: the main deck's 318 x 244 cm pallet
# (PMC/P6P), 300 cm high. Whole centimetres, as a waybill's dimension line
# gives them: a volume is then an exact integer (core.measures). With these
# bounds a booking holds at most 1,000 x 23,277,600 cm3 (2.3e10): far inside
# MongoDB's int64, and so is any sum of them on a flight.
PIECE_BOUNDS_CM = {"length_cm": 318, "width_cm": 244, "height_cm": 300}
MAX_DIMENSION_LINES = 50
MAX_FLIGHT_CAPACITY_M3 = 1500  # an An-225's hold was ~1,300 m3
# Volume is kept in whole cm3: a volume below one would round to nothing.
MIN_VOLUME_M3 = 0.000001


def volume_range(max_m3: float) -> validate.Range:
    """At least one cm3, at most `max_m3` (the OpenAPI document says both)."""
    return validate.Range(MIN_VOLUME_M3, max_m3)


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


FLIGHT_NUMBER_PATTERN = re.compile(r"^[A-Za-z0-9]{2}[A-Za-z]?[0-9]{1,4}[A-Za-z]?$")


class FlightNumber(Patterned):
    """An airline designator and a number, such as RG001; upper case out."""

    pattern = FLIGHT_NUMBER_PATTERN
    upper = True
    default_error_messages = {"pattern": "Must be a flight number such as RG001."}


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


MAX_FLIGHT_DURATION_H = 24
MAX_FLIGHT_CAPACITY_KG = 250_000  # the heaviest freighter ever flown lifted ~250 t


class FlightSchema(Schema):
    """One flight in an import: times need a UTC offset and are stored in UTC."""

    TIED = (DIFFERENT_ENDS_RULE, ARRIVES_AFTER_RULE)

    class Meta:
        unknown = RAISE

    flight_number = FlightNumber(required=True, metadata={"example": "RG001"})
    airline = Text(
        required=True, validate=validate.Length(1, 100), metadata={"example": "RadiantGo Airlines"}
    )
    origin = IataCode(required=True, metadata={"example": "NYC"})
    destination = IataCode(
        required=True, metadata={"example": "LAX", "description": "Differs from origin"}
    )
    departure_ts = CalendarDateTime(required=True, metadata={"example": "2025-01-20T10:00:00Z"})
    arrival_ts = CalendarDateTime(
        required=True,
        metadata={
            "example": "2025-01-20T16:00:00Z",
            "description": f"After departure_ts, at most {MAX_FLIGHT_DURATION_H} h later",
        },
    )
    capacity_kg = StrictNumber(
        validate=weight_range(MAX_FLIGHT_CAPACITY_KG),
        metadata={
            "example": 20000,
            "description": "Cargo capacity in kg; without it, the DEFAULT_FLIGHT_CAPACITY_KG"
            " setting (20,000 kg by default)",
        },
    )
    capacity_m3 = StrictNumber(
        validate=volume_range(MAX_FLIGHT_CAPACITY_M3),
        metadata={
            "example": 120,
            "description": "Cargo volume in m3; without it, derived from the capacity in kg"
            " at the IATA standard density (6,000 cm3 per kg: 166.67 kg per m3)",
        },
    )

    @validates_schema
    def _consistent(self, data, **kwargs):
        if data["origin"] == data["destination"]:
            raise ValidationError(DIFFERENT_ENDS_RULE.message, DIFFERENT_ENDS_RULE.field)
        duration = data["arrival_ts"] - data["departure_ts"]
        if duration.total_seconds() <= 0:
            raise ValidationError(ARRIVES_AFTER_RULE.message, ARRIVES_AFTER_RULE.field)
        if duration.total_seconds() > MAX_FLIGHT_DURATION_H * 3600:
            raise ValidationError(
                f"A flight lasts at most {MAX_FLIGHT_DURATION_H} h.", "arrival_ts"
            )


def bulk_items(description: str) -> fields.List:
    """A bulk request's items: at least one, each kept as sent; the worker
    validates them one by one and reports each by its index."""
    return fields.List(
        fields.Raw(allow_none=True),
        required=True,
        validate=validate.Length(min=1),
        metadata={"description": description},
    )


def customer_id_field(description: str = "") -> Identifier:
    return Identifier(CUSTOMER_ID, metadata={"description": description} if description else {})


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


class FlightImportSchema(Schema):
    """The envelope of a bulk flight import; each item is validated by the worker,
    so one bad flight is reported by its index instead of sinking the batch."""

    class Meta:
        unknown = RAISE

    flights = bulk_items("Flights shaped like FlightSchema")


class QueryNumber(fields.Float):
    """A finite number as a query string writes one (`125.5`, `1e3`): not ` 12`,
    `1_000` or non-ASCII digits, which float() would take though no JSON
    Schema number is written that way."""

    WRITTEN = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?")

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, str) or not self.WRITTEN.fullmatch(value):
            raise self.make_error("invalid")
        return super()._deserialize(value, attr, data, **kwargs)


class QueryInteger(fields.Integer):
    """An integer as a query string writes one (`20`): not `20\\n`, ` 20` or `2_0`,
    which int() would take though no JSON Schema integer is written that way."""

    WRITTEN = re.compile(r"[+-]?[0-9]+")

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, str) or not self.WRITTEN.fullmatch(value):
            raise self.make_error("invalid")
        return super()._deserialize(value, attr, data, **kwargs)


class DayQuerySchema(Schema):
    """A route and a UTC day: what the flights list and the route search share."""

    TIED = (DIFFERENT_ENDS_RULE,)

    class Meta:
        unknown = RAISE

    origin = IataCode(required=True, metadata={"example": "DEL"})
    destination = IataCode(
        required=True, metadata={"example": "BLR", "description": "Differs from origin"}
    )
    date = CalendarDate(required=True, metadata={"example": "2026-11-28"})

    @validates_schema
    def _route_differs(self, data, **kwargs):
        if data.get("origin") and data.get("origin") == data.get("destination"):
            raise ValidationError(DIFFERENT_ENDS_RULE.message, DIFFERENT_ENDS_RULE.field)


class RouteQuerySchema(DayQuerySchema):
    limit = QueryInteger(load_default=20, validate=validate.Range(1, 100))
    weight_kg = QueryNumber(
        validate=weight_range(MAX_BOOKING_WEIGHT_KG),
        metadata={
            "example": 125.5,
            "description": "Only options with room for this weight on every leg"
            " (available_kg at least weight_kg, compared in whole grams as a booking"
            " reserves them); `counts` count those options",
        },
    )
    volume_m3 = QueryNumber(
        validate=volume_range(MAX_FLIGHT_CAPACITY_M3),
        metadata={
            "example": 1.2,
            "description": "Only options with room for this volume on every leg"
            " (available_m3 at least volume_m3, compared in whole cm3 as a booking"
            " reserves them); with weight_kg, room for both",
        },
    )


class FlightListQuerySchema(DayQuerySchema):
    limit = QueryInteger(load_default=100, validate=validate.Range(1, 500))


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


class WebhookUrl(Patterned):
    """http(s), then printable ASCII without spaces (an IDN host in punycode);
    whether it may receive deliveries is core.egress's to say (a 422)."""

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


# -- output -------------------------------------------------------------------


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


class JobAcceptedSchema(Schema):
    job_id = fields.String(required=True)
    state = fields.String(required=True, validate=validate.OneOf(JOB_STATES))
    ref_id = fields.String()
    awb = fields.String(
        metadata={
            "pattern": awb.CANONICAL_PATTERN,
            "description": "A create's air waybill number: the request's, or one RadiantGo"
            " issued. Absent when it was accepted while MongoDB was out and its stock of"
            " serials dry: its worker issues it as it stores the booking",
        }
    )
    links = fields.Nested(LinksSchema, required=True)


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


AVAILABILITY_LAG = (
    "May lag the reservations by up to CACHE_TTL_BOOKINGS (60 s by default): answers"
    " are cached that long at most"
)


class FlightOutSchema(Schema):
    flight_id = fields.String(metadata={"example": "RG001-20250120"})
    flight_number = fields.String()
    airline = fields.String()
    origin = fields.String()
    destination = fields.String()
    departure_ts = UtcDateTime()
    arrival_ts = UtcDateTime()
    # Null only for a flight stored before flights had a capacity, until a
    # worker starts and gives it the default (core.flights.give_capacity).
    capacity_kg = fields.Float(
        allow_none=True, validate=validate.Range(min=0), metadata={"example": 20000}
    )
    booked_kg = fields.Float(
        allow_none=True,
        validate=validate.Range(min=0),
        metadata={"example": 125.5, "description": AVAILABILITY_LAG},
    )
    available_kg = fields.Float(
        allow_none=True,
        validate=validate.Range(min=0),
        metadata={
            "example": 19874.5,
            "description": f"capacity_kg - booked_kg. {AVAILABILITY_LAG}",
        },
    )
    # Null only for a flight stored before flights had a volume, until a
    # worker starts and derives it (core.flights.give_volume).
    capacity_m3 = fields.Float(
        allow_none=True, validate=validate.Range(min=0), metadata={"example": 120}
    )
    booked_m3 = fields.Float(
        allow_none=True,
        validate=validate.Range(min=0),
        metadata={"example": 0.96, "description": AVAILABILITY_LAG},
    )
    available_m3 = fields.Float(
        allow_none=True,
        validate=validate.Range(min=0),
        metadata={
            "example": 119.04,
            "description": f"capacity_m3 - booked_m3. {AVAILABILITY_LAG}",
        },
    )


class FlightListSchema(Schema):
    items = fields.List(fields.Nested(FlightOutSchema))
    count = fields.Integer()


class RouteOptionSchema(Schema):
    flights = fields.List(fields.Nested(FlightOutSchema))
    departure_ts = UtcDateTime()
    arrival_ts = UtcDateTime()
    total_duration_minutes = fields.Integer()
    via = fields.String()
    layover_minutes = fields.Integer()


class RouteCountsSchema(Schema):
    direct = fields.Integer()
    one_transit = fields.Integer()


class RouteSearchSchema(Schema):
    origin = fields.String()
    destination = fields.String()
    date = fields.String()
    direct = fields.List(fields.Nested(RouteOptionSchema))
    one_transit = fields.List(fields.Nested(RouteOptionSchema))
    counts = fields.Nested(RouteCountsSchema)


class CacheKindStatsSchema(Schema):
    hits = fields.Integer()
    misses = fields.Integer()
    hit_rate = fields.Float(allow_none=True)


class CacheStatsSchema(Schema):
    kinds = fields.Dict(keys=fields.String(), values=fields.Nested(CacheKindStatsSchema))
    keys = fields.Dict(keys=fields.String(), values=fields.Integer())


class CacheClearedSchema(Schema):
    deleted = fields.Integer()


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


class HeldLockSchema(Schema):
    key = fields.String(
        metadata={
            "example": "flight:RG001-20261201",
            "description": "Its prefix says what it guards: "
            + ", ".join(f"{prefix}..." for prefix in LOCK_PREFIXES),
        }
    )
    ttl_ms = fields.Integer()


class HeldLocksSchema(Schema):
    locks = fields.List(fields.Nested(HeldLockSchema))
    count = fields.Integer()


class BookingDetailSchema(BookingSchema):
    events = fields.List(fields.Nested(EventSchema))


class BookingPageSchema(Schema):
    items = fields.List(fields.Nested(BookingSchema))
    next_cursor = fields.String(allow_none=True)


class ProgressSchema(Schema):
    total = fields.Integer()
    done = fields.Integer()
    failed = fields.Integer()


class JobSchema(Schema):
    job_id = fields.String()
    type = fields.String(metadata={"example": "booking.create"})
    state = fields.String(validate=validate.OneOf(JOB_STATES))
    created_at = UtcDateTime()
    started_at = UtcDateTime(allow_none=True)
    finished_at = UtcDateTime(allow_none=True)
    result = fields.Dict(allow_none=True)
    error = fields.Nested(ProblemSchema, allow_none=True)
    links = fields.Nested(LinksSchema)
    progress = fields.Nested(
        ProgressSchema, metadata={"description": "Bulk jobs: items so far, while running"}
    )


class ServiceHealthSchema(Schema):
    """One service's probe (core.health). Services of several nodes (a RabbitMQ
    cluster, the lock masters) probe each node and count those that answered."""

    status = fields.String(
        required=True,
        validate=validate.OneOf(("healthy", "degraded", "unhealthy")),
        metadata={
            "description": "degraded: a service of several nodes with some of them down"
            " (RabbitMQ: at least one answers; the lock masters: a majority answers)"
        },
    )
    latency_ms = fields.Float(
        required=True,
        allow_none=True,
        metadata={
            "description": "The probe's round trip; of several nodes, the slowest answering"
            " one's. Null when none answered."
        },
    )
    nodes_up = fields.Integer(
        validate=validate.Range(min=0),
        metadata={"description": "Services of several nodes only: the nodes that answered"},
    )
    nodes = fields.Integer(
        validate=validate.Range(min=2),
        metadata={"description": "Services of several nodes only: the nodes probed"},
    )


class HealthMetricsSchema(Schema):
    totalRequests = fields.Integer()
    cacheHitRate = fields.String(allow_none=True, metadata={"example": "87.3%"})
    averageResponseTime = fields.Float()
    requestsPerSecond = fields.String(metadata={"example": "12.5"})


class HealthSchema(Schema):
    status = fields.String(validate=validate.OneOf(("healthy", "degraded", "unhealthy")))
    services = fields.Dict(
        keys=fields.String(),
        values=fields.Nested(ServiceHealthSchema),
        metadata={
            "description": "mongodb, redis, rabbitmq and workers; locks (the lock masters)"
            " when LOCK_REDIS_URLS is set"
        },
    )
    metrics = fields.Nested(HealthMetricsSchema)


class RecommendationSchema(Schema):
    type = fields.String(metadata={"example": "scale_up"})
    component = fields.String(metadata={"example": "backend"})
    reason = fields.String()
    priority = fields.String(metadata={"example": "HIGH"})


class LockAcquireMsSchema(Schema):
    p50 = fields.Float(allow_none=True)
    p95 = fields.Float(allow_none=True)
    max = fields.Float(allow_none=True)


class LockFiguresSchema(Schema):
    acquired = fields.Integer(metadata={"description": "Locks acquired"})
    failed = fields.Integer(
        metadata={"description": "Acquisitions given up: the lock stayed taken through every try"}
    )
    errors = fields.Integer(metadata={"description": "Tries that found Redis unreachable"})
    attempts = fields.Integer(metadata={"description": "Tries, acquired or failed"})
    average_attempts = fields.Float(
        metadata={"description": "Tries per acquisition or failure: above 1 is contention"}
    )
    acquire_ms = fields.Nested(
        LockAcquireMsSchema,
        metadata={
            "description": f"First try -> acquired, over the last {LATENCY_SAMPLES:,} acquisitions"
        },
    )
    held = fields.Integer(metadata={"description": "Locks held now"})


# One property per lock kind (core.locks.LOCK_KINDS), so the document names them all.
LockKindsSchema = Schema.from_dict(
    {kind: fields.Nested(LockFiguresSchema) for kind in LOCK_KINDS}, name="LockKindsSchema"
)


class LockPerformanceSchema(LockFiguresSchema):
    by_kind = fields.Nested(
        LockKindsSchema,
        metadata={
            "description": "The same figures per kind of lock (its key's prefix): booking"
            " locks (transitions), flight locks (cargo space), bulk and singleton locks;"
            " the figures above are every lock's together"
        },
    )


class LedgerFiguresSchema(Schema):
    checked_at = fields.String(
        metadata={"description": "When the last audit ran (beat's, or `make ledger`)"}
    )
    flights_checked = fields.Integer(metadata={"description": "Flights that carry anything"})
    flights_unbalanced = fields.Integer(
        metadata={"description": "Flights whose books do not balance: `make ledger` names them"}
    )
    drift_kg = fields.Float(
        metadata={"description": "Booked weight that no reservation accounts for, summed"}
    )
    drift_m3 = fields.Float(
        metadata={"description": "Booked volume that no reservation accounts for, summed"}
    )
    orphans = fields.Integer(metadata={"description": "Reservations no live booking holds"})
    unreserved = fields.Integer(metadata={"description": "Live bookings missing a reservation"})


class WebhookCountsSchema(Schema):
    delivered = fields.Integer(metadata={"description": "Deliveries that got a 2xx"})
    failed = fields.Integer(
        metadata={
            "description": "Deliveries given up: the retry schedule spent, or the endpoint"
            " disabled or deleted"
        }
    )
    attempts = fields.Integer(metadata={"description": "Attempts made"})
    failed_attempts = fields.Integer(
        metadata={"description": "Attempts without a 2xx (an error, a timeout, any other status)"}
    )
    backlog = fields.Integer(metadata={"description": "Deliveries pending"})
    due = fields.Integer(
        metadata={"description": "Of the pending, those due now (the rest wait for a retry)"}
    )
    in_flight = fields.Integer(metadata={"description": "Attempts under way now"})


class WebhookEndpointFiguresSchema(WebhookCountsSchema):
    endpoint_id = fields.String()


class WebhookLagSchema(Schema):
    p50 = fields.Float(allow_none=True)
    p95 = fields.Float(allow_none=True)
    p99 = fields.Float(allow_none=True)


class WebhookFiguresSchema(WebhookCountsSchema):
    backlog_capped = fields.Boolean(
        metadata={
            "description": f"The backlog was counted up to {WEBHOOK_BACKLOG_SCAN:,}"
            " pending deliveries: there are at least that many"
        }
    )
    disabled_endpoints = fields.Integer(metadata={"description": "Endpoints disabled"})
    lag_ms = fields.Nested(
        WebhookLagSchema,
        metadata={
            "description": f"An event's commit -> its 2xx, over the last {SAMPLES:,}"
            " deliveries (retries included)"
        },
    )
    backlog_growing = fields.Boolean(
        metadata={
            "description": "The backlog rose in each of the last samples (beat's, as the"
            " queue depths)"
        }
    )
    growth_per_s = fields.Float(allow_none=True)
    growing_for_s = fields.Float(allow_none=True)
    history = fields.List(
        fields.Integer(), metadata={"description": "The backlog's latest samples, newest first"}
    )
    endpoints = fields.List(
        fields.Nested(WebhookEndpointFiguresSchema),
        metadata={
            "description": f"The {TOP_WEBHOOK_ENDPOINTS} endpoints with the largest"
            " backlog, largest first"
        },
    )


class PerformanceSchema(Schema):
    requests = fields.Dict()
    customers = fields.Dict(
        metadata={"description": "customer_id -> {requests, errors}, the busiest first"}
    )
    tasks = fields.Dict()
    cache = fields.Dict()
    locks = fields.Nested(LockPerformanceSchema)
    queues = fields.Dict()
    memory = fields.Dict()
    processes = fields.Dict(
        metadata={"description": "restarts: make run's processes restarted by supervisord, by name"}
    )
    ledger = fields.Nested(
        LedgerFiguresSchema,
        allow_none=True,
        metadata={"description": "The last audit of every flight's cargo space (null: none yet)"},
    )
    webhooks = fields.Nested(
        WebhookFiguresSchema,
        metadata={
            "description": "Webhook deliveries in total and per endpoint: counts since"
            " Redis was last emptied, the backlog as MongoDB has it now"
        },
    )
    scalingRecommendations = fields.List(fields.Nested(RecommendationSchema))


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
