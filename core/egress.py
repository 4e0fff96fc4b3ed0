"""Posting webhooks to customers' URLs without letting a URL reach inside.

A webhook URL is chosen by a customer, and RadiantGo's workers post to it from
inside our network. Unchecked, a URL naming 10.0.0.5, localhost or the cloud
metadata service (169.254.169.254) would make us a proxy into our own services
(server-side request forgery). So:

- An endpoint is checked when it is registered (`check_url`): https only, no
  credentials in the URL, and a host that resolves to public addresses only.
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

import contextlib
import http.client
import ipaddress
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from urllib.parse import quote, urlsplit

import certifi
import idna
import urllib3.exceptions
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.util.ssl_ import create_urllib3_context

from core.errors import WebhookUrlRefused

MAX_URL_LENGTH = 2048
DEFAULT_PORTS = {"http": 80, "https": 443}
# Cloud providers' instance metadata services (AWS, GCP and Azure on IPv4; AWS
# on IPv6): they hand out credentials to whoever asks from inside. Refused even
# where private addresses are allowed, as are addresses no receiver can have.
CLOUD_METADATA = frozenset(ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254"))
NAT64 = ipaddress.ip_network("64:ff9b::/96")  # IPv6 addresses that reach an IPv4 one
# A receiver's Retry-After is advice for the retry schedule, which spans about
# a day: a longer wait means "not in this schedule", not a reason to wait weeks.
MAX_RETRY_AFTER_S = 24 * 3600.0

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


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


@dataclass(frozen=True)
class _Target:
    """A parsed webhook URL: where to connect, what to ask for."""

    scheme: str
    host: str  # ASCII (IDNA), no brackets: what is resolved and what TLS verifies
    port: int
    path: str  # path and query: the request line's target

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == DEFAULT_PORTS[self.scheme] else f"{host}:{self.port}"


def check_url(url: str, *, allow_private: bool) -> None:
    """Raise WebhookUrlRefused, saying why, for a URL `post` would not post to."""
    target = _parse(url, allow_private=allow_private)
    try:
        addresses = _resolve(target.host, target.port)
    except (OSError, UnicodeError) as exc:
        raise WebhookUrlRefused(f"host {target.host} does not resolve ({_reason(exc)})") from None
    _check_addresses(target.host, addresses, allow_private=allow_private)


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
    """POST `body` to `url` once, checked as check_url checks, within `timeout_s`.

    `ca_file`: the CAs the receiver's certificate must chain to (default: certifi's).
    """
    deadline = _Deadline(timeout_s)
    try:
        target = _parse(url, allow_private=allow_private)
    except WebhookUrlRefused as exc:
        return Attempt(None, deadline.elapsed_ms(), f"refused: {exc.detail}")
    try:
        addresses = _resolve(target.host, target.port)
        _check_addresses(target.host, addresses, allow_private=allow_private)
    except WebhookUrlRefused as exc:
        return Attempt(None, deadline.elapsed_ms(), f"refused: {exc.detail}")
    except (OSError, UnicodeError) as exc:
        return Attempt(None, deadline.elapsed_ms(), f"cannot resolve {target.host}: {_reason(exc)}")
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


# Checking


def _parse(url: str, *, allow_private: bool) -> _Target:
    if len(url) > MAX_URL_LENGTH:
        raise WebhookUrlRefused(f"the URL is longer than {MAX_URL_LENGTH} characters")
    if any(c.isspace() or not c.isprintable() for c in url):
        raise WebhookUrlRefused("the URL contains spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise WebhookUrlRefused(f"the URL cannot be parsed ({exc})") from None
    schemes = ("https", "http") if allow_private else ("https",)
    if parts.scheme not in schemes:
        raise WebhookUrlRefused(f"the URL must be {' or '.join(schemes)}, not {parts.scheme!r}")
    if "@" in parts.netloc:
        raise WebhookUrlRefused("the URL must not carry a user name or password")
    if not parts.hostname:
        raise WebhookUrlRefused("the URL names no host")
    if port == 0:
        raise WebhookUrlRefused("the URL's port must not be 0")
    path = quote(parts.path or "/", safe="/:@!$&'()*+,;=%")
    if parts.query:
        path += "?" + quote(parts.query, safe="/?:@!$&'()*+,;=%")
    host = _ascii_host(parts.hostname)
    return _Target(parts.scheme, host, port or DEFAULT_PORTS[parts.scheme], path)


def _ascii_host(hostname: str) -> str:
    """The host as DNS and TLS know it: internationalised names in IDNA 2008."""
    if hostname.isascii():
        return hostname
    try:
        return idna.encode(hostname, uts46=True).decode("ascii")
    except idna.IDNAError:
        raise WebhookUrlRefused(f"the host {hostname!r} is not a valid domain name") from None


def _resolve(host: str, port: int) -> tuple[str, ...]:
    """Every address `host` resolves to, in the resolver's order of preference."""
    found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return tuple(dict.fromkeys(str(sockaddr[0]) for *_, sockaddr in found))


