"""Status transitions: the state machine, under a per-booking lock, fenced.

The lock keeps concurrent transitions of one booking from wasting each
other's work; the fence keeps them correct. The write matches the status and
version that were read, so a holder whose lock expired mid-transition finds
its write refused and re-decides on the newer state.

Each applied transition is recorded on the booking (`applied`: job id, status,
time) in the same atomic update, so a redelivered job can tell that it already
happened, and write its event if the first delivery died before doing so.

A milestone (core.lifecycle.MILESTONES: RCS, MAN, RCF, NFD) is a transition
that keeps the status: decided by the machine under the same lock, fenced
the same way, it moves the version and is recorded in `applied` (with its
code), so caches and webhook receivers that order by version see it, and a
redelivery records it once.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import redis
from pymongo.database import Database

from core import bookings, customers, queued_jobs, reservations
from core.errors import NotFound, NotReady
from core.lifecycle import STATUS_CODES, event_type, next_status
from core.locks import LockManager, booking_lock_key

FENCED_WRITE_TRIES = 3


class StaleRead(Exception):
    """The booking changed between our read and our write (the fence held)."""


def read_booking(db: Database, ref_id: str) -> dict[str, Any] | None:
    return db.bookings.find_one({"ref_id": ref_id}, {"_id": 0})


def recorded(booking: dict[str, Any], job_id: str) -> dict[str, Any] | None:
    return next((a for a in booking.get("applied", ()) if a["job_id"] == job_id), None)


def transition_event(ref_id: str, applied: dict[str, Any], data: dict) -> dict[str, Any]:
    """The event of booking `ref_id`'s transition `applied` (its entry in the
    booking's `applied`), with the request's details. A milestone happened
    when its request says (`at`, ISO text as the job carries it), else when
    it was recorded."""
    details = {name: data.get(name) for name in bookings.EVENT_DETAILS}
    status, milestone = applied["status"], applied.get("milestone")
    occurred_at = None
    if milestone is not None:
        reported = data.get("at")
        occurred_at = datetime.fromisoformat(reported) if reported else applied["at"]
    return bookings.new_event(
        ref_id,
        event_type(status, milestone),
        status,
        code=milestone or STATUS_CODES[status],
        job_id=applied["job_id"],
        at=applied["at"],
        version=applied.get("version"),  # absent from transitions stored before it was kept
        occurred_at=occurred_at,
        **details,
    )


def _write_event(db: Database, ref_id: str, applied: dict[str, Any], data: dict) -> None:
    bookings.insert_event(db, transition_event(ref_id, applied, data))


def applied_entry(
    booking: dict[str, Any], target: str, job_id: str, now: datetime, milestone: str | None = None
) -> dict:
    """What a transition from `booking` (as read) to `target`, or its
    `milestone` recorded, leaves in its `applied`."""
    entry = {"job_id": job_id, "status": target, "at": now, "version": booking["version"] + 1}
    if milestone is not None:
        entry["milestone"] = milestone
    return entry


def transition_time(clock: Callable[[], datetime], booking: dict[str, Any]) -> datetime:
    """Now, yet after the booking's last change, so its timeline sorts in the
    order things happened even when hosts' clocks disagree by a little."""
    return max(clock(), booking["updated_at"] + timedelta(milliseconds=1))


def fenced_update(
    booking: dict[str, Any], target: str, job_id: str, now: datetime, milestone: str | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(filter, update) of one transition from `booking` as read: it matches only
    while the booking is still at the version read (the fence: every write of a
    booking moves its version, so the version alone says the status is unchanged)."""
    return (
        {"ref_id": booking["ref_id"], "version": booking["version"]},
        {
            "$set": {"status": target, "updated_at": now},
            "$inc": {"version": 1},
            "$push": {"applied": applied_entry(booking, target, job_id, now, milestone)},
        },
    )


def moved(booking: dict[str, Any], target: str, now: datetime) -> dict[str, Any]:
    """`booking` as its fenced update left it."""
    return {**booking, "status": target, "version": booking["version"] + 1, "updated_at": now}


def apply_transition(
    db: Database,
    booking: dict[str, Any],
    target: str | None,
    *,
    job_id: str,
    data: dict,
    now: datetime,
    milestone: str | None = None,
) -> dict[str, Any]:
    """The fenced write of one transition to `target` (or of `milestone`) from
    the state in `booking` (as read).

    Raises InvalidTransition (MilestoneOutOfOrder) if the machine forbids it,
    StaleRead if the booking is no longer at the status and version read.
    """
    status = next_status(booking["status"], target, milestone)
    result = db.bookings.update_one(*fenced_update(booking, status, job_id, now, milestone))
    if result.modified_count != 1:
        raise StaleRead(booking["ref_id"])
    applied = applied_entry(booking, status, job_id, now, milestone)
    _write_event(db, booking["ref_id"], applied, data)
    return moved(booking, status, now)


def transition_booking(
    db: Database,
    locks: LockManager,
    *,
    ref_id: str,
    target: str | None,
    job_id: str,
    data: dict[str, Any],
    clock: Callable[[], datetime],
    queued_records: redis.Redis,
    owner: str | None = None,
    submitter: str | None = None,
    milestone: str | None = None,
) -> dict[str, Any]:
    """Move booking `ref_id` to `target` (or record its `milestone`) once,
    whatever the races and redeliveries.

    With `owner`, only that customer's booking (any other is not found). A
    `submitter` (the customer or operator whose job this is) disabled since
    the job was accepted is refused (CustomerDisabled), under the lock. A
    booking whose create is still queued (its mark in `queued_records`,
    core.queued_jobs.pending_create) is not ready yet: the job retries.
    The transition is timed by `clock` once the booking is read under the lock
    (not when the job began: it may have waited for the lock, or for the create)."""
    with locks.hold(booking_lock_key(ref_id)):
        customers.check_active(db, submitter)
        for _ in range(FENCED_WRITE_TRIES):
            booking = read_booking(db, ref_id)
            if booking is None:
                if queued_jobs.pending_create(db, queued_records, ref_id):
                    raise NotReady(f"Booking {ref_id} is still being created.")
                booking = read_booking(db, ref_id)  # created just before its mark was dropped
            if booking is None:
                raise NotFound(f"No booking {ref_id!r}.")
            if owner is not None and booking.get("customer_id") != owner:
                raise NotFound(f"No booking {ref_id!r}.")
            done = recorded(booking, job_id)
            if done is not None:  # a redelivery: make sure the event exists too
                _write_event(db, ref_id, done, data)
                reservations.settle(db, locks, booking)
                return booking
            now = transition_time(clock, booking)
            try:
                booking = apply_transition(
                    db, booking, target, job_id=job_id, data=data, now=now, milestone=milestone
                )
            except StaleRead:
                continue  # someone wrote without our lock (it expired): decide again
            reservations.settle(db, locks, booking)
            return booking
    raise NotReady(f"Booking {ref_id} kept changing under the transition.")
