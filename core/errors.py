"""RadiantGo's one error hierarchy.

Each error knows the HTTP status and RFC 9457 problem title it maps to, so the
ingress renders it and a worker stores it on the failed job without either
knowing the other. `transient` decides whether a Celery task retries it.
"""

from __future__ import annotations

from typing import Any

import redis
from pymongo.errors import ConnectionFailure, ExecutionTimeout

PROBLEM_BASE = "https://radiantgo.dev/problems/"

# The library errors that say a backing service is down, not that the work is
# wrong. Every Redis error, not only an unreachable server: a Redis answering
# MISCONF (cannot persist), OOM (maxmemory) or READONLY raises a ResponseError,
# which a best-effort path must fall through and a job must retry.
REDIS_ERRORS = (redis.RedisError,)
# MongoDB unreachable or failing over (AutoReconnect, ServerSelectionTimeoutError
# are ConnectionFailures), or over its time limit: the same work may pass later.
MONGO_TRANSIENT_ERRORS = (ConnectionFailure, ExecutionTimeout)
# What a task retries instead of failing its job.
TRANSIENT_ERRORS = MONGO_TRANSIENT_ERRORS + REDIS_ERRORS
# A Redis that does not answer at all (a lock master down), as opposed to one
# that answers with an error.
REDIS_UNREACHABLE = (redis.ConnectionError, redis.TimeoutError)
# What a view answers 503 for: MongoDB as above, Redis only when unreachable; an
# error reply from a reachable Redis that escapes a view is a path that should
# have fallen through, so a 500.
UNAVAILABLE_ERRORS = MONGO_TRANSIENT_ERRORS + REDIS_UNREACHABLE


class RadiantError(Exception):
    """Base of every error RadiantGo raises on purpose."""

    status = 500
    title = "Internal error"
    slug = "internal-error"
    transient = False
    headers: dict[str, str] = {}  # sent with the problem (Retry-After, WWW-Authenticate)

    def __init__(self, detail: str | None = None, *, errors: dict | None = None, **extra: Any):
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.errors = errors
        self.extra = extra

    def to_problem(self, instance: str | None = None) -> dict[str, Any]:
        return problem(
            self.status,
            self.title,
            self.detail,
            slug=self.slug,
            instance=instance,
            errors=self.errors,
            **self.extra,
        )


class InternalError(RadiantError):
    """An exception nobody raised on purpose (a bug, or data the code did not foresee)."""


class ValidationFailed(RadiantError):
    """The request or job payload breaks a schema rule."""

    status = 400
    title = "Validation failed"
    slug = "validation-failed"


class Unprocessable(RadiantError):
    """Well-formed input that the domain cannot act on."""

    status = 422
    title = "Unprocessable request"
    slug = "unprocessable"


class IdempotencyKeyReused(Unprocessable):
    """An Idempotency-Key was sent again with a different request."""

    title = "Idempotency key reused"
    slug = "idempotency-key-reused"


class WebhookUrlRefused(Unprocessable):
    """A webhook URL RadiantGo will not post to (core.webhook_targets.check_url): not
    https, or naming a host that is, or resolves to, no public address."""

    title = "Webhook URL refused"
    slug = "webhook-url-refused"


class IdempotencyKeyInProgress(RadiantError):
    """Another request with the same Idempotency-Key is still being recorded."""

    status = 409
    title = "Idempotency key in progress"
    slug = "idempotency-key-in-progress"


class AllBookingsRequired(Unprocessable):
    """A webhook endpoint of no owner receives every booking's events."""

    title = "All bookings required"
    slug = "all-bookings-required"


class PayloadTooLarge(RadiantError):
    """More items than a bulk endpoint takes."""

    status = 413
    title = "Payload too large"
    slug = "payload-too-large"


AUTH_REALM = 'Bearer realm="radiantgo"'


class Unauthorized(RadiantError):
    """The request carries no credentials, and what it asks for needs some."""

    status = 401
    title = "Authentication required"
    slug = "authentication-required"
    headers = {"WWW-Authenticate": AUTH_REALM}


class InvalidCredentials(Unauthorized):
    """The credentials sent are unknown, rotated away, or their customer is disabled."""

    title = "Invalid credentials"
    slug = "invalid-credentials"
    headers = {"WWW-Authenticate": AUTH_REALM + ', error="invalid_token"'}


