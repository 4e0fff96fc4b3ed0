"""Cargo space: a booking reserves its weight, and its volume, on every leg of
its itinerary.

Many bookings share one flight, so overbooking is the race the booking lock
cannot stop. Each leg is reserved under its flight's lock
(core.locks.flight_lock_key, FLIGHT_LOCK_TTL, the spec's backoff), legs locked
in flight_id order so that two multi-leg bookings never wait on each other in
a cycle. The lock keeps contenders from wasting work; the writes keep them
correct, even if a lock expires midway.

Where things are: the flight holds its figures, by weight (`capacity_g`,
`booked_g`, `available_g`) and by volume (`capacity_cm3`, `booked_cm3`,
`available_cm3`), and the marks of the changes under way (`pending` and
`pending_cm3`, maps by ref_id); each booking's space on a leg is a document of
`reservations` (`_id` "<flight_id>:<ref_id>"). The flight stays small (a
search reads hundreds of them) however many bookings it carries.

A booking's space is a Space: its weight in grams and its volume in cm3 (0
without dimensions: the volume is unknown, and only the weight is reserved).
Both measures always move together, in the same update of the flight.

Taking space is one conditional update of the flight: room for the weight
(`available_g` >= it) and for the volume (`available_cm3` >= it), and no
pending mark of the booking; it takes both and sets the marks: `pending` says
+grams, `pending_cm3` +cm3 (a weight is at least one gram, so the sign of
`pending` alone tells a take from a give-back; `pending_cm3` is set only for
a volume, so a booking without dimensions writes what it wrote before flights
had volumes). Then the reservation document is written and the marks dropped.
A delivery that dies in between leaves the marks, which tell the redelivery
that the space is taken already; one that dies after it left the
reservation, which tells it the same: the space is never taken twice.
Giving it back mirrors this, with marks of -grams and -cm3. A group of
bookings on one flight takes its space in one update when all fit, once those
an earlier delivery reserved are set aside.

A reservation records the job that made it (`job_id`), so that the ledger
(core.ledger) can tell a create still under way from one that ended without
its booking.

All legs or none: when a leg lacks room, the booking's other legs are given
back (those of an earlier delivery too) and FlightFull names the leg and the
measure that ran out (`short_of`: "weight" or "volume").
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple

from pymongo import UpdateOne
from pymongo.database import Database

from core.db import insert_many_new
from core.errors import FlightFull, LockHeld, NotReady, Unprocessable
from core.lifecycle import CANCELLED
from core.locks import FLIGHT_LOCK_TTL, Held, LockManager, flight_lock_key
from core.measures import cubic_metres, grams, kilograms


def _legs(flight_ids: Iterable[str] | None) -> list[str]:
    return sorted(set(flight_ids or ()))


class _FlightLocks:
    """The flight locks one booking holds, taken one by one in flight_id order
    (the fixed order) and all released together at the end."""

    def __init__(self, locks: LockManager):
        self.locks = locks
        self.held: list[Held] = []

    def take(self, fid: str) -> None:
        """Wait for flight `fid`'s lock. One held through every retry (by a
        worker that died holding it, until its TTL) is NotReady: the job retries
        later; it is not the client's conflict."""
        try:
            self.held.append(self.locks.acquire(flight_lock_key(fid), FLIGHT_LOCK_TTL))
        except LockHeld as exc:
            raise NotReady(f"{exc.detail} Retrying.") from None

    def release_all(self) -> None:
        for lock in reversed(self.held):
            self.locks.release(lock)


@contextlib.contextmanager
def flight_locks(locks: LockManager, legs: list[str] | None = None) -> Iterator[_FlightLocks]:
    """Hold flight locks: those of `legs` at once (sorted), more with take()."""
    holding = _FlightLocks(locks)
    try:
        for fid in legs or ():
            holding.take(fid)
        yield holding
    finally:
        holding.release_all()


