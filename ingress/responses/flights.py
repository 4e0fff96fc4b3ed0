"""The answers about flights: a flight with its cargo space, the flights
list, the route search."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from ingress.responses.common import UtcDateTime

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
    # Null only for a flight stored before flights had a capacity, until the
    # migrate step gives it the default (core.migrations, flights-capacity).
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
    # Null only for a flight stored before flights had a volume, until the
    # migrate step derives it (core.migrations, flights-volume).
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
