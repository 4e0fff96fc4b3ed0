"""Structured logs: one line per event, with the request and job ids bound.

Context lives in a contextvar, so gunicorn's threads and Celery's thread pool
each log their own request_id / job_id without passing them around.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import unicodedata
import uuid
from typing import Any

from core.settings import Settings

_context: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "log_context", default=None
)


def bind(**values: Any) -> None:
    _context.set({**(_context.get() or {}), **values})


def clear() -> None:
    _context.set({})


def bound() -> dict[str, Any]:
    return dict(_context.get() or {})


# A request id a client may choose (X-Request-ID); any other is replaced.
REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


def request_id(offered: str | None) -> str:
    """The client's X-Request-ID if it is one (REQUEST_ID, whole), else a new one."""
    if offered is not None and REQUEST_ID.fullmatch(offered):
        return offered
    return uuid.uuid4().hex


# Characters that end a line (str.splitlines breaks at each), steer a terminal
# or reorder what it shows: controls (C0, DEL, C1), format characters (bidi
# overrides), Unicode's line and paragraph separators.
_CONTROL = frozenset(("Cc", "Cf", "Zl", "Zp"))
_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escaped(char: str) -> str:
    if unicodedata.category(char) not in _CONTROL:
        return char
    code = ord(char)
    if char in _ESCAPES:
        return _ESCAPES[char]
    # As Python writes them: \x, \u, or \U past the 16-bit plane (tag characters).
    return (
        f"\\x{code:02x}"
        if code < 0x100
        else f"\\u{code:04x}"
        if code < 0x10000
        else f"\\U{code:08x}"
    )


def escape(text: str) -> str:
    """`text` with every control character written as an escape (\\n, \\x1b,
    \\u2028): a logged value can never start a line of its own."""
    if text.isprintable():  # the common case, at C speed
        return text
    return "".join(_escaped(c) for c in text)


def _quoted(text: str) -> str:
    return '"' + escape(text.replace("\\", "\\\\").replace('"', '\\"')) + '"'


_PLAIN = re.compile(r"[^\s\"=\\]+")


def logfmt_value(value: Any) -> str:
    """A field's value as `key=value` shows it: as is when it is one plain token,
    else quoted, so that a space, a quote or an `=` in it cannot make a field."""
    text = str(value)
    return text if _PLAIN.fullmatch(text) and text.isprintable() else _quoted(text)


_WORDS = re.compile(r"[^\s\"=\\]+(?: [^\s\"=\\]+)*")


def _message(msg: str) -> str:
    """The message as is when it is plain words (one space apart), else quoted:
    a field is only a `key=value` after it, never one written into it."""
    return msg if _WORDS.fullmatch(msg) and msg.isprintable() else _quoted(msg)


def _indented(exc: str) -> str:
    """A traceback under its line, every line indented: none of it (an exception's
    message included) can pass for a line of the log."""
    return "\n".join("    " + escape(line) for line in exc.split("\n"))


class _ContextFormatter(logging.Formatter):
    def __init__(self, as_json: bool):
        super().__init__()
        self.as_json = as_json

    def format(self, record: logging.LogRecord) -> str:
        fields = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            **(_context.get() or {}),
            **getattr(record, "fields", {}),
        }
        if record.exc_info:
            fields["exc"] = self.formatException(record.exc_info)
        if self.as_json:
            return json.dumps(fields, default=str)
        ts, level, name, msg = (fields.pop(k) for k in ("ts", "level", "logger", "msg"))
        head = f"{ts} {level:<7} {escape(name)}: {_message(msg)}"
        exc = fields.pop("exc", None)
        tail = " ".join(f"{logfmt_value(k)}={logfmt_value(v)}" for k, v in fields.items())
        return f"{head} {tail}".rstrip() + (f"\n{_indented(exc)}" if exc else "")


_configured = False


class _StderrHandler(logging.StreamHandler):
    """Writes to sys.stderr as it is at each record, not as it was when logging
    was configured: a test runner swaps sys.stderr for a capture it closes later,
    and a background thread (core.flushing) may still log after that."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def configure_logging(settings: Settings) -> None:
    """Route every logger (ours, gunicorn's, Celery's) through one formatter."""
    global _configured
    if _configured:
        return
    import time

    logging.Formatter.converter = time.gmtime
    handler = _StderrHandler()
    handler.setFormatter(_ContextFormatter(settings.LOG_FORMAT == "json"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.LOG_LEVEL.upper())
    for noisy in ("pymongo", "amqp", "kombu", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    _configured = True