class Space(NamedTuple):
    """Cargo space: a weight in whole grams and a volume in whole cm3."""

    g: int
    cm3: int = 0


def space_of(weight_kg: float, volume_cm3: int | None) -> Space:
    """The space of a booking of `weight_kg` and `volume_cm3` (None: no dimensions)."""
    return Space(grams(weight_kg), volume_cm3 or 0)


class Wanted(NamedTuple):
    """A booking's request for space: `weight_kg` and `volume_cm3` (None: no
    dimensions) on each of `flight_ids`, by the create job `job_id`."""

    ref_id: str
    flight_ids: list[str] | None
    weight_kg: float
    job_id: str | None = None
    volume_cm3: int | None = None

    @property
    def space(self) -> Space:
        return space_of(self.weight_kg, self.volume_cm3)


def reservation_id(fid: str, ref_id: str) -> str:
    return f"{fid}:{ref_id}"


def held_by(reservation: dict[str, Any]) -> Space:
    """The space a reservation document holds (no volume: one made before volumes)."""
    return Space(reservation["weight_g"], reservation.get("volume_cm3", 0))


def reserved_space(db: Database, fid: str) -> dict[str, Space]:
    """ref_id -> space reserved on flight `fid` (a range of `_id`: no index of its own)."""
    found = db.reservations.find({"_id": {"$gt": f"{fid}:", "$lt": f"{fid}:\uffff"}})
    return {r["ref_id"]: held_by(r) for r in found}


def flight_reservations(db: Database, fid: str) -> dict[str, int]:
    """ref_id -> grams reserved on flight `fid`."""
    return {ref_id: space.g for ref_id, space in reserved_space(db, fid).items()}


def _mark(ref_id: str) -> str:
    return f"pending.{ref_id}"


def _volume_mark(ref_id: str) -> str:
    return f"pending_cm3.{ref_id}"


def _marks(ref_id: str, space: Space, sign: int) -> dict[str, int]:
    """The pending marks of a take (sign 1) or a give-back (-1) of `space`."""
    marks = {_mark(ref_id): sign * space.g}
    if space.cm3:
        marks[_volume_mark(ref_id)] = sign * space.cm3
    return marks


def _unset_marks(ref_id: str) -> dict[str, str]:
    return {_mark(ref_id): "", _volume_mark(ref_id): ""}


def _moved(space: Space, sign: int) -> dict[str, int]:
    """The $inc that takes (sign 1) or gives back (-1) `space`."""
    moved = {"available_g": -sign * space.g, "booked_g": sign * space.g}
    if space.cm3:
        moved.update(available_cm3=-sign * space.cm3, booked_cm3=sign * space.cm3)
    return moved


def reserve(
    db: Database,
    locks: LockManager,
    ref_id: str,
    flight_ids: list[str] | None,
    weight_kg: float,
    job_id: str | None = None,
    volume_cm3: int | None = None,
) -> None:
    """Reserve `weight_kg` and `volume_cm3` for booking `ref_id` on every leg,
    or on none (FlightFull). A leg reserved for it already (a redelivery) stays
    as it is."""
    wanted = Wanted(ref_id, flight_ids, weight_kg, job_id, volume_cm3)
    (refused,) = reserve_many(db, locks, [wanted])
    if refused is not None:
        raise refused


