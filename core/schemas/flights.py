"""What a client may send about flights: a flight to import, and the day
queries of the flights list and the route search."""

from __future__ import annotations

from marshmallow import RAISE, Schema, ValidationError, validate, validates_schema

from core.schemas.bookings import MAX_BOOKING_WEIGHT_KG
from core.schemas.fields import (
    CalendarDate,
    CalendarDateTime,
    FlightNumber,
    IataCode,
    QueryInteger,
    QueryNumber,
    StrictNumber,
    Text,
    bulk_items,
    volume_range,
    weight_range,
)
from core.schemas.rules import ARRIVES_AFTER_RULE, DIFFERENT_ENDS_RULE

MAX_FLIGHT_DURATION_H = 24
MAX_FLIGHT_CAPACITY_M3 = 1500  # an An-225's hold was ~1,300 m3
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


class FlightImportSchema(Schema):
    """The envelope of a bulk flight import; each item is validated by the worker,
    so one bad flight is reported by its index instead of sinking the batch."""

    class Meta:
        unknown = RAISE

    flights = bulk_items("Flights shaped like FlightSchema")


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
