"""PLACEHOLDER for issue 20's egress helper (branch of /work/wt-egress): only
what the management API calls, so its tests run. Dropped at merge."""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from core.errors import Unprocessable


class WebhookUrlRefused(Unprocessable):
    """A webhook URL that may not receive deliveries (scheme, or address)."""

    title = "Webhook URL refused"
    slug = "webhook-url-refused"


def check_url(url: str, *, allow_private: bool) -> None:
    parts = urlsplit(url)
    schemes = ("https", "http") if allow_private else ("https",)
    if parts.scheme not in schemes or not parts.hostname:
        raise WebhookUrlRefused(f"A webhook URL is {' or '.join(schemes)} with a host.")
    if allow_private:
        return
    try:
        addresses = {ipaddress.ip_address(parts.hostname)}
    except ValueError:
        try:
            found = socket.getaddrinfo(parts.hostname, None)
        except (OSError, UnicodeError):
            raise WebhookUrlRefused(f"{parts.hostname!r} does not resolve.") from None
        addresses = {ipaddress.ip_address(info[4][0]) for info in found}
    if not all(address.is_global for address in addresses):
        raise WebhookUrlRefused(f"{parts.hostname!r} is not a public address.")
