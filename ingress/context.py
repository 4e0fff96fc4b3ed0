"""What a view needs from the app: its services, its publisher, its waiter."""

from __future__ import annotations

import re

from celery import Celery
from flask import current_app, request

from core.services import Services
from core.waiting import JobWaiter

# ASCII digits only ([0-9]: \d takes any script's digits).
_PREFER_WAIT = re.compile(r"(?:^|[,;\s])wait\s*=\s*\"?([0-9]{1,6})\"?", re.IGNORECASE)


def services() -> Services:
    return current_app.extensions["radiantgo"]


def publisher() -> Celery:
    return current_app.extensions["celery"]


def waiter() -> JobWaiter:
    return current_app.extensions["job_waiter"]


def prefer_wait() -> int:
    """Seconds asked for with `Prefer: wait=N` (RFC 7240), capped; 0 if none."""
    match = _PREFER_WAIT.search(request.headers.get("Prefer", ""))
    if not match:
        return 0
    return min(int(match.group(1)), services().settings.MAX_WAIT_SECONDS)
