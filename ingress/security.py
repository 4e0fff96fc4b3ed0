"""Who is calling, what they may do, and how often: bearer credentials (API
keys, the admin token), the views' required permissions, and rate limits per
key (per IP for callers without one)."""

from __future__ import annotations

import functools
import hmac
import ipaddress
from functools import cache

from flask import Flask, g, request
from flask_limiter import HeaderNames, Limiter

from core import access, customers
from core.access import Principal
from core.errors import InvalidCredentials, RadiantError, Unauthorized
from core.settings import Settings
from ingress.context import services


def _bearer_token() -> str | None:
    """The token of `Authorization: Bearer <token>`; None if the header is absent."""
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Use Authorization: Bearer <API key>.")
    return token.strip()


def _identify() -> Principal:
    token = _bearer_token()
    svc = services()
    if token is None:
        return access.ANONYMOUS_CALLER if svc.settings.REQUIRE_API_KEYS else access.GUEST_CALLER
    admin_token = svc.settings.ADMIN_TOKEN
    # Constant time, and an unset admin token matches nothing: never open by default.
    if admin_token and hmac.compare_digest(token.encode(), admin_token.encode()):
        return access.ADMIN_CALLER
    principal = customers.authenticate(svc.db, svc.cache, token, svc.settings.CACHE_TTL_USERS)
    if principal is None:
        raise InvalidCredentials("The API key is not valid (unknown, rotated or disabled).")
    return principal


def current_principal() -> Principal:
    """Who is calling, identified once per request (401 for credentials that are not valid)."""
    if "principal" not in g:
        try:
            g.principal = _identify()
        except RadiantError as exc:
            g.principal = exc
    if isinstance(g.principal, RadiantError):
        raise g.principal
    return g.principal


def requires(permission: str | None):
    """View decorator: the caller must hold `permission` (None: anyone, but credentials
    sent must be valid). Checked before the body is read (401/403 first), after the
    rate limit (so credential guessing is counted)."""

    def decorate(view):
        @functools.wraps(view)
        def guarded(*args, **kwargs):
            principal = current_principal()
            if permission is not None:
                access.authorize(principal, permission)
            return view(*args, **kwargs)

        guarded.permission = permission
        return guarded

    return decorate


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


def client_key() -> str:
    """The client, as rate limits and Idempotency-Keys tell clients apart: the API
    key's customer (or the admin token), else the IP seen after TRUSTED_PROXIES.

    Never raises: Flask-Limiter would swallow the error and skip the limit."""
    try:
        principal = current_principal()
    except RadiantError:
        principal = None
    if principal is None or not principal.authenticated:
        return f"ip:{client_ip()}"
    return principal.scope


# endpoint -> (settings field, window, methods, shared scope)
LIMITS = {
    "bookings.Bookings": ("RATE_LIMIT_BOOKINGS", "minute", ["POST"], "bookings"),
    "bookings.depart_booking": ("RATE_LIMIT_UPDATES", "minute", None, "updates"),
    "bookings.arrive_booking": ("RATE_LIMIT_UPDATES", "minute", None, "updates"),
    "bookings.deliver_booking": ("RATE_LIMIT_UPDATES", "minute", None, "updates"),
    "bookings.cancel_booking": ("RATE_LIMIT_UPDATES", "minute", None, "updates"),
    "flights.Routes": ("RATE_LIMIT_ROUTES", "minute", None, "routes"),
    "jobs.Job": ("RATE_LIMIT_JOBS", "minute", None, "jobs"),
}
ADMIN_WINDOW = "5 minutes"
BULK_WINDOW = "10 minutes"
BULK_ENDPOINTS = ("admin.FlightImport", "admin.BookingImport", "admin.StatusImport")
METRICS_ENDPOINT = "monitoring.Metrics"


LIMITER_RETRY_AFTER = "RateLimit-Retry-After"


def install_rate_limits(app: Flask, settings: Settings) -> Limiter:
    """Limits in Redis, shared by every ingress process (sliding-window counter).

    The sliding-window counter keeps two counters per client and limit (this
    window's and the last one's, weighted by the overlap), each expiring after
    two windows: O(1) Redis state however many hits, where the moving window
    keeps one list entry per hit."""

    # Registered before the limiter's own hook, so it runs after it (Flask runs
    # after_request hooks last-registered first): a 429 gets Retry-After.
    @app.after_request
    def retry_after_on_429(response):
        if response.status_code == 429 and LIMITER_RETRY_AFTER in response.headers:
            response.headers["Retry-After"] = response.headers[LIMITER_RETRY_AFTER]
        return response

    limiter = Limiter(
        client_key,
        app=app,
        storage_uri=settings.REDIS_URL,
        storage_options={
            "socket_timeout": settings.REDIS_TIMEOUT_S,
            "socket_connect_timeout": settings.REDIS_TIMEOUT_S,
        },
        strategy="sliding-window-counter",
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
    # /metrics takes the admin token too: wrong guesses there count like wrong
    # admin tokens (per IP), while a scraper's successful polls never do.
    wrap(
        METRICS_ENDPOINT,
        limiter.shared_limit(
            f"{settings.RATE_LIMIT_ADMIN} per {ADMIN_WINDOW}",
            scope="metrics-auth",
            deduct_when=lambda response: response.status_code in (401, 403),
        ),
    )
    return limiter
