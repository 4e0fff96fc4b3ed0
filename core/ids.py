"""Identifiers handed out by RadiantGo."""

from __future__ import annotations

import re
import secrets
import uuid

_REF_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
REF_ID_PATTERN = re.compile(r"^RG[0-9A-Z]{9}$")


def new_ref_id() -> str:
    """A booking reference such as the spec's RG123ABC456 (36^9 ~ 10^14 values)."""
    return "RG" + "".join(secrets.choice(_REF_ALPHABET) for _ in range(9))


def new_job_id() -> str:
    return str(uuid.uuid4())


def is_job_id(text: str) -> bool:
    try:
        return str(uuid.UUID(text)) == text
    except ValueError:
        return False


def is_ref_id(text: str) -> bool:
    return bool(REF_ID_PATTERN.match(text))
