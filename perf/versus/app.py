"""The synchronous service: FastAPI, psycopg 3's async pool, one transaction per write.

    VERSUS_DSN=... uvicorn --factory perf.versus.app:create_app --workers 2

POST /api/bookings (a customer's key): the body validated with the same
fields and limits as RadiantGo's BookingCreateSchema (core.schemas.bookings), the
booking inserted with an AWB (the client's, or one issued from a sequence) and
its BOOKED event, in one transaction; 201 with the booking.
POST /api/bookings/{ref_id}/depart (an operator's key): the booking's row
locked (SELECT ... FOR UPDATE), the transition checked against the state
machine, status and version updated and the DEPARTED event inserted, in one
transaction; 200 with the booking.
An API key is looked up by its SHA-256 and cached in the process
(VERSUS_KEY_CACHE_S), as RadiantGo caches its keys. Bad input is an RFC 9457
problem with a 4xx.

Settings, read once by create_app: VERSUS_DSN (required), VERSUS_POOL_SIZE
(connections per worker process, 10), VERSUS_AWB_PREFIX ("000"),
VERSUS_KEY_CACHE_S (1800, as RadiantGo's CACHE_TTL_USERS).
"""

# No `from __future__ import annotations`: FastAPI reads the annotations of
# the nested views (their dependencies) at run time.
import os
import time
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, HTTPException, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from psycopg.errors import UniqueViolation
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from core.ids import AWB, FLIGHT_ID, REF_ID
from core.lifecycle import TRANSITIONS
from core.schemas.bookings import (
    MAX_BOOKING_PIECES,
    MAX_BOOKING_WEIGHT_KG,
    MAX_DIMENSION_LINES,
    PIECE_BOUNDS_CM,
)
from core.schemas.fields import IATA_PATTERN, MIN_WEIGHT_KG
from perf.versus import store

PROBLEM = "application/problem+json"
# core.schemas.fields.Text's: tab and newline allowed
NO_CONTROL_CHARACTERS = r"^[^\x00-\x08\x0b-\x1f\x7f]*$"
EMAIL = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
FLIGHT_NUMBER = r"^[A-Za-z0-9]{2}[A-Za-z]?[0-9]{1,4}[A-Za-z]?$"


def _encodable(text: str) -> str:
    text.encode("utf-8")  # a lone surrogate parses as JSON but cannot be stored
    return text


def _awb(text: str) -> str:
    digits = text.replace("-", "")
    if int(digits[3:10]) % 7 != int(digits[10]):
        raise ValueError("The check digit (the last) must be the serial mod 7.")
    return f"{digits[:3]}-{digits[3:]}"


def _text(min_length: int, max_length: int):
    return Annotated[
        str,
        Field(min_length=min_length, max_length=max_length, pattern=NO_CONTROL_CHARACTERS),
        AfterValidator(_encodable),
    ]


IataCode = Annotated[str, Field(pattern=IATA_PATTERN.pattern), AfterValidator(str.upper)]
Count = Annotated[int, Field(strict=True, ge=1, le=MAX_BOOKING_PIECES)]


def _centimetres(bound: int):
    return Annotated[int, Field(strict=True, ge=1, le=bound)]


class Dimension(BaseModel):
    model_config = ConfigDict(extra="forbid")

    count: Count
    length_cm: _centimetres(PIECE_BOUNDS_CM["length_cm"])
    width_cm: _centimetres(PIECE_BOUNDS_CM["width_cm"])
    height_cm: _centimetres(PIECE_BOUNDS_CM["height_cm"])


class BookingIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    origin: IataCode
    destination: IataCode
    pieces: Count
    weight_kg: Annotated[
        float,
        Field(strict=True, ge=MIN_WEIGHT_KG, le=MAX_BOOKING_WEIGHT_KG, allow_inf_nan=False),
    ]
    customer_name: _text(1, 100) | None = None
    customer_email: Annotated[str, Field(max_length=254, pattern=EMAIL)] | None = None
    flight_ids: (
        Annotated[
            list[Annotated[str, Field(pattern=FLIGHT_ID.pattern)]],
            Field(min_length=1, max_length=2),
        ]
        | None
    ) = None
    dimensions: (
        Annotated[list[Dimension], Field(min_length=1, max_length=MAX_DIMENSION_LINES)] | None
    ) = None
    awb: Annotated[str, Field(pattern=AWB.pattern), AfterValidator(_awb)] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> "BookingIn":
        if self.origin == self.destination:
            raise ValueError("destination must differ from origin.")
        if self.dimensions and sum(d.count for d in self.dimensions) != self.pieces:
            raise ValueError("The dimension lines' counts must add up to pieces.")
        return self

    def volume_cm3(self) -> int | None:
        if not self.dimensions:
            return None
        return sum(d.count * d.length_cm * d.width_cm * d.height_cm for d in self.dimensions)


class TransitionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    location: _text(1, 100) | None = None
    notes: _text(0, 500) | None = None
    flight_number: (
        Annotated[str, Field(pattern=FLIGHT_NUMBER), AfterValidator(str.upper)] | None
    ) = None


class BookingOut(BaseModel):
    ref_id: str
    awb: str
    customer_id: str | None
    origin: str
    destination: str
    pieces: int
    weight_kg: float
    dimensions: list[Dimension] | None
    volume_cm3: int | None
    customer_name: str | None
    customer_email: str | None
    flight_ids: list[str] | None
    status: str
    version: int
    created_at: datetime
    updated_at: datetime


