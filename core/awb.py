"""Air waybill numbers (AWB): the shipment's identity that airlines,
forwarders and tracking sites share, written PPP-SSSSSSSC: the airline's
3-digit IATA prefix, a 7-digit serial, and a check digit, the serial modulo 7
(so a check digit of 7, 8 or 9 is never valid).

Every booking gets one when it is accepted:
- RadiantGo issues serials of AWB_PREFIX, unique across every ingress
  process, worker and restart: a process takes a block of AWB_BLOCK_SIZE
  serials with one atomic `$inc` of a counter document in MongoDB (by `_id`)
  and hands them out from memory (SerialStock), so an accept makes no
  database round trip for its AWB. MongoDB is durable, so a restart never
  issues a serial twice; a block a process held when it stopped stays unissued.
- A client may bring an AWB of its airline's stock instead: its format and
  check digit are checked (a 400 naming the rule), it may not be of
  AWB_PREFIX (those serials are RadiantGo's to issue, so an issued AWB can
  never meet a client's), and no other booking may hold it (409 `awb-taken`):
  at the door, a claim in Redis (`awb:<awb>`, set with the create's queued
  record, core.queued_jobs.hold_queued) and a lookup of the stored bookings; at the
  worker, the unique index on bookings.awb (core.db) decides a race left.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import Any

import redis
from pymongo import ReturnDocument
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from core.errors import (
    MONGO_TRANSIENT_ERRORS,
    REDIS_ERRORS,
    AwbStockExhausted,
    AwbTaken,
    ServiceUnavailable,
    ValidationFailed,
)
from core.ids import AWB

log = logging.getLogger(__name__)

SERIALS = 10**7  # 7 digits; serial 0000000 is never issued
# After MongoDB failed to give a block, the door asks again this much later at
# the soonest: meanwhile creates are accepted at once, without waiting on it.
REFILL_RETRY_S = 1.0
# The stored and answered form (an AWB in a request may leave out the hyphen).
CANONICAL_PATTERN = r"^[0-9]{3}-[0-9]{7}[0-6]$"

CHECK_DIGIT_MESSAGE = (
    "The check digit (the last) must be the serial (the 7 digits before it) mod 7."
)
RESERVED_MESSAGE = (
    "Air waybill numbers of RadiantGo's own prefix (AWB_PREFIX) are issued by it only."
)


def check_digit(serial: int) -> int:
    return serial % 7


def awb_number(prefix: str, serial: int) -> str:
    """The AWB of `serial` in `prefix`'s stock: PPP-SSSSSSSC."""
    return f"{prefix}-{serial:07d}{check_digit(serial)}"


def normalized(text: str) -> str:
    """An AWB of the right shape (core.ids.AWB), hyphen or not, as PPP-SSSSSSSC."""
    digits = text.replace("-", "")
    return f"{digits[:3]}-{digits[3:]}"


def broken_rule(text: str) -> str | None:
    """What is wrong with `text` as an AWB (its format, or its check digit); None if nothing."""
    if not AWB.matches(text):
        return f"Must be {AWB.described()}."
    digits = text.replace("-", "")
    if int(digits[10]) != check_digit(int(digits[3:10])):
        return CHECK_DIGIT_MESSAGE
    return None


def prefix_of(awb: str) -> str:
    return awb[:3]


def claim_key(awb: str) -> str:
    """A create's claim on `awb` while it is queued or running: its ref_id."""
    return f"awb:{awb}"


def failed_key(awb: str) -> str:
    """The ref_id of the last create of `awb` that failed, while its job is
    kept: tracking by AWB answers as its ref_id does (`booking-not-made`)."""
    return f"awb:failed:{awb}"


