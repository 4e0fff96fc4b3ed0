"""Structured logs: one line per event, with the request and job ids bound.

Context lives in a contextvar, so gunicorn's threads and Celery's thread pool
each log their own request_id / job_id without passing them around.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
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
        head = f"{ts} {level:<7} {name}: {msg}"
        exc = fields.pop("exc", None)
        tail = " ".join(f"{k}={v}" for k, v in fields.items())
        return f"{head} {tail}".rstrip() + (f"\n{exc}" if exc else "")


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
