"""Identifiers handed out by RadiantGo."""

from __future__ import annotations

import re
import secrets
import uuid

REF_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
REF_DIGITS = 9
REF_ID_PATTERN = re.compile(rf"^RG[0-9A-Z]{{{REF_DIGITS}}}$")


def new_ref_id() -> str:
    """A booking reference such as the spec's RG123ABC456 (36^9 ~ 10^14 values)."""
    return "RG" + "".join(secrets.choice(REF_ALPHABET) for _ in range(REF_DIGITS))


def ref_id_from(number: int) -> str:
    """The booking reference that `number` (taken modulo 36^9) stands for."""
    digits = []
    for _ in range(REF_DIGITS):
        number, rest = divmod(number, len(REF_ALPHABET))
        digits.append(REF_ALPHABET[rest])
    return "RG" + "".join(digits)


CUSTOMER_ID_PATTERN = re.compile(r"^cus_[0-9a-f]{16}$")
API_KEY_PREFIX = "rgk_"


def new_customer_id() -> str:
    return "cus_" + secrets.token_hex(8)


def is_customer_id(text: str) -> bool:
    return bool(CUSTOMER_ID_PATTERN.match(text))


def new_api_key() -> str:
    """256 random bits; the prefix lets secret scanners and people recognise one."""
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


def new_job_id() -> str:
    return str(uuid.uuid4())


def is_job_id(text: str) -> bool:
    try:
        return str(uuid.UUID(text)) == text
    except ValueError:
        return False


def is_ref_id(text: str) -> bool:
    return bool(REF_ID_PATTERN.match(text))
