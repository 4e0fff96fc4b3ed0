"""Posting webhooks to customers' URLs without letting a URL reach inside.

A webhook URL is chosen by a customer, and RadiantGo's workers post to it from
inside our network. Unchecked, a URL naming 10.0.0.5, localhost or the cloud
metadata service (169.254.169.254) would make us a proxy into our own services
(server-side request forgery). So:

- An endpoint is checked when it is registered (core.webhook_targets): https
  only, no credentials in the URL, and a host that resolves to public
  addresses only.
- Every delivery checks again (`post`): what a name resolves to can change
  between registration and delivery, or between two lookups a second apart (DNS
  rebinding). It then connects to the address it checked, not to the name, so
  no second lookup can swap it; TLS still verifies the certificate against the
  name, and the Host header still names it.
- Nothing is followed: a redirect is an answer like any other non-2xx, since
  following it would post to a URL nobody checked.
- An attempt has one deadline for connecting, sending and reading the answer.
  Socket timeouts bound each wait, and when the deadline passes the attempt's
  socket is shut down, which ends whatever read or write it is blocked in: a
  receiver sending a byte a second cannot hold a delivery thread. Only the
  first bytes of the answer's body are read. (Name resolution is bounded by
  the resolver's own timeouts, not by this deadline: getaddrinfo cannot be
  interrupted.)

`post` never raises for what the network or the receiver does: it returns an
`Attempt` saying what happened, for the delivery log and the retry schedule.
One connection per attempt, nothing shared between threads but immutable
data, so it may be called from a thread pool.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

import certifi
import urllib3.exceptions
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.util.ssl_ import create_urllib3_context

from core import webhook_targets
from core.deadline import Deadline
from core.errors import WebhookUrlRefused

# A receiver's Retry-After is advice for the retry schedule, which spans about
# a day: a longer wait means "not in this schedule", not a reason to wait weeks.
MAX_RETRY_AFTER_S = 24 * 3600.0


@dataclass(frozen=True)
class Attempt:
    """What one POST came to: an HTTP answer (`error` is None) or why none came."""

    status_code: int | None
    duration_ms: int
    error: str | None = None
    retry_after_s: float | None = None  # the receiver's Retry-After, in seconds from now
    response_body: bytes = b""  # the first max_response_bytes of the answer's body

    @property
    def ok(self) -> bool:
        """The receiver took the webhook: a whole 2xx answer."""
        return self.error is None and self.status_code is not None and 200 <= self.status_code < 300


def post(
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    allow_private: bool,
    timeout_s: float = 15.0,
    max_response_bytes: int = 4096,
    ca_file: str | None = None,
) -> Attempt:
    """POST `body` to `url` once, checked as webhook_targets.check_url checks, within `timeout_s`.

    `ca_file`: the CAs the receiver's certificate must chain to (default: certifi's).
    """
    deadline = Deadline(timeout_s)
    try:
        target = webhook_targets.parse(url, allow_private=allow_private)
    except WebhookUrlRefused as exc:
        return Attempt(None, deadline.elapsed_ms(), f"refused: {exc.detail}")
    try:
        addresses = webhook_targets.resolve(target.host, target.port)
        webhook_targets.check_addresses(target.host, addresses, allow_private=allow_private)
    except WebhookUrlRefused as exc:
        return Attempt(None, deadline.elapsed_ms(), f"refused: {exc.detail}")
    except (OSError, UnicodeError) as exc:
        return Attempt(
            None,
            deadline.elapsed_ms(),
            f"cannot resolve {target.host}: {webhook_targets.lookup_failure(exc)}",
        )
    request_headers = {k: v for k, v in headers.items() if k.lower() not in ("host", "connection")}
    request_headers |= {"Host": target.host_header, "Connection": "close"}
    try:
        return _exchange(
            target, addresses, body, request_headers, deadline, max_response_bytes, ca_file
        )
    finally:
        deadline.end()


def retry_after_seconds(value: str | None, *, now: float) -> float | None:
    """A Retry-After header (seconds, or an HTTP-date) as seconds after `now`
    (a Unix time), between 0 and MAX_RETRY_AFTER_S; None if absent or unreadable."""
    value = (value or "").strip()
    if not value:
        return None
    if value.isascii() and value.isdigit():
        digits = value.lstrip("0") or "0"
        seconds = float(digits) if len(digits) < 10 else MAX_RETRY_AFTER_S
    else:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - now
        except (TypeError, ValueError, OverflowError):
            return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


# Sending


def _exchange(
    target: webhook_targets.Target,
    addresses: tuple[str, ...],
    body: bytes,
    headers: dict[str, str],
    deadline: Deadline,
    max_response_bytes: int,
    ca_file: str | None,
) -> Attempt:
    """Connect to the first of `addresses` that takes it, send, read the answer."""
    connection = response = None
    try:
        connection = _connect(target, addresses, deadline, ca_file)
        connection.timeout = deadline.remaining()
        connection.request("POST", target.path, body=body, headers=headers, preload_content=False)
        connection.timeout = deadline.remaining()
        response = connection.getresponse()
        retry_after = retry_after_seconds(response.headers.get("Retry-After"), now=time.time())
        try:
            content = response.read(max_response_bytes, decode_content=False)
        except (OSError, http.client.HTTPException, urllib3.exceptions.HTTPError) as exc:
            error = _describe(exc, deadline, reading=True)
            return Attempt(response.status, deadline.elapsed_ms(), error, retry_after)
        error = _timeout(deadline) if deadline.interrupted else None  # the read may be short
        return Attempt(response.status, deadline.elapsed_ms(), error, retry_after, content)
    except (OSError, http.client.HTTPException, urllib3.exceptions.HTTPError) as exc:
        return Attempt(None, deadline.elapsed_ms(), _describe(exc, deadline))
    finally:
        if response is not None:
            response.close()
        if connection is not None:
            connection.close()


def _connect(
    target: webhook_targets.Target,
    addresses: tuple[str, ...],
    deadline: Deadline,
    ca_file: str | None,
) -> HTTPConnection:
    """A connection to the first of `addresses` that takes one. A TLS failure is
    not tried elsewhere: the receiver was reached, and that was its answer."""
    for index, address in enumerate(addresses):
        connection = _connection(target, address, deadline, ca_file)
        try:
            connection.connect()
            return connection
        except (OSError, urllib3.exceptions.HTTPError) as exc:
            connection.close()
            if index == len(addresses) - 1 or deadline.expired or _is_tls(exc):
                raise
    raise ConnectionError(f"{target.host} has no address")


class _Watched:
    """A urllib3 connection whose socket the attempt's deadline can shut down."""

    def __init__(self, *args, deadline: Deadline, **kwargs):
        super().__init__(*args, **kwargs)
        self._deadline = deadline

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        self._deadline.watch(sock)
        return sock