def reserve_many(db: Database, locks: LockManager, wanted: list[Wanted]) -> list[FlightFull | None]:
    """reserve() for many bookings (a worker's group) with one lock taken per
    flight: for each, in order, None (reserved on every leg) or the FlightFull
    that refused it (reserved on none).

    The flights are locked one by one in flight_id order, each held to the
    end; under each flight's lock, every booking still in the running that
    flies it takes its space there. A worker that dies midway leaves the
    earlier legs reserved: the redelivered job either finishes them all or,
    a leg being full by then, gives them all back."""
    refused: list[FlightFull | None] = [None] * len(wanted)
    legs = [_legs(w.flight_ids) for w in wanted]
    spaces = [w.space for w in wanted]
    taken: list[tuple[str, int]] = []  # (flight, booking) whose space is taken, to record
    with flight_locks(locks) as holding:
        for fid in sorted({fid for booking_legs in legs for fid in booking_legs}):
            holding.take(fid)
            flying = [n for n in range(len(wanted)) if fid in legs[n] and refused[n] is None]
            fits = _reserve_on(db, fid, [(wanted[n].ref_id, spaces[n]) for n in flying])
            for n, fit in zip(flying, fits, strict=True):
                if fit:
                    taken.append((fid, n))
                    continue
                _release_legs(db, legs[n], wanted[n].ref_id, spaces[n])
                refused[n] = _full(db, fid, wanted[n].ref_id, spaces[n])
        _record(db, [(fid, wanted[n], spaces[n]) for fid, n in taken if refused[n] is None])
    return refused


def _reserve_on(db: Database, fid: str, bookings: list[tuple[str, Space]]) -> list[bool]:
    """Take the space of `bookings` ((ref_id, space)) on flight `fid`; for each,
    whether its space is taken now (by this call or an earlier delivery's).

    Those an earlier delivery recorded are set aside first (their marks are
    gone, so a take would not see them); the rest take their space in one
    update if all fit and none is under way, else one by one."""
    ids = [reservation_id(fid, ref_id) for ref_id, _ in bookings]
    recorded = {r["ref_id"] for r in db.reservations.find({"_id": {"$in": ids}}, {"ref_id": 1})}
    to_take = [(ref_id, space) for ref_id, space in bookings if ref_id not in recorded]
    if len(to_take) > 1 and _take(db, fid, to_take):
        return [True] * len(bookings)
    return [ref_id in recorded or _take_one(db, fid, ref_id, space) for ref_id, space in bookings]


def _take_one(db: Database, fid: str, ref_id: str, space: Space) -> bool:
    """Take one booking's space; True also when an earlier delivery took it and
    died before recording it (its pending marks say so)."""
    if _take(db, fid, [(ref_id, space)]):
        return True
    flight = db.flights.find_one({"_id": fid}, {_mark(ref_id): 1, _volume_mark(ref_id): 1})
    if flight is None:
        raise Unprocessable(f"Flight {fid} does not exist.")
    marked = (
        flight.get("pending", {}).get(ref_id),
        flight.get("pending_cm3", {}).get(ref_id, 0),
    )
    return marked == (space.g, space.cm3)


def _take(db: Database, fid: str, bookings: list[tuple[str, Space]]) -> bool:
    """One conditional update: the space of all `bookings`, each marked as
    pending, if there is room for all, by weight and by volume, and none is
    marked; else nothing."""
    total = Space(sum(space.g for _, space in bookings), sum(space.cm3 for _, space in bookings))
    room: dict[str, Any] = {"available_g": {"$gte": total.g}}
    if total.cm3:  # a flight is never asked for volume it need not have
        room["available_cm3"] = {"$gte": total.cm3}
    marks: dict[str, int] = {}
    for ref_id, space in bookings:
        marks.update(_marks(ref_id, space, 1))
    taken = db.flights.update_one(
        {"_id": fid, **room, **{_mark(ref_id): {"$exists": False} for ref_id, _ in bookings}},
        {"$inc": _moved(total, 1), "$set": marks},
    )
    return taken.modified_count == 1


def reservation_document(fid: str, ref_id: str, space: Space, job_id: str | None) -> dict[str, Any]:
    return {
        "_id": reservation_id(fid, ref_id),
        "flight_id": fid,
        "ref_id": ref_id,
        "weight_g": space.g,
        "volume_cm3": space.cm3,
        "job_id": job_id,
    }


