"""Who is calling, what they may do, and how often: bearer credentials (API
keys, the admin token), the views' required permissions, and rate limits per
key (per IP for callers without one).

Failed credentials are counted per client IP in one budget for every endpoint
that reads them (RATE_LIMIT_AUTH_FAILURES per 5 minutes): an unknown, rotated
or disabled API key, a wrong admin or metrics token. Past it a failure is a
429, and a token that is not an API key (the admin's, the metrics token) is
refused before it is compared: right or wrong, the IP learns nothing more.
API keys are 256 random bits, so a known key is still served from such an IP
(a customer behind the same NAT), and a valid key pays no round trip for it.
"""

from __future__ import annotations

import functools
import hmac
import ipaddress
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from functools import cache

from flask import Flask, current_app, g, request

from core import access, cache_keys, customers
from core.access import Principal
from core.errors import REDIS_ERRORS, InvalidCredentials, RadiantError, RateLimited, Unauthorized
from core.ids import API_KEY_PREFIX
from core.ratelimit import Budget, RateLimiter, Verdict
from core.settings import Settings
from ingress.context import services

log = logging.getLogger(__name__)
MINUTE, ADMIN_WINDOW, BULK_WINDOW = 60, 5 * 60, 10 * 60  # seconds
# Failed credentials: one budget per client IP, whatever the endpoint.
FAILURES_SCOPE, FAILURES_WINDOW = "failed-credentials", 5 * 60
NOT_VALID = "The API key is not valid (unknown, rotated or disabled)."


def _bearer_token() -> str | None:
    """The token of `Authorization: Bearer <token>`; None if the header is absent."""
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Use Authorization: Bearer <API key>.")
    return token.strip()


def _is_admin_token(token: str, settings: Settings) -> bool:
    admin_token = settings.ADMIN_TOKEN
    # Constant time, and an unset admin token matches nothing: never open by default.
    return bool(admin_token) and hmac.compare_digest(token.encode(), admin_token.encode())


def _identify() -> Principal:
    token = _bearer_token()
    svc = services()
    if token is None:
        return access.ANONYMOUS_CALLER if svc.settings.REQUIRE_API_KEYS else access.GUEST_CALLER
    if not token.startswith(API_KEY_PREFIX):  # the admin token never has a key's prefix
        guard_secret_tokens()
        if _is_admin_token(token, svc.settings):
            return access.ADMIN_CALLER
        raise failed_credentials(NOT_VALID)
    principal = customers.authenticate(svc.db, svc.cache, token, svc.settings.CACHE_TTL_USERS)
    if principal is None:
        raise failed_credentials(NOT_VALID)
    return principal


def _failures(*, count: bool) -> Verdict | None:
    """The client IP's failed-credentials budget, a failure counted if `count`
    (None with Redis out: credentials are then checked unlimited, as requests are)."""
    budget = Budget(FAILURES_SCOPE, services().settings.RATE_LIMIT_AUTH_FAILURES, FAILURES_WINDOW)
    limiter: RateLimiter = current_app.extensions["limiter"]
    try:
        return limiter.check(budget, f"ip:{client_ip()}", time.time(), count=count)
    except REDIS_ERRORS as exc:
        log.warning("failed credentials not counted (Redis): %s", exc)
        return None


def _too_many(verdict: Verdict | None) -> RateLimited | None:
    if verdict is None or verdict.allowed:
        return None
    return RateLimited(
        "Too many failed credentials from this address; try again later.",
        retry_after=verdict.retry_after_s,
    )


def failed_credentials(detail: str) -> RadiantError:
    """Count a failed credential against the client IP's budget; the error to
    answer: 401 while the budget lasts, 429 past it."""
    return _too_many(_failures(count=True)) or InvalidCredentials(detail)


def guard_secret_tokens() -> None:
    """Before a token is compared with a secret (the admin token, the metrics
    token): 429 once the client IP has spent its failed-credentials budget,
    whether the token is right or not. Asked once per request."""
    if "secrets_refused" not in g:
        g.secrets_refused = _too_many(_failures(count=False))
    if g.secrets_refused is not None:
        raise g.secrets_refused


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


def _known_caller() -> Principal | None:
    """The caller, if its credentials are valid and name someone (else None)."""
    try:
        principal = current_principal()
    except RadiantError:
        return None
    return principal if principal.authenticated else None


def client_key() -> str:
    """The client, as Idempotency-Keys (and rate limits, but for API keys: see
    _limit_caller) tell clients apart: the API key's customer (or the admin
    token), else the IP seen after TRUSTED_PROXIES.

    Never raises: every limit needs a caller to count, whatever the credentials."""
    principal = _known_caller()
    return principal.scope if principal is not None else f"ip:{client_ip()}"


def _api_key_hash() -> str | None:
    """The hash of the request's bearer token if it has an API key's shape (None
    otherwise, a malformed header included)."""
    if "api_key_hash" not in g:
        try:
            token = _bearer_token()
        except RadiantError:
            token = None
        keyed = token is not None and token.startswith(API_KEY_PREFIX)
        g.api_key_hash = customers.hash_api_key(token) if keyed else None
    return g.api_key_hash


def _key_caller(key_hash: str) -> str:
    # A customer has one valid key at a time (rotation replaces it), so the
    # key's budget is the customer's; an admin rotation starts the new key with
    # a fresh window.
    return f"key:{key_hash}"


def _limit_caller() -> str:
    """Whom a budget counts: a caller identified by an API key by that key, so
    that the key's cache lookup and the limit are one script call (_counted_check);
    any other caller as client_key() says."""
    key_hash = _api_key_hash()
    if key_hash is not None and _known_caller() is not None:
        return _key_caller(key_hash)
    return client_key()


