"""Which URLs a webhook may be posted to: parsed, and their host's addresses
judged, so a customer's URL cannot make our workers a proxy into our own
network (server-side request forgery; see core.egress).

`check_url` judges a URL when its endpoint is registered; core.egress.post
judges it again, with the same functions, before each delivery.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

import idna

from core.errors import WebhookUrlRefused

MAX_URL_LENGTH = 2048
DEFAULT_PORTS = {"http": 80, "https": 443}
# Cloud providers' instance metadata services (AWS, GCP and Azure on IPv4; AWS
# on IPv6): they hand out credentials to whoever asks from inside. Refused even
# where private addresses are allowed, as are addresses no receiver can have.
CLOUD_METADATA = frozenset(ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254"))
NAT64 = ipaddress.ip_network("64:ff9b::/96")  # IPv6 addresses that reach an IPv4 one

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class Target:
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
    """Raise WebhookUrlRefused, saying why, for a URL core.egress.post would
    not post to."""
    target = parse(url, allow_private=allow_private)
    try:
        addresses = resolve(target.host, target.port)
    except (OSError, UnicodeError) as exc:
        raise WebhookUrlRefused(
            f"host {target.host} does not resolve ({lookup_failure(exc)})"
        ) from None
    check_addresses(target.host, addresses, allow_private=allow_private)


def lookup_failure(exc: OSError | UnicodeError) -> str:
    """Why a host name did not resolve, in a few words."""
    return (exc.strerror if isinstance(exc, OSError) else None) or str(exc) or type(exc).__name__


def parse(url: str, *, allow_private: bool) -> Target:
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
    return Target(parts.scheme, host, port or DEFAULT_PORTS[parts.scheme], path)


def _ascii_host(hostname: str) -> str:
    """The host as DNS and TLS know it: internationalised names in IDNA 2008."""
    if hostname.isascii():
        return hostname
    try:
        return idna.encode(hostname, uts46=True).decode("ascii")
    except idna.IDNAError:
        raise WebhookUrlRefused(f"the host {hostname!r} is not a valid domain name") from None


def resolve(host: str, port: int) -> tuple[str, ...]:
    """Every address `host` resolves to, in the resolver's order of preference."""
    found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return tuple(dict.fromkeys(str(sockaddr[0]) for *_, sockaddr in found))


def check_addresses(host: str, addresses: tuple[str, ...], *, allow_private: bool) -> None:
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
