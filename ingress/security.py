"""Who may call what, and how often: admin bearer tokens and per-IP rate limits."""

from __future__ import annotations

import hmac
import ipaddress
from functools import cache

from flask import Flask, request
from flask_limiter import HeaderNames, Limiter

from core.errors import RadiantError
from core.settings import Settings
from ingress.context import services


class Unauthorized(RadiantError):
    """No admin credentials were sent."""

    status = 401
    title = "Authentication required"
    slug = "authentication-required"
    headers = {"WWW-Authenticate": 'Bearer realm="radiantgo-admin"'}


class Forbidden(RadiantError):
    """The credentials sent do not grant admin access."""

    status = 403
    title = "Forbidden"
    slug = "forbidden"


def require_admin() -> None:
    """before_request for /api/admin: `Authorization: Bearer <ADMIN_TOKEN>`."""
    expected = services().settings.ADMIN_TOKEN
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if not header:
        raise Unauthorized("Send Authorization: Bearer <admin token>.")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Use the Bearer scheme.")
    # Constant time, and an unset token matches nothing: never open by default.
    if not expected or not hmac.compare_digest(token.strip().encode(), expected.encode()):
        raise Forbidden("The admin token is not valid.")


@cache
def _networks(trusted: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(
        ipaddress.ip_network(part.strip(), strict=False)
        for part in trusted.split(",")
        if part.strip()
    )


def _is_trusted(address: str, networks) -> bool:
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return False
    return any(ip in network for network in networks)


def client_ip() -> str:
    """The client's address: X-Forwarded-For is believed only from trusted proxies,
    read from the right, up to the first hop that is not one."""
    peer = request.remote_addr or "unknown"
    networks = _networks(services().settings.TRUSTED_PROXIES)
    if not networks or not _is_trusted(peer, networks):
        return peer
    hops = [h.strip() for h in request.headers.get("X-Forwarded-For", "").split(",") if h.strip()]
    for hop in reversed(hops):
        if not _is_trusted(hop, networks):
            return hop
    return hops[0] if hops else peer


# endpoint -> (settings field, window, methods, shared scope)
LIMITS = {
    "bookings.Bookings": ("RATE_LIMIT_BOOKINGS", "minute", ["POST"], "bookings"),
    "bookings.depart_booking": ("RATE_LIMIT_UPDATES", "minute", None, "updates"),
    "bookings.arrive_booking": ("RATE_LIMIT_UPDATES", "minute", None, "updates"),
    "bookings.deliver_booking": ("RATE_LIMIT_UPDATES", "minute", None, "updates"),
    "bookings.cancel_booking": ("RATE_LIMIT_UPDATES", "minute", None, "updates"),
    "flights.Routes": ("RATE_LIMIT_ROUTES", "minute", None, "routes"),
}
ADMIN_WINDOW = "5 minutes"
BULK_WINDOW = "10 minutes"
BULK_ENDPOINTS = ("admin.FlightImport", "admin.BookingImport", "admin.StatusImport")


LIMITER_RETRY_AFTER = "RateLimit-Retry-After"


def install_rate_limits(app: Flask, settings: Settings) -> Limiter:
    """Per-IP limits in Redis, shared by every ingress process (moving window)."""

    # Registered before the limiter's own hook, so it runs after it (Flask runs
    # after_request hooks last-registered first): a 429 gets Retry-After.
    @app.after_request
    def retry_after_on_429(response):
        if response.status_code == 429 and LIMITER_RETRY_AFTER in response.headers:
            response.headers["Retry-After"] = response.headers[LIMITER_RETRY_AFTER]
        return response

    limiter = Limiter(
        client_ip,
        app=app,
        storage_uri=settings.REDIS_URL,
        storage_options={
            "socket_timeout": settings.REDIS_TIMEOUT_S,
            "socket_connect_timeout": settings.REDIS_TIMEOUT_S,
        },
        strategy="moving-window",
        key_prefix="ratelimit",
        headers_enabled=True,
        header_name_mapping={
            HeaderNames.LIMIT: "RateLimit-Limit",
            HeaderNames.REMAINING: "RateLimit-Remaining",
            HeaderNames.RESET: "RateLimit-Reset",
            # Flask-Limiter sets it on every limited response, but a job's
            # Retry-After means "poll again": moved to Retry-After on 429 only.
            HeaderNames.RETRY_AFTER: LIMITER_RETRY_AFTER,
        },
        swallow_errors=True,  # Redis down: serve unlimited rather than fail
    )

    def wrap(endpoint: str, decorator) -> None:
        if endpoint in app.view_functions:
            app.view_functions[endpoint] = decorator(app.view_functions[endpoint])

    for endpoint, (field, window, methods, scope) in LIMITS.items():
        value = f"{getattr(settings, field)} per {window}"
        wrap(endpoint, limiter.shared_limit(value, scope=scope, methods=methods))
    for endpoint in [e for e in app.view_functions if e.startswith("admin.")]:
        wrap(
            endpoint,
            limiter.shared_limit(f"{settings.RATE_LIMIT_ADMIN} per {ADMIN_WINDOW}", scope="admin"),
        )
    for endpoint in BULK_ENDPOINTS:
        wrap(
            endpoint,
            limiter.shared_limit(f"{settings.RATE_LIMIT_BULK} per {BULK_WINDOW}", scope="bulk"),
        )
    return limiter