class _WatchedHTTPConnection(_Watched, HTTPConnection):
    pass


class _WatchedHTTPSConnection(_Watched, HTTPSConnection):
    pass


def _connection(
    target: webhook_targets.Target, address: str, deadline: Deadline, ca_file: str | None
) -> HTTPConnection:
    """A connection to `address` itself, which TLS checks is `target.host`'s."""
    if target.scheme == "http":
        return _WatchedHTTPConnection(
            address, target.port, timeout=deadline.remaining(), deadline=deadline
        )
    return _WatchedHTTPSConnection(
        address,
        target.port,
        timeout=deadline.remaining(),
        deadline=deadline,
        server_hostname=target.host,
        ssl_context=_tls_context(ca_file or certifi.where()),
    )


_per_thread = threading.local()


def _tls_context(ca_file: str) -> ssl.SSLContext:
    """This thread's TLS context trusting the CAs in `ca_file`: TLS 1.2 or later,
    certificate and host name checked. urllib3 sets options on the context of
    every connection it wraps, so threads never share one; loading a CA bundle
    is slow enough that each thread keeps its own."""
    contexts = _per_thread.__dict__.setdefault("tls_contexts", {})
    if ca_file not in contexts:
        context = create_urllib3_context(cert_reqs=ssl.CERT_REQUIRED)
        context.load_verify_locations(cafile=ca_file)
        contexts[ca_file] = context
    return contexts[ca_file]


# Describing what went wrong


def _timeout(deadline: Deadline) -> str:
    return f"timeout after {deadline.seconds:g} s"


def _is_tls(exc: BaseException) -> bool:
    return isinstance(_cause(exc), ssl.SSLError)


def _cause(exc: BaseException) -> BaseException:
    """The error underneath urllib3's wrapping of it."""
    while isinstance(exc, urllib3.exceptions.HTTPError) and exc.__cause__ is not None:
        exc = exc.__cause__
    if isinstance(exc, urllib3.exceptions.ProtocolError) and len(exc.args) > 1:
        inner = exc.args[1]
        if isinstance(inner, BaseException):
            return inner
    return exc


def _describe(exc: BaseException, deadline: Deadline, *, reading: bool = False) -> str:
    """A short, stable text for the delivery log: what happened, not a traceback."""
    cause = _cause(exc)
    timed_out = isinstance(cause, TimeoutError | urllib3.exceptions.TimeoutError) and not (
        isinstance(cause, urllib3.exceptions.NewConnectionError)
    )
    if deadline.expired or timed_out:
        return _timeout(deadline)
    text = _reason(cause)
    return f"answer cut short: {text}" if reading else text


def _reason(exc: BaseException) -> str:
    if isinstance(exc, http.client.RemoteDisconnected):
        return "connection closed without an answer"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ConnectionResetError):
        return "connection reset"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate rejected: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS error: {exc.reason or exc}"
    if isinstance(exc, http.client.HTTPException | urllib3.exceptions.HTTPError):
        return f"bad HTTP answer: {exc}"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
