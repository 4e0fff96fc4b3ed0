"""Identifiers handed out by RadiantGo, and the shape of each.

A shape is one regular expression, matched against the whole string
(`fullmatch`): Python's `$` also matches before a trailing newline, so
`re.match("^RG...$", "RG...\\n")` would let a newline through. The anchored
form goes into the OpenAPI document, where `$` (ECMA 262) is the very end.
"""

from __future__ import annotations

import re
import secrets
import uuid
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Shape:
    """What an id looks like: `regex` (unanchored), matched whole."""

    regex: str
    what: str  # for messages: "a booking reference"
    example: str
    compiled: re.Pattern = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "compiled", re.compile(self.regex))

    @property
    def pattern(self) -> str:
        """Anchored, as a JSON Schema `pattern` states it."""
        return f"^{self.regex}$"

    def matches(self, text: object) -> bool:
        return isinstance(text, str) and self.compiled.fullmatch(text) is not None

    def described(self) -> str:
        """How an error message says it: "a booking reference such as RG123ABC456"."""
        return f"{self.what} such as {self.example}"


REF_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
REF_DIGITS = 9
REF_ID = Shape(
    rf"RG[0-9A-Z]{{{REF_DIGITS}}}",
    "a booking reference (RG, then 9 digits or capitals)",
    "RG123ABC456",
)
REF_ID_PATTERN = re.compile(REF_ID.pattern)  # the anchored form; match it with fullmatch

CUSTOMER_ID = Shape(r"cus_[0-9a-f]{16}", "a customer id", "cus_0123456789abcdef")
CUSTOMER_ID_PATTERN = re.compile(CUSTOMER_ID.pattern)

# A job id is a UUID as str() writes it (lower-case hex, 8-4-4-4-12).
JOB_ID = Shape(
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
    "a job id (a UUID in lower case)",
    "1bf8eaa3-5c5e-4b7e-9a57-0d8a3c9f2e10",
)

# A flight: its number (upper case) and its UTC departure day (core.flights.flight_id).
FLIGHT_ID = Shape(
    r"[A-Z0-9]{2}[A-Z]?[0-9]{1,4}[A-Z]?-[0-9]{8}",
    "a flight id (<flight_number>-<YYYYMMDD>)",
    "RG0001-20261128",
)

# An air waybill number (core.awb): a 3-digit airline prefix, a 7-digit serial
# and a check digit (the serial mod 7, so 0-6), the hyphen optional on input.
# The check digit's value is core.awb's to check: no pattern can state it.
AWB = Shape(
    r"[0-9]{3}-?[0-9]{7}[0-6]",
    "an air waybill number (PPP-SSSSSSSC: prefix, serial, check digit = serial mod 7)",
    "020-12345675",
)

# Webhooks (core.webhook_endpoints): an endpoint, an event (the `webhook-id`
# its receivers see) and one event's delivery to one endpoint.
WEBHOOK_ENDPOINT_ID = Shape(r"ep_[0-9a-f]{16}", "a webhook endpoint id", "ep_0123456789abcdef")
WEBHOOK_EVENT_ID = Shape(r"msg_[0-9a-f]{24}", "a webhook event id", "msg_0123456789abcdef01234567")
WEBHOOK_DELIVERY_ID = Shape(
    r"dlv_[0-9a-f]{24}", "a webhook delivery id", "dlv_0123456789abcdef01234567"
)

# The ids that name a resource in a path, by their parameter's name.
PATH_IDS = {
    "ref_id": REF_ID,
    "customer_id": CUSTOMER_ID,
    "job_id": JOB_ID,
    "flight_id": FLIGHT_ID,
    "endpoint_id": WEBHOOK_ENDPOINT_ID,
    "delivery_id": WEBHOOK_DELIVERY_ID,
    "awb": AWB,
}


def new_ref_id() -> str:
    """A booking reference such as the spec's RG123ABC456 (36^9 ~ 10^14 values)."""
    return "RG" + "".join(secrets.choice(REF_ALPHABET) for _ in range(REF_DIGITS))


def ref_id_from(number: int) -> str:
    """The booking reference that `number` (taken modulo 36^9) stands for."""
    digits = []
    for _ in range(REF_DIGITS):
        number, rest = divmod(number, len(REF_ALPHABET))
        digits.append(REF_ALPHABET[rest])
    return "RG" + "".join(digits)


API_KEY_PREFIX = "rgk_"


def new_customer_id() -> str:
    return "cus_" + secrets.token_hex(8)


def is_customer_id(text: str) -> bool:
    return CUSTOMER_ID.matches(text)


def new_endpoint_id() -> str:
    return "ep_" + secrets.token_hex(8)


def new_event_id() -> str:
    return "msg_" + secrets.token_hex(12)


def new_api_key() -> str:
    """256 random bits; the prefix lets secret scanners and people recognise one."""
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


def new_job_id() -> str:
    return str(uuid.uuid4())


def is_job_id(text: str) -> bool:
    return JOB_ID.matches(text)


def is_ref_id(text: str) -> bool:
    return REF_ID.matches(text)
