"""Webhook signatures as Standard Webhooks (standardwebhooks.com) defines them.

A receiver proves a delivery came from RadiantGo and was not changed or replayed
by checking an HMAC-SHA256 over the message id, the send time and the exact body
bytes, with a secret only it and RadiantGo know. Following the standard rather
than a scheme of our own lets receivers use its libraries in any language.

While an endpoint's secret is being rotated, a delivery carries the signature
of every secret still valid (old and new), space-separated: a receiver that has
either one accepts it, so rotation needs no moment when both sides switch at once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from secrets import token_bytes

SECRET_PREFIX = "whsec_"  # noqa: S105 (a prefix, not a secret)
SECRET_BYTES = 32  # the standard asks for 24 to 64
USER_AGENT = "RadiantGo-Webhooks/1"


def new_secret() -> str:
    """A signing secret: "whsec_" and the base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(token_bytes(SECRET_BYTES)).decode()


def _key(secret: str) -> bytes:
    """The HMAC key a secret stands for: the bytes its base64 encodes."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError(f"a webhook secret starts with {SECRET_PREFIX!r}")
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)


def signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `v1,<base64>` signature of one message under one secret."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def headers(msg_id: str, timestamp: int, body: bytes, secrets: list[str]) -> dict[str, str]:
    """The headers a delivery of `body` carries, signed with each of `secrets`."""
    if not secrets:
        raise ValueError("a webhook is signed with at least one secret")
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(signature(s, msg_id, timestamp, body) for s in secrets),
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
    }
