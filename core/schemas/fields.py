"""The fields requests are made of: strict JSON types, codes and ids matched
whole, dates in RadiantGo's calendar, numbers as a query string writes them."""

from __future__ import annotations

import math
import re

from marshmallow import ValidationError, fields, validate

from core import awb
from core.clock import EARLIEST_DAY, LATEST_DAY, in_calendar
from core.ids import AWB, CUSTOMER_ID, Shape
from core.schemas.rules import AWB_CHECK_DIGIT_RULE

IATA_PATTERN = re.compile(r"^[A-Za-z]{3}$")


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


# Cargo space is kept in whole grams (core.measures.grams): a weight, a search's
# weight or a capacity below one gram would round to nothing.
MIN_WEIGHT_KG = 0.001


def weight_range(max_kg: float) -> validate.Range:
    """At least one gram, at most `max_kg` (the OpenAPI document says both)."""
    return validate.Range(MIN_WEIGHT_KG, max_kg)


# Volume is kept in whole cm3: a volume below one would round to nothing.
MIN_VOLUME_M3 = 0.000001


def volume_range(max_m3: float) -> validate.Range:
    """At least one cm3, at most `max_m3` (the OpenAPI document says both)."""
    return validate.Range(MIN_VOLUME_M3, max_m3)


FLIGHT_NUMBER_PATTERN = re.compile(r"^[A-Za-z0-9]{2}[A-Za-z]?[0-9]{1,4}[A-Za-z]?$")


class FlightNumber(Patterned):
    """An airline designator and a number, such as RG001; upper case out."""

    pattern = FLIGHT_NUMBER_PATTERN
    upper = True
    default_error_messages = {"pattern": "Must be a flight number such as RG001."}


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