def _check_addresses(host: str, addresses: tuple[str, ...], *, allow_private: bool) -> None:
    """Refuse the host if any of its addresses is refused: the one connected to
    is one of them, and which one is for the resolver and the network to say."""
    for text in addresses:
        why = _why_refused(ipaddress.ip_address(text), allow_private=allow_private)
        if why:
            named = "" if host == text else f" ({host} resolves to it)"
            raise WebhookUrlRefused(f"address {text} is {why}{named}")


def _why_refused(address: IPAddress, *, allow_private: bool) -> str | None:
    """What makes `address` no receiver's, or None. An IPv6 address that reaches
    an IPv4 one (mapped, NAT64, 6to4) is judged as that one."""
    carried = _carried_ipv4(address)
    if carried is not None:
        why = _why_refused(carried, allow_private=allow_private)
        return f"{why} (it carries {carried})" if why else None
    if address in CLOUD_METADATA:
        return "a cloud metadata service"
    if address.is_unspecified:
        return "unspecified"
    if address.is_multicast:
        return "multicast"
    if allow_private:
        return None
    for why, applies in (
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("private", address.is_private),
        ("reserved", address.is_reserved),
        ("not public", not address.is_global),
    ):
        if applies:
            return why
    return None


def _carried_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address in NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address.ipv4_mapped or address.sixtofour


# Sending


def _exchange(
    target: _Target,
    addresses: tuple[str, ...],
    body: bytes,
    headers: dict[str, str],
    deadline: _Deadline,
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
    target: _Target, addresses: tuple[str, ...], deadline: _Deadline, ca_file: str | None
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

    def __init__(self, *args, deadline: _Deadline, **kwargs):
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
    target: _Target, address: str, deadline: _Deadline, ca_file: str | None
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


class _Deadline:
    """One attempt's time limit. Socket timeouts bound each wait; this bounds
    their sum: when time is up it shuts the attempt's socket down, which ends
    whatever read or write the attempt is blocked in, TLS handshake included.
    It keeps a duplicate of the socket, closed only by `end`, so shutting down
    can never reach a socket that has since been closed and its number reused."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self._started = time.monotonic()
        self._lock = threading.Lock()
        self._socket: socket.socket | None = None
        self._timer: threading.Timer | None = None
        self._fired = False

    @property
    def expired(self) -> bool:
        return self._fired or time.monotonic() - self._started >= self.seconds

    @property
    def interrupted(self) -> bool:
        """Whether the socket was shut down: what was read until then may be cut short."""
        return self._fired

    def remaining(self) -> float:
        """Seconds left; TimeoutError when none are."""
        left = self.seconds - (time.monotonic() - self._started)
        if left <= 0:
            raise TimeoutError("deadline passed")
        return left

    def elapsed_ms(self) -> int:
        return round((time.monotonic() - self._started) * 1000)

    def watch(self, sock: socket.socket) -> None:
        """Shut `sock` down when time is up (or now, if it already is)."""
        with self._lock:
            if self._socket is not None:
                self._socket.close()
            self._socket = sock.dup()
            if self._fired:
                with contextlib.suppress(OSError):
                    self._socket.shutdown(socket.SHUT_RDWR)
            elif self._timer is None:
                left = max(0.0, self.seconds - (time.monotonic() - self._started))
                self._timer = threading.Timer(left, self._expire)
                self._timer.daemon = True
                self._timer.start()

    def _expire(self) -> None:
        with self._lock:
            self._fired = True
            if self._socket is not None:
                with contextlib.suppress(OSError):
                    self._socket.shutdown(socket.SHUT_RDWR)

    def end(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
            if self._socket is not None:
                self._socket.close()
                self._socket = None


# Describing what went wrong


def _timeout(deadline: _Deadline) -> str:
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


def _describe(exc: BaseException, deadline: _Deadline, *, reading: bool = False) -> str:
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