class Caller(BaseModel):
    customer_id: str
    role: str


class ApiKeys:
    """API keys by their SHA-256, read from PostgreSQL and kept `ttl_s` in this
    process (an unknown key is not kept: it is looked up each time)."""

    def __init__(self, pool: AsyncConnectionPool, ttl_s: float):
        self.pool, self.ttl_s = pool, ttl_s
        self.known: dict[str, tuple[Caller, float]] = {}

    async def caller(self, api_key: str) -> Caller | None:
        digest = store.key_hash(api_key)
        now = time.monotonic()
        held = self.known.get(digest)
        if held is not None and held[1] > now:
            return held[0]
        async with self.pool.connection() as conn:
            row = await (await conn.execute(store.FIND_KEY, (digest,))).fetchone()
        if row is None:
            return None
        caller = Caller(**row)
        self.known[digest] = (caller, now + self.ttl_s)
        return caller


def problem(status: int, title: str, detail: Any, **extra: Any) -> JSONResponse:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    return JSONResponse(body, status_code=status, media_type=PROBLEM)


def fail(status: int, title: str, detail: str) -> HTTPException:
    return HTTPException(status, detail={"title": title, "detail": detail})


def create_app() -> FastAPI:
    dsn = os.environ["VERSUS_DSN"]
    pool_size = int(os.environ.get("VERSUS_POOL_SIZE", "10"))
    awb_prefix = os.environ.get("VERSUS_AWB_PREFIX", "000")
    pool = AsyncConnectionPool(
        dsn, min_size=pool_size, max_size=pool_size, kwargs={"row_factory": dict_row}, open=False
    )
    keys = ApiKeys(pool, float(os.environ.get("VERSUS_KEY_CACHE_S", "1800")))

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        await pool.open(wait=True)
        try:
            yield
        finally:
            await pool.close()

    app = FastAPI(title="versus: a synchronous cargo-booking service", lifespan=lifespan)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"loc": list(e["loc"]), "msg": e["msg"]} for e in exc.errors()]
        return problem(400, "Bad Request", "The request is not valid.", errors=errors)

    @app.exception_handler(HTTPException)
    async def refused(_request: Request, exc: HTTPException) -> JSONResponse:
        return problem(exc.status_code, exc.detail["title"], exc.detail["detail"])

    def holder_of(role: str):
        async def caller(authorization: Annotated[str | None, Header()] = None) -> Caller:
            scheme, _, api_key = (authorization or "").partition(" ")
            found = await keys.caller(api_key) if scheme == "Bearer" and api_key else None
            if found is None:
                raise fail(401, "Unauthorized", "A valid API key is required.")
            if found.role != role:
                raise fail(403, "Forbidden", f"Only a {role}'s key may do this.")
            return found

        return caller

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/api/bookings", status_code=201, response_model=BookingOut)
    async def create_booking(
        body: BookingIn, caller: Annotated[Caller, Depends(holder_of(store.CUSTOMER))]
    ) -> dict[str, Any]:
        if body.awb is not None and body.awb.startswith(awb_prefix + "-"):
            raise fail(
                400, "Bad Request", "AWBs of this service's own prefix are issued by it only."
            )
        booking = {
            **body.model_dump(exclude={"dimensions"}),
            "ref_id": store.new_ref_id(),
            "customer_id": caller.customer_id,
            "dimensions": Jsonb([d.model_dump() for d in body.dimensions])
            if body.dimensions
            else None,
            "volume_cm3": body.volume_cm3(),
        }
        async with pool.connection() as conn:
            try:
                stored = await (await conn.execute(store.INSERT_BOOKING, booking)).fetchone()
            except UniqueViolation:
                raise fail(409, "AWB taken", f"Another booking holds AWB {body.awb}.") from None
            await conn.execute(store.INSERT_EVENT, event(stored, "BOOKING_CREATED", "BKD"))
        return stored

    @app.post("/api/bookings/{ref_id}/depart", response_model=BookingOut)
    async def depart_booking(
        ref_id: Annotated[str, PathParam(pattern=REF_ID.pattern)],
        caller: Annotated[Caller, Depends(holder_of(store.OPERATOR))],
        body: TransitionIn | None = None,
    ) -> dict[str, Any]:
        async with pool.connection() as conn:
            row = await (await conn.execute(store.LOCK_BOOKING, (ref_id,))).fetchone()
            if row is None:
                raise fail(404, "Not Found", f"No booking {ref_id!r}.")
            if store.DEPARTED not in TRANSITIONS[row["status"]]:
                raise fail(
                    409, "Invalid status transition", f"Cannot depart a {row['status']} booking."
                )
            moved = {"ref_id": ref_id, "status": store.DEPARTED}
            stored = await (await conn.execute(store.MOVE_BOOKING, moved)).fetchone()
            details = body.model_dump() if body is not None else {}
            await conn.execute(
                store.INSERT_EVENT, event(stored, "STATUS_DEPARTED", "DEP", **details)
            )
        return stored

    return app


def event(booking: dict[str, Any], event_type: str, code: str, **details: Any) -> dict[str, Any]:
    """INSERT_EVENT's parameters: the event of `booking`'s latest change."""
    return {
        "booking_id": booking["ref_id"],
        "type": event_type,
        "code": code,
        "status": booking["status"],
        "version": booking["version"],
        "at_ts": booking["updated_at"],
        "location": details.get("location"),
        "notes": details.get("notes"),
        "flight_number": details.get("flight_number"),
    }
