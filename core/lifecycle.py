"""The booking state machine: data, plus the one function that applies it.

Used alike by the ingress (to refuse at once), the worker (to decide under the
lock) and bulk updates.
"""

from __future__ import annotations

from core.errors import Conflict

BOOKED, DEPARTED, ARRIVED, DELIVERED, CANCELLED = (
    "BOOKED",
    "DEPARTED",
    "ARRIVED",
    "DELIVERED",
    "CANCELLED",
)
# Every status, in lifecycle order; the statuses a booking can be moved to.
STATUSES = (BOOKED, DEPARTED, ARRIVED, DELIVERED, CANCELLED)
TARGETS = tuple(s for s in STATUSES if s != BOOKED)

TRANSITIONS: dict[str, frozenset[str]] = {
    BOOKED: frozenset({DEPARTED, CANCELLED}),
    DEPARTED: frozenset({ARRIVED, CANCELLED}),
    ARRIVED: frozenset({DELIVERED}),
    DELIVERED: frozenset(),
    CANCELLED: frozenset(),
}

# URL action -> the status it moves a booking to.
ACTIONS = {"depart": DEPARTED, "arrive": ARRIVED, "deliver": DELIVERED, "cancel": CANCELLED}


class InvalidTransition(Conflict):
    """The booking's current status does not allow the requested one."""

    title = "Invalid status transition"
    slug = "invalid-status-transition"


def check_transition(current: str, target: str) -> None:
    """Raise InvalidTransition unless `current` may move to `target`."""
    if target not in TRANSITIONS.get(current, frozenset()):
        raise InvalidTransition(f"Cannot transition from {current} to {target}")


def event_type(status: str) -> str:
    return f"STATUS_{status}"