@dataclass(frozen=True, eq=False)  # each declaration is its own, even when alike
class RateLimit:
    """A budget declared on a view by rate_limit: `setting` (a Settings field)
    requests per `window_s` seconds per caller, shared by the views of one `scope`."""

    setting: str
    window_s: int
    scope: str
    view: Callable

    @property
    def where(self) -> str:
        return f"{self.view.__module__}.{self.view.__qualname__}"


# Every declaration made: install_rate_limits refuses to start if a registered
# view does not carry each one (a view dropped, or wrapped without functools.wraps).
DECLARED: list[RateLimit] = []


def rate_limit(setting: str, window_s: int, *, scope: str):
    """View decorator: limit the view to `setting` requests per `window_s` seconds
    per caller, counted in `scope` (views of one scope share the budget). On a
    MethodView's method it limits the requests that method serves (GET's: HEAD
    too), on a function view every request; stacked budgets are checked top
    first."""

    def decorate(view):
        declared = RateLimit(setting, window_s, scope, view)
        DECLARED.append(declared)
        view.rate_limits = (declared, *getattr(view, "rate_limits", ()))
        return view

    return decorate


@dataclass(frozen=True)
class Limit:
    budget: Budget
    methods: tuple[str, ...] | None = None  # None: every method


def _declared(view) -> list[tuple[RateLimit, tuple[str, ...] | None]]:
    """The budgets declared on an endpoint's view, each with the methods it limits."""
    view_class = getattr(view, "view_class", None)
    if view_class is None:
        return [(declared, None) for declared in getattr(view, "rate_limits", ())]
    found = []
    for method in sorted(view_class.methods):
        served = (method,)
        if method == "GET" and "HEAD" not in view_class.methods:
            served += ("HEAD",)  # MethodView answers HEAD with `get` when it has no `head`
        function = getattr(view_class, method.lower())
        found += [(declared, served) for declared in getattr(function, "rate_limits", ())]
    return found


def _limit(declared: RateLimit, methods: tuple[str, ...] | None, settings: Settings) -> Limit:
    if declared.setting not in {f.name for f in fields(settings)}:
        raise LookupError(
            f"The rate limit on {declared.where} names {declared.setting!r}, no setting."
        )
    budget = Budget(declared.scope, getattr(settings, declared.setting), declared.window_s)
    return Limit(budget, methods)


def install_rate_limits(app: Flask, settings: Settings) -> RateLimiter:
    """Wrap every view that declares a budget (rate_limit): the limit is checked
    (and the hit counted) before the view, so a refused request costs nothing
    more; RateLimit-* headers say where the caller stands. Limits live in Redis,
    shared by every ingress process (core.ratelimit); with Redis out, requests
    are served unlimited.

    A declaration that no registered view carries, or that names no setting,
    stops the app here: a limit is never silently lost."""
    limiter = RateLimiter(app.extensions["radiantgo"].redis)
    installed: set[RateLimit] = set()
    for endpoint, view in list(app.view_functions.items()):
        declared = _declared(view)
        if declared:
            limits = [_limit(budget, methods, settings) for budget, methods in declared]
            app.view_functions[endpoint] = _limited(view, limits, limiter)
            installed.update(budget for budget, _ in declared)
    missing = [declared.where for declared in DECLARED if declared not in installed]
    if missing:
        raise LookupError(f"Rate limits declared on views no endpoint serves: {', '.join(missing)}")

    @app.after_request
    def rate_limit_headers(response):
        verdict = g.get("rate_limit")
        if verdict is not None:
            response.headers["RateLimit-Limit"] = str(verdict.limit)
            response.headers["RateLimit-Remaining"] = str(verdict.remaining)
            response.headers["RateLimit-Reset"] = str(verdict.reset_s)
        return response

    return limiter


def _limited(view, limits: list[Limit], limiter: RateLimiter):
    @functools.wraps(view)
    def limited(*args, **kwargs):
        for lim in limits:
            if lim.methods is None or request.method in lim.methods:
                _check(limiter, lim)
        return view(*args, **kwargs)

    return limited


def _check(limiter: RateLimiter, limit: Limit) -> None:
    try:
        verdict = _counted_check(limiter, limit.budget)
    except REDIS_ERRORS as exc:
        log.warning("rate limit not checked (Redis): %s", exc)
        return
    shown = g.get("rate_limit")
    if shown is None or verdict.remaining < shown.remaining:
        g.rate_limit = verdict  # the headers show the tightest budget
    if not verdict.allowed:
        g.rate_limit = verdict
        raise RateLimited(
            f"Rate limit of {limit.budget.limit} per {limit.budget.window_s} s exceeded.",
            retry_after=verdict.retry_after_s,
        )


def _counted_check(limiter: RateLimiter, budget: Budget) -> Verdict:
    """Check and count `budget`. An API key not identified yet is looked up in
    its cache entry by the same script call: on a hit that is who the caller is;
    on a miss (not cached, or revoked: a tombstone) nothing was counted, and the
    caller is identified through MongoDB (current_principal), then checked."""
    key_hash = _api_key_hash()
    if key_hash is not None and "principal" not in g:
        cache_key = cache_keys.api_key_key(key_hash)
        found = limiter.check_cached_key(budget, cache_key, _key_caller(key_hash), time.time())
        if found is not None:
            verdict, cached = found
            services().cache.count_hit(cache_keys.USERS)  # a miss is counted by authenticate
            g.principal = customers.principal_of(json.loads(cached))
            return verdict
    return limiter.check(budget, _limit_caller(), time.time())