def _record(db: Database, taken: list[tuple[str, Wanted, Space]]) -> None:
    """Write the reservations whose space was taken ((flight, booking, space)),
    all in one insert, then drop their pending marks, one update per flight
    in one bulk write."""
    if not taken:
        return
    docs = [reservation_document(fid, w.ref_id, space, w.job_id) for fid, w, space in taken]
    insert_many_new(db.reservations, docs)  # duplicates: written by an earlier delivery
    marks: dict[str, dict[str, str]] = {}
    for fid, wanted, _ in taken:
        marks.setdefault(fid, {}).update(_unset_marks(wanted.ref_id))
    db.flights.bulk_write(
        [UpdateOne({"_id": fid}, {"$unset": unset}) for fid, unset in marks.items()],
        ordered=False,
    )


def _full(db: Database, fid: str, ref_id: str, space: Space) -> FlightFull:
    """The refusal of `space` on flight `fid`, naming the measure that ran out
    (the weight where both did)."""
    flight = db.flights.find_one({"_id": fid}, {"available_g": 1, "available_cm3": 1})
    available_cm3 = flight.get("available_cm3", 0)
    if space.cm3 and flight["available_g"] >= space.g and available_cm3 < space.cm3:
        return FlightFull(
            f"Flight {fid} has {cubic_metres(available_cm3):g} m3 of cargo space left;"
            f" booking {ref_id} needs {cubic_metres(space.cm3):g} m3.",
            flight_id=fid,
            short_of="volume",
        )
    return FlightFull(
        f"Flight {fid} has {kilograms(flight['available_g']):g} kg of cargo space left;"
        f" booking {ref_id} needs {kilograms(space.g):g} kg.",
        flight_id=fid,
        short_of="weight",
    )


def _release_legs(db: Database, legs: list[str], ref_id: str, space: Space) -> None:
    for fid in legs:
        give_back(db, fid, ref_id, space)


def give_back(db: Database, fid: str, ref_id: str, space: Space) -> None:
    """Give back `ref_id`'s space on flight `fid`, once however often asked:
    both measures return in one update that marks the release as under way
    (-grams, -cm3), then the reservation and the marks go."""
    mark = _mark(ref_id)
    if db.reservations.find_one({"_id": reservation_id(fid, ref_id)}, {"_id": 1}) is None:
        # Nothing recorded: space taken by a delivery that died before recording
        # it goes back; the marks of a release that died after its delete go.
        db.flights.update_one(
            {"_id": fid, mark: space.g},
            {"$inc": _moved(space, -1), "$unset": _unset_marks(ref_id)},
        )
        db.flights.update_one({"_id": fid, mark: -space.g}, {"$unset": _unset_marks(ref_id)})
        return
    db.flights.update_one(
        {"_id": fid, mark: {"$ne": -space.g}},
        {"$inc": _moved(space, -1), "$set": _marks(ref_id, space, -1)},
    )
    db.reservations.delete_one({"_id": reservation_id(fid, ref_id)})
    db.flights.update_one({"_id": fid}, {"$unset": _unset_marks(ref_id)})


def drop_mark(db: Database, fid: str, ref_id: str, weight_g: int) -> None:
    """Drop `ref_id`'s pending marks on flight `fid` if they still say `weight_g`."""
    db.flights.update_one({"_id": fid, _mark(ref_id): weight_g}, {"$unset": _unset_marks(ref_id)})


def release(db: Database, locks: LockManager, booking: dict[str, Any]) -> None:
    """Give back `booking`'s space on every leg; once, however often asked."""
    legs = _legs(booking.get("flight_ids"))
    if not legs:
        return
    with flight_locks(locks, legs):
        space = space_of(booking["weight_kg"], booking.get("volume_cm3"))
        _release_legs(db, legs, booking["ref_id"], space)


def settle(db: Database, locks: LockManager, booking: dict[str, Any]) -> None:
    """After a transition of `booking` (as it now stands): a cancelled booking
    holds no space. Arrived and delivered bookings keep theirs."""
    if booking["status"] == CANCELLED:
        release(db, locks, booking)
