"""The booking state machine: data, plus the one function that applies it.

Used alike by the ingress (to refuse at once), the worker (to decide under the
lock) and bulk updates. Beside it, the IATA status codes (Cargo-IMP/Cargo-XML
FSU) that every booking event carries, and the milestones: the codes an
operator records that leave the status as it is, each in the phase of the
lifecycle where it happens.
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

# IATA FSU status codes, in lifecycle order.
BKD, RCS, MAN, DEP, ARR, RCF, NFD, DLV = "BKD", "RCS", "MAN", "DEP", "ARR", "RCF", "NFD", "DLV"
CODES = (BKD, RCS, MAN, DEP, ARR, RCF, NFD, DLV)
# The code of the event that brings a booking to each status. A cancellation
# has none: FSU has no code for it (ONE Record marks the booking deleted).
STATUS_CODES = {BOOKED: BKD, DEPARTED: DEP, ARRIVED: ARR, DELIVERED: DLV, CANCELLED: None}
# Milestone code -> the one status it may be recorded at: received from the
# shipper and manifested before departure; received from the flight and
# consignee notified after arrival, before delivery.
MILESTONES = {RCS: BOOKED, MAN: BOOKED, RCF: ARRIVED, NFD: ARRIVED}

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


class MilestoneOutOfOrder(Conflict):
    """The booking's current status is not the phase where the milestone happens."""

    title = "Milestone out of order"
    slug = "milestone-out-of-order"


def check_milestone(current: str, code: str) -> None:
    """Raise MilestoneOutOfOrder unless milestone `code` may be recorded at `current`."""
    if MILESTONES[code] != current:
        raise MilestoneOutOfOrder(
            f"{code} is recorded while a booking is {MILESTONES[code]}; this one is {current}."
        )


def next_status(current: str, target: str | None, milestone: str | None = None) -> str:
    """The status a booking at `current` is left at by a move to `target`, or by
    recording `milestone` (which keeps it); raises where the machine forbids it."""
    if milestone is not None:
        check_milestone(current, milestone)
        return current
    check_transition(current, target)
    return target


def event_type(status: str, milestone: str | None = None) -> str:
    """The type of the event of a move to `status`, or of recording `milestone`."""
    return f"MILESTONE_{milestone}" if milestone is not None else f"STATUS_{status}"


def event_code(event: dict) -> str | None:
    """An event's status code: its own, or, for one stored before events had
    codes (a creation or a transition, never a milestone), its status's."""
    if "code" in event:
        return event["code"]
    return STATUS_CODES.get(event.get("status"))
