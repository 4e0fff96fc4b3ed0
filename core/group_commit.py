"""Group commit: the booking use cases for many queued jobs at once, one write
per collection where one at a time would make one each.

Each takes the jobs a worker took together and answers, in order, each job's
outcome: what it made, or the error that refused it. An error that would
refuse them all alike (a service down) is raised instead. Every write is keyed
as in the single-job paths (a booking by ref_id, an event by job and type, a
transition by job id in `applied`), so a redelivered group has one effect.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import redis
from pymongo import UpdateOne
from pymongo.database import Database

from core import awb, bookings, customers, itinerary, measures, reservations, transitions
from core.db import insert_many_new
from core.errors import (
    BookingLocked,
    Conflict,
    CustomerDisabled,
    NotFound,
    NotReady,
    RadiantError,
)
from core.lifecycle import next_status
from core.locks import LockManager, booking_lock_key
from core.transitions import transition_event


def create_bookings(
    db: Database,
    locks: LockManager,
    items: list[dict[str, Any]],
    *,
    now: datetime,
    min_connection_minutes: int,
) -> list[dict[str, Any] | RadiantError]:
    """Store the bookings of many queued creates ({"job_id", "ref_id", "awb",
    "request", "customer_id"}) with one insert per collection: for each, in
    order, the booking, or the error that refused it (its customer disabled
    since, an itinerary that does not chain, an AWB another booking holds, a
    full flight, a ref_id clash). A transient error (a service down) is raised
    for all. Each booking's cargo space is reserved (core.reservations) before
    it is stored, so a stored booking always holds its space."""
    disabled = customers.disabled_among(db, [item.get("customer_id") for item in items])
    refused = [
        CustomerDisabled(customers.disabled_detail(item["customer_id"]))
        if item.get("customer_id") in disabled
        else _unbookable(db, item["request"], min_connection_minutes)
        for item in items
    ]
    _refuse_taken_awbs(db, locks, items, refused)
    _reserve_space(db, locks, items, refused)
    outcomes: list[dict[str, Any] | RadiantError] = [*refused]
    docs, positions = [], []
    for n, item in enumerate(items):
        if refused[n] is not None:
            continue
        doc = bookings.booking_document(
            item["ref_id"],
            item["request"],
            job_id=item["job_id"],
            now=now,
            customer_id=item.get("customer_id"),
            awb=item.get("awb"),
        )
        positions.append(n)
        docs.append(doc)
    for n, booking in zip(positions, bookings.insert_new(db, docs), strict=True):
        outcomes[n] = booking or _not_stored(db, locks, items[n])
    return outcomes


def _refuse_taken_awbs(
    db: Database, locks: LockManager, items: list[dict[str, Any]], refused: list[Any]
) -> None:
    """Refuse, before it takes space, each item whose own AWB (one the client
    brought: RadiantGo's are never issued twice) a stored booking of another
    ref_id holds, or an item before it in the group. What such an item took
    on a delivery that died before this check goes back."""
    brought = [n for n, item in enumerate(items) if refused[n] is None and "awb" in item["request"]]
    stored = awb.holders(db, [items[n]["awb"] for n in brought])
    for n in brought:
        holder = stored.setdefault(items[n]["awb"], items[n]["ref_id"])
        if holder != items[n]["ref_id"]:
            refused[n] = _give_back(db, locks, items[n])


def _not_stored(db: Database, locks: LockManager, item: dict[str, Any]) -> RadiantError:
    """Why the insert refused `item`'s booking: another job's holds its ref_id
    (1 in 10^14), or another booking its AWB (a race the unique index decided,
    after this one took its space: given back)."""
    if db.bookings.find_one({"ref_id": item["ref_id"]}, {"_id": 1}) is not None:
        return Conflict(f"Booking {item['ref_id']} already exists.")
    return _give_back(db, locks, item)


def _give_back(db: Database, locks: LockManager, item: dict[str, Any]) -> RadiantError:
    """The space an item refused for its AWB may hold goes back; its 409."""
    _release_item(db, locks, item)
    return awb.taken(item["awb"])


def _unbookable(
    db: Database, request: dict[str, Any], min_connection_minutes: int
) -> RadiantError | None:
    """Why the request's itinerary cannot be booked (flights that do not
    chain), or None; a transient error (a service down) is raised."""
    try:
        itinerary.check_booking_flights(db, request, min_connection_minutes)
    except RadiantError as exc:
        if exc.transient:
            raise
        return exc
    return None


def _reserve_space(
    db: Database,
    locks: LockManager,
    items: list[dict[str, Any]],
    refused: list[RadiantError | None],
) -> None:
    """Reserve the space of every item not refused yet, one lock per flight for
    the group; a full leg refuses its item. A booking an earlier delivery
    stored was reserved before it was, and may have been cancelled (its space
    given back) since: skipped. A ref_id another job's booking holds is that
    booking's: the item is refused before it could take space in its name."""
    flying = [
        n
        for n, item in enumerate(items)
        if refused[n] is None and item["request"].get("flight_ids")
    ]
    stored = stored_refs(db, [items[n]["ref_id"] for n in flying])
    for n in flying:
        holder = stored.get(items[n]["ref_id"], items[n]["job_id"])
        if holder != items[n]["job_id"]:
            refused[n] = Conflict(f"Booking {items[n]['ref_id']} already exists.")
    flying = [n for n in flying if refused[n] is None and items[n]["ref_id"] not in stored]
    wanted = [
        reservations.Wanted(
            items[n]["ref_id"],
            items[n]["request"]["flight_ids"],
            items[n]["request"]["weight_kg"],
            items[n]["job_id"],
            measures.volume_cm3(items[n]["request"].get("dimensions")),
        )
        for n in flying
    ]
    for n, full in zip(flying, reservations.reserve_many(db, locks, wanted), strict=True):
        refused[n] = full


