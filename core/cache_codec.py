"""How cached values are written in Redis: JSON, compressed when large, and
route answers as HTTP bodies stored as bytes behind a small header."""

from __future__ import annotations

import base64
import json
import zlib
from typing import Any

from core.clock import to_iso


def json_default(value: Any) -> Any:
    """Dates and datetimes as the API writes them (ISO 8601, UTC, `Z`)."""
    if hasattr(value, "isoformat"):
        return to_iso(value)
    raise TypeError(f"cannot cache {type(value).__name__}")


def dumps(value: Any) -> str:
    return json.dumps(value, default=json_default, separators=(",", ":"))


# Generational values (flight lists) and answers (route results) are stored
# zlib-compressed above this size: JSON this repetitive shrinks many times over
# for a fraction of a millisecond, so warming a whole network stays small in
# Redis. Generational values in base64, because the client decodes every reply
# as text; answers are read as bytes.
COMPRESS_ABOVE = 4096
COMPRESSED = "z:"


def compressed(encoded: str) -> str:
    if len(encoded) < COMPRESS_ABOVE:
        return encoded
    return COMPRESSED + base64.b64encode(zlib.compress(encoded.encode(), 1)).decode()


def decode_generational(raw: str) -> dict[str, Any]:
    if raw.startswith(COMPRESSED):
        raw = zlib.decompress(base64.b64decode(raw[len(COMPRESSED) :])).decode()
    return json.loads(raw)


# Answers (route search): an HTTP body stored as bytes, served as stored.
#   <generation>|<codec>|<meta>\n<body>
# The plain header lets a hit check the generation without touching the body;
# codec "z" is zlib (every answer above COMPRESS_ABOVE), "" plain; meta is the
# caller's (a route answer's cut points). Read and written as bytes (never
# decoded as text), so no base64 either.
ZLIB = b"z"


def encode_answer(generation: int, body: bytes, meta: bytes = b"") -> bytes:
    codec = b""
    if len(body) >= COMPRESS_ABOVE:
        codec, body = ZLIB, zlib.compress(body, 1)
    return b"%d|%s|%s\n%s" % (generation, codec, meta, body)


def split_answer(stored: bytes) -> tuple[int, bytes, bytes]:
    """(generation, meta, body) of a stored answer; ValueError or zlib.error if
    `stored` is not one."""
    head, _, body = stored.partition(b"\n")
    generation, codec, meta = head.split(b"|", 2)
    return int(generation), meta, zlib.decompress(body) if codec == ZLIB else body