class SerialStock:
    """This process's block of AWB_PREFIX serials, refilled a block at a time
    by one atomic `$inc` on the prefix's counter document (`{"_id": prefix,
    "issued": n}`: serials up to n were handed out). Thread-safe: gunicorn
    runs gthread workers. Made without a connection: `counters` is the
    process's own collection handle, used only when a block runs out."""

    def __init__(self, counters: Collection, prefix: str, block_size: int):
        self.counters = counters
        self.prefix = prefix
        self.block_size = block_size
        self._lock = threading.Lock()
        self._next = self._end = 0  # serials [_next, _end) are this process's
        self._retry_at = 0.0  # time.monotonic() before which no block is asked for

    def take(self) -> str:
        """A new AWB of RadiantGo's prefix; AwbStockExhausted once its serials are all issued."""
        with self._lock:
            if self._next >= self._end:
                self._next, self._end = self._refill()
            serial = self._next
            self._next += 1
        return awb_number(self.prefix, serial)

    def _refill(self) -> tuple[int, int]:
        if self._end >= SERIALS:
            raise self._exhausted()
        if time.monotonic() < self._retry_at:
            raise ServiceUnavailable("MongoDB gave no block of AWB serials a moment ago.")
        try:
            return self._next_block()
        except MONGO_TRANSIENT_ERRORS:
            self._retry_at = time.monotonic() + REFILL_RETRY_S
            raise

    def _next_block(self) -> tuple[int, int]:
        counter = self._take_block()
        if counter is None:  # the prefix's first block: its counter is made once
            # (not by an upsert: two racing ones may both miss, on either server)
            with contextlib.suppress(DuplicateKeyError):
                self.counters.insert_one({"_id": self.prefix, "issued": 0})
            counter = self._take_block()
        first = counter["issued"] - self.block_size + 1
        if first >= SERIALS:
            self._end = SERIALS
            raise self._exhausted()
        return first, min(counter["issued"] + 1, SERIALS)

    def _take_block(self) -> dict[str, Any] | None:
        return self.counters.find_one_and_update(
            {"_id": self.prefix},
            {"$inc": {"issued": self.block_size}},
            return_document=ReturnDocument.AFTER,
        )

    def _exhausted(self) -> AwbStockExhausted:
        return AwbStockExhausted(
            f"Every serial of air waybill prefix {self.prefix} has been issued: set AWB_PREFIX"
            " to the airline's next stock. A booking may still bring its own `awb`."
        )

    def awb_for(self, request: dict[str, Any]) -> str:
        """The AWB of a create: the one the request brings (never of this
        stock's prefix: 400), else a new one of the stock."""
        brought = request.get("awb")
        if brought is None:
            return self.take()
        if prefix_of(brought) == self.prefix:
            raise ValidationFailed(
                f"Air waybill numbers of prefix {self.prefix} are issued by RadiantGo: leave"
                " `awb` out to get one, or bring one of your airline's stock.",
                errors={"awb": [RESERVED_MESSAGE]},
            )
        return brought


def issue_at_the_door(stock: SerialStock, request: dict[str, Any]) -> str | None:
    """A create's AWB as it is accepted (SerialStock.awb_for); None when the
    stock is dry and MongoDB cannot give it a block: accepting needs no
    database, so the create is accepted without one, and its worker issues it
    as it stores the booking (core.work.create_bookings)."""
    try:
        return stock.awb_for(request)
    except (*MONGO_TRANSIENT_ERRORS, ServiceUnavailable) as exc:
        log.warning("create accepted without an AWB, its worker issues one: %s", exc)
        return None


def taken(awb: str) -> AwbTaken:
    return AwbTaken(f"Another booking holds air waybill number {awb}.", awb=awb)


def check_free(db: Database, awb: str) -> None:
    """AwbTaken if a stored booking holds `awb` (an equality on its unique index)."""
    if holders(db, [awb]):
        raise taken(awb)


def holders(db: Database, awbs: list[str]) -> dict[str, str]:
    """awb -> ref_id of the stored bookings that hold any of `awbs`."""
    if not awbs:
        return {}
    found = db.bookings.find({"awb": {"$in": awbs}}, {"awb": 1, "ref_id": 1})
    return {b["awb"]: b["ref_id"] for b in found}


def ref_id_of(db: Database, claims: redis.Redis, awb: str) -> str | None:
    """The ref_id of the booking `awb` names: a stored one's, else that of a
    create still queued or running (its claim), else of one that failed;
    None if no booking holds it."""
    stored = holders(db, [awb])
    if awb in stored:
        return stored[awb]
    try:
        held, failed = claims.mget([claim_key(awb), failed_key(awb)])
    except REDIS_ERRORS:  # with Redis out, creates are recorded in MongoDB, unclaimed
        held = failed = None
    if held is not None:
        return held
    # Its create may have ended between the two reads.
    return holders(db, [awb]).get(awb) or failed