def abandon_creates(db: Database, locks: LockManager, items: list[dict[str, Any]]) -> None:
    """Give back the space of create jobs ({"job_id", "ref_id", "request"})
    that end without their booking: they gave up on a service that stayed
    down, or met a bug, after a delivery took space in their name. A ref_id
    that a stored booking holds keeps its space (it is that booking's)."""
    stored = stored_refs(db, [item["ref_id"] for item in items])
    for item in items:
        if item["ref_id"] not in stored:
            _release_item(db, locks, item)


def _release_item(db: Database, locks: LockManager, item: dict[str, Any]) -> None:
    """Give back whatever space a create job ({"ref_id", "request"}) holds."""
    request = item["request"]
    if request.get("flight_ids"):
        reservations.release(
            db,
            locks,
            {
                "ref_id": item["ref_id"],
                "flight_ids": request["flight_ids"],
                "weight_kg": request["weight_kg"],
                "volume_cm3": measures.volume_cm3(request.get("dimensions")),
            },
        )


def stored_refs(db: Database, ref_ids: list[str]) -> dict[str, str]:
    """ref_id -> job_id of the bookings already stored (by an earlier delivery)."""
    if not ref_ids:
        return {}
    found = db.bookings.find({"ref_id": {"$in": ref_ids}}, {"ref_id": 1, "job_id": 1})
    return {b["ref_id"]: b.get("job_id") for b in found}