class Forbidden(RadiantError):
    """The caller is known, but its role does not allow the request."""

    status = 403
    title = "Forbidden"
    slug = "forbidden"


class CustomerDisabled(Forbidden):
    """The customer a job acts for was disabled after the job was accepted."""

    title = "Customer disabled"
    slug = "customer-disabled"


class NotFound(RadiantError):
    """The named resource does not exist."""

    status = 404
    title = "Not found"
    slug = "not-found"


class BookingNotMade(NotFound):
    """A booking's create job failed: its reference names no booking, and never will."""

    title = "Booking not made"
    slug = "booking-not-made"


class Conflict(RadiantError):
    """The resource's current state forbids the request."""

    status = 409
    title = "Conflict"
    slug = "conflict"


class FlightFull(Conflict):
    """A leg of the booking lacks the cargo space it needs (core.reservations)."""

    title = "Flight is full"
    slug = "flight-full"


class AwbTaken(Conflict):
    """Another booking (stored, or whose create is queued) holds the air waybill number."""

    title = "Air waybill number taken"
    slug = "awb-taken"


class AwbStockExhausted(RadiantError):
    """Every serial of AWB_PREFIX has been issued: the operator must set a new
    prefix (the airline's next stock). Clients may still bring their own AWB."""

    status = 503
    title = "Air waybill numbers exhausted"
    slug = "awb-stock-exhausted"


class CapacityBelowBooked(Conflict):
    """A flight update would leave less capacity than is already booked on it."""

    title = "Capacity below what is booked"
    slug = "capacity-below-booked"


class EndpointLimitReached(Conflict):
    """The owner has WEBHOOK_MAX_ENDPOINTS webhook endpoints already."""

    title = "Too many webhook endpoints"
    slug = "endpoint-limit-reached"


class EndpointDisabled(Conflict):
    """A disabled webhook endpoint is sent nothing: enable it first."""

    title = "Webhook endpoint disabled"
    slug = "endpoint-disabled"


class LockHeld(Conflict):
    """A lock stayed taken through every retry."""

    title = "Resource is locked"
    slug = "locked"


class BookingLocked(LockHeld):
    """A booking's lock stayed taken through every retry."""

    title = "Booking is locked"
    slug = "booking-locked"


class RateLimited(RadiantError):
    """The caller spent its budget for this window (core.ratelimit)."""

    status = 429
    title = "Too many requests"
    slug = "too-many-requests"

    def __init__(self, detail: str, *, retry_after: int):
        super().__init__(detail)
        self.headers = {"Retry-After": str(retry_after)}


class NotReady(RadiantError):
    """What the job needs does not exist yet but is on its way: retry later."""

    status = 409
    title = "Not ready"
    slug = "not-ready"
    transient = True


class ServiceUnavailable(RadiantError):
    """A backing service (MongoDB, Redis, RabbitMQ) cannot be reached."""

    status = 503
    title = "Service unavailable"
    slug = "service-unavailable"
    transient = True
    headers = {"Retry-After": "5"}


class QueueFull(ServiceUnavailable):
    """The job's queue holds its whole bounded backlog (backpressure)."""

    title = "Queue full"
    slug = "queue-full"

    def __init__(self, detail: str, *, retry_after: int):
        super().__init__(detail)
        self.headers = {"Retry-After": str(retry_after)}


class Overloaded(ServiceUnavailable):
    """The ingress sheds the request before any work: more arrive than the
    machine can serve (core.overload). Nothing was done; sending it again after
    Retry-After is safe."""

    title = "Overloaded"
    slug = "overloaded"
    transient = False  # an answer at the door, never a job's outcome

    def __init__(self, detail: str, *, retry_after: int):
        super().__init__(detail)
        self.headers = {"Retry-After": str(retry_after)}


class PublishUnconfirmed(ServiceUnavailable):
    """The broker never confirmed a publish it may have taken: the job may run.
    Raised by the publish; accepting keeps the job and sends it again later
    (core.outbox), and answers with this only when it cannot (naming the job)."""

    title = "Publish unconfirmed"
    slug = "publish-unconfirmed"


def problem(
    status: int,
    title: str,
    detail: str,
    *,
    slug: str | None = None,
    instance: str | None = None,
    errors: dict | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """An RFC 9457 problem document."""
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + slug if slug else "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
    }
    if instance:
        body["instance"] = instance
    if errors:
        body["errors"] = errors
    body.update(extra)
    return body