def transition_bookings(
    db: Database,
    locks: LockManager,
    queued_records: redis.Redis,
    items: list[dict[str, Any]],
    *,
    clock: Callable[[], datetime],
) -> list[dict[str, Any] | RadiantError]:
    """core.transitions.transition_booking for many queued transitions ({"job_id", "ref_id",
    "target" or "milestone", "request", "owner", "submitter"}): for each, in order, the booking
    as moved, or the error that refused it (NotReady among them: retry that one
    later; CustomerDisabled if its submitter was disabled since).

    Each booking's lock is tried once, in ref_id order; the bookings locked are
    read at once and moved with one fenced bulk write, at most one transition
    of each per write, their events in one insert. What is left (a second
    transition of a booking in the group, a booking locked elsewhere, a write
    the fence refused) goes one at a time through transition_booking, which
    waits for the lock and decides again."""
    outcomes: list[dict[str, Any] | RadiantError | None] = [None] * len(items)
    held = {}
    try:
        for ref_id in sorted({item["ref_id"] for item in items}):
            lock = locks.try_acquire(booking_lock_key(ref_id))
            if lock is not None:
                held[ref_id] = lock
        later = _transition_locked(db, locks, queued_records, items, outcomes, set(held), clock)
    finally:
        for lock in held.values():
            locks.release(lock)
    for n in later:
        item = items[n]
        try:
            outcomes[n] = transitions.transition_booking(
                db,
                locks,
                ref_id=item["ref_id"],
                target=item.get("target"),
                job_id=item["job_id"],
                data=item["request"],
                clock=clock,
                queued_records=queued_records,
                owner=item.get("owner"),
                submitter=item.get("submitter"),
                milestone=item.get("milestone"),
            )
        except BookingLocked as exc:
            # Held through every wait: by a worker that died holding it (the
            # lock outlives it by its TTL). Not the client's conflict: retried.
            outcomes[n] = NotReady(f"{exc.detail} Retrying.")
        except RadiantError as exc:
            outcomes[n] = exc
    return outcomes  # type: ignore[return-value]


def _transition_locked(
    db: Database,
    locks: LockManager,
    queued_records: redis.Redis,
    items: list[dict[str, Any]],
    outcomes: list[Any],
    locked: set[str],
    clock: Callable[[], datetime],
) -> list[int]:
    """Decide and write the first transition of each locked booking; fill their
    outcomes; return the positions left for one-at-a-time."""
    found = {
        b["ref_id"]: b for b in db.bookings.find({"ref_id": {"$in": sorted(locked)}}, {"_id": 0})
    }
    submitters = [item.get("submitter") for item in items if item["ref_id"] in locked]
    disabled = customers.disabled_among(db, submitters)
    later, planned, writes, events, settled, moved = [], [], [], [], [], set()
    for n, item in enumerate(items):
        ref_id, job_id, request = item["ref_id"], item["job_id"], item["request"]
        if ref_id not in locked or ref_id in moved:
            later.append(n)
            continue
        if item.get("submitter") in disabled:
            outcomes[n] = CustomerDisabled(customers.disabled_detail(item["submitter"]))
            continue
        booking = found.get(ref_id)
        if booking is None:
            later.append(n)  # not created yet, or just now: decided one at a time
            continue
        if item.get("owner") is not None and booking.get("customer_id") != item["owner"]:
            outcomes[n] = NotFound(f"No booking {ref_id!r}.")
            continue
        done = transitions.recorded(booking, job_id)
        if done is not None:  # a redelivery: its event (or its release) may be missing
            events.append(transition_event(ref_id, done, request))
            settled.append(booking)
            outcomes[n] = booking
            continue
        milestone = item.get("milestone")
        try:
            status = next_status(booking["status"], item.get("target"), milestone)
        except RadiantError as exc:
            outcomes[n] = exc
            continue
        now = transitions.transition_time(clock, booking)
        update = transitions.fenced_update(booking, status, job_id, now, milestone)
        writes.append(UpdateOne(*update))
        applied = transitions.applied_entry(booking, status, job_id, now, milestone)
        events.append(transition_event(ref_id, applied, request))
        planned.append((n, booking, now, status))
        moved.add(ref_id)
    if writes and db.bookings.bulk_write(writes, ordered=False).modified_count < len(writes):
        # Someone wrote without our lock (it expired): which of ours held?
        again = {b["ref_id"]: b for b in db.bookings.find({"ref_id": {"$in": sorted(moved)}})}
        refused = {
            n
            for n, booking, _, _ in planned
            if transitions.recorded(again[booking["ref_id"]], items[n]["job_id"]) is None
        }
        later += sorted(refused)
        planned = [p for p in planned if p[0] not in refused]
        refused_jobs = {items[n]["job_id"] for n in refused}
        events = [e for e in events if e["job_id"] not in refused_jobs]
    insert_many_new(db.booking_events, events)  # duplicates: an earlier delivery wrote them
    for n, booking, now, status in planned:
        outcomes[n] = transitions.moved(booking, status, now)
        settled.append(outcomes[n])
    for booking in settled:
        reservations.settle(db, locks, booking)
    return sorted(later)
