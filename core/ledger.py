"""The cargo-space ledger: does every flight's booked space match what holds it?

The books balance when, for each flight,
- `booked_g` is the sum of its reservations' weights (core.reservations), give
  or take the changes under way that pending marks name (space taken and not
  yet recorded, or given back and not yet deleted): `drift_g` is what is left;
  and `booked_cm3` the same of their volumes (`drift_cm3`);
- every reservation belongs to a live booking (not cancelled) that flies the
  flight: one that does not is an orphan, unless the create that made it is
  still under way (its job unfinished);
- every live booking that flies the flight holds a reservation on it.

`audit` reads it all and reports the flights where that fails. `repair` sets
each such flight right under its flight lock, taking the bookings as the
truth: an orphan's space is given back, a live booking's missing reservation
is made (past capacity if need be: the booking exists; the report says so),
a change under way whose job ended is finished, and the booked and available
figures of both measures are set from what is reserved. Both are safe beside running
workers: repair decides each flight again under its lock, and every step it
takes is one the workers' own steps tolerate (core.reservations' writes are
idempotent).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import redis
from pymongo.database import Database

from core import jobs
from core.bulk import parent_job_id
from core.errors import REDIS_ERRORS
from core.lifecycle import CANCELLED
from core.locks import LockManager
from core.measures import cubic_metres, kilograms
from core.reservations import (
    Space,
    drop_mark,
    flight_locks,
    give_back,
    held_by,
    reservation_document,
    reservation_id,
    space_of,
)


@dataclass
class FlightLedger:
    """One flight's books, as read (grams and cm3; the lists hold ref_ids)."""

    flight_id: str
    capacity_g: int
    booked_g: int
    capacity_cm3: int = 0
    booked_cm3: int = 0
    reserved_g: int = 0
    under_way_g: int = 0
    reserved_cm3: int = 0
    under_way_cm3: int = 0
    orphans: list[str] = field(default_factory=list)
    unreserved: list[str] = field(default_factory=list)
    creating: list[str] = field(default_factory=list)  # reserved by a create not ended yet
    marked: list[str] = field(default_factory=list)  # pending marks: changes under way

    @property
    def drift_g(self) -> int:
        return self.booked_g - self.reserved_g - self.under_way_g

    @property
    def drift_cm3(self) -> int:
        return self.booked_cm3 - self.reserved_cm3 - self.under_way_cm3

    @property
    def balanced(self) -> bool:
        return (
            self.drift_g == 0 and self.drift_cm3 == 0 and not self.orphans and not self.unreserved
        )

    def summary(self) -> dict[str, Any]:
        found = asdict(self)
        for name in ("capacity", "booked", "reserved", "under_way"):
            found[f"{name}_kg"] = kilograms(found.pop(f"{name}_g"))
            found[f"{name}_m3"] = cubic_metres(found.pop(f"{name}_cm3"))
        found["drift_kg"] = kilograms(self.drift_g)
        found["drift_m3"] = cubic_metres(self.drift_cm3)
        return found


def audit(db: Database, flight_ids: list[str] | None = None) -> list[FlightLedger]:
    """The books of every flight that carries anything (or of `flight_ids`),
    balanced or not, by flight_id."""
    fields = {
        "capacity_g": 1,
        "booked_g": 1,
        "capacity_cm3": 1,
        "booked_cm3": 1,
        "pending": 1,
        "pending_cm3": 1,
    }
    if flight_ids is None:
        held = list(db.reservations.find())
        query = {
            "$or": [
                {"booked_g": {"$ne": 0}},
                {"booked_cm3": {"$nin": [0, None]}},
                {"pending": {"$exists": True}},
            ]
        }
    else:
        held = list(db.reservations.find({"flight_id": {"$in": flight_ids}}))
        query = {"_id": {"$in": flight_ids}}
    live = _live_bookings(db, flight_ids)
    flights = {f["_id"]: f for f in db.flights.find(query, fields)}
    named = {r["flight_id"] for r in held} | {fid for b in live.values() for fid in b["legs"]}
    if flight_ids is None and named - set(flights):
        more = db.flights.find({"_id": {"$in": sorted(named - set(flights))}}, fields)
        flights.update({f["_id"]: f for f in more})
    ledgers = {fid: _ledger(flight) for fid, flight in flights.items()}
    reserved: dict[str, set[str]] = {fid: set() for fid in ledgers}
    for reservation in held:
        if reservation["flight_id"] in ledgers:
            reserved[reservation["flight_id"]].add(reservation["ref_id"])
            _count_reservation(db, ledgers[reservation["flight_id"]], reservation, live)
    for ref_id, booking in live.items():
        for fid in sorted(booking["legs"] & reserved.keys()):
            if ref_id not in reserved[fid]:
                ledgers[fid].unreserved.append(ref_id)
    for fid, ledger in ledgers.items():
        _count_marks(ledger, flights[fid], reserved[fid])
    return sorted(ledgers.values(), key=lambda ledger: ledger.flight_id)


def _live_bookings(db: Database, flight_ids: list[str] | None) -> dict[str, dict[str, Any]]:
    """ref_id -> {"legs"} of the bookings that hold space."""
    query: dict[str, Any] = {"status": {"$ne": CANCELLED}, "flight_ids": {"$type": "array"}}
    if flight_ids is not None:
        query["flight_ids"] = {"$in": flight_ids}
    found = db.bookings.find(query, {"ref_id": 1, "flight_ids": 1})
    return {b["ref_id"]: {"legs": set(b["flight_ids"])} for b in found if b.get("flight_ids")}


def _ledger(flight: dict[str, Any]) -> FlightLedger:
    return FlightLedger(
        flight["_id"],
        flight.get("capacity_g", 0),
        flight.get("booked_g", 0),
        flight.get("capacity_cm3", 0),
        flight.get("booked_cm3", 0),
    )


def _count_reservation(
    db: Database,
    ledger: FlightLedger,
    reservation: dict[str, Any],
    live: dict[str, dict[str, Any]],
) -> None:
    ref_id = reservation["ref_id"]
    held = held_by(reservation)
    ledger.reserved_g += held.g
    ledger.reserved_cm3 += held.cm3
    booking = live.get(ref_id)
    if booking is not None and ledger.flight_id in booking["legs"]:
        return
    if booking is None and _create_under_way(db, reservation):
        ledger.creating.append(ref_id)
    else:
        ledger.orphans.append(ref_id)


def _create_under_way(db: Database, reservation: dict[str, Any]) -> bool:
    """Whether the create job that made `reservation` may still store its
    booking: no booking holds the ref_id (cancelled or stored by another
    job) and the job has not ended (a short job is in MongoDB only once it
    ended, a bulk job from its acceptance)."""
    job_id = reservation.get("job_id")
    if job_id is None:  # made before reservations named their job
        return False
    if db.bookings.find_one({"ref_id": reservation["ref_id"]}, {"_id": 1}) is not None:
        return False
    job = db.jobs.find_one({"_id": parent_job_id(job_id)}, {"state": 1})
    return job is None or job["state"] not in jobs.FINISHED


def _count_marks(ledger: FlightLedger, flight: dict[str, Any], reserved: set[str]) -> None:
    """Space taken and not yet recorded counts as booked; space given back and
    not yet deleted counts as free. The weight's mark says which it is (its
    sign); the volume's, how much volume moved with it."""
    volumes = flight.get("pending_cm3") or {}
    for ref_id, weight_g in (flight.get("pending") or {}).items():
        recorded = ref_id in reserved
        if (weight_g > 0 and not recorded) or (weight_g < 0 and recorded):
            ledger.under_way_g += weight_g
            ledger.under_way_cm3 += volumes.get(ref_id, 0)
        ledger.marked.append(ref_id)


def repair(db: Database, locks: LockManager, flight_ids: list[str] | None = None) -> list[dict]:
    """Set right every flight whose books do not balance, or that holds the
    marks of changes whose workers are gone (see the module docstring);
    returns what was found and done, one entry a flight."""
    done = []
    for found in audit(db, flight_ids):
        if found.balanced and not found.marked:
            continue
        with flight_locks(locks, [found.flight_id]):
            # Under the lock no worker is between taking space and recording
            # it: a mark seen now is one whose worker is gone.
            (again,) = audit(db, [found.flight_id])
            actions = _repair_flight(db, again)
        if actions:
            done.append({**again.summary(), "actions": actions})
    return done


def _repair_flight(db: Database, ledger: FlightLedger) -> list[str]:
    """Settle the flight's dead marks, orphans and unreserved bookings, then
    set its figures."""
    fid = ledger.flight_id
    flight = db.flights.find_one({"_id": fid}, {"pending": 1, "pending_cm3": 1})
    volumes = flight.get("pending_cm3") or {}
    actions = [
        _settle_mark(db, fid, ref_id, Space(abs(w), abs(volumes.get(ref_id, 0))), w > 0)
        for ref_id, w in (flight.get("pending") or {}).items()
    ]
    for ref_id in ledger.orphans:
        reservation = db.reservations.find_one({"_id": reservation_id(fid, ref_id)})
        if reservation is not None:
            space = held_by(reservation)
            give_back(db, fid, ref_id, space)
            actions.append(f"gave back {_measured(space)} of {ref_id}")
    actions += [_reserve_for(db, fid, ref_id) for ref_id in ledger.unreserved]
    actions.append(_set_figures(db, fid))
    return [action for action in actions if action]


def _measured(space: Space) -> str:
    kg = f"{kilograms(space.g):g} kg"
    return f"{kg} and {cubic_metres(space.cm3):g} m3" if space.cm3 else kg


def _settle_mark(db: Database, fid: str, ref_id: str, space: Space, take: bool) -> str:
    """Finish what a dead worker left under way (a take or a give-back of
    `space`), where that needs no guess: a give-back, a record whose mark was
    not dropped, a take whose create ended without its booking. A take whose
    create may still come back is left to its redelivery, which finishes it."""
    recorded = db.reservations.find_one({"_id": reservation_id(fid, ref_id)}, {"_id": 1})
    if take and recorded is not None:
        drop_mark(db, fid, ref_id, space.g)
        return f"dropped {ref_id}'s mark: its reservation is recorded"
    if take and not _take_abandoned(db, ref_id):
        return ""
    give_back(db, fid, ref_id, space)
    return f"settled {ref_id}'s pending {'take' if take else 'give-back'} of {_measured(space)}"


def _take_abandoned(db: Database, ref_id: str) -> bool:
    booking = db.bookings.find_one({"ref_id": ref_id}, {"status": 1})
    if booking is not None:
        return booking["status"] == CANCELLED
    job = db.jobs.find_one({"ref_id": ref_id}, {"state": 1})
    return job is not None and job["state"] in jobs.FINISHED


def _reserve_for(db: Database, fid: str, ref_id: str) -> str:
    booking = db.bookings.find_one({"ref_id": ref_id})
    if booking is None or booking["status"] == CANCELLED or fid not in booking["flight_ids"]:
        return ""
    space = space_of(booking["weight_kg"], booking.get("volume_cm3"))
    doc = reservation_document(fid, ref_id, space, booking.get("job_id"))
    db.reservations.replace_one({"_id": doc["_id"]}, doc, upsert=True)
    return f"recorded {_measured(space)} for {ref_id}, which held none"


def _set_figures(db: Database, fid: str) -> str:
    (now,) = audit(db, [fid])
    if now.drift_g == 0 and now.drift_cm3 == 0:
        return ""
    booked = Space(now.reserved_g + now.under_way_g, now.reserved_cm3 + now.under_way_cm3)
    fence: dict[str, Any] = {"_id": fid, "booked_g": now.booked_g}
    figures: dict[str, int] = {"booked_g": booked.g, "available_g": now.capacity_g - booked.g}
    changes = [f"booked {kilograms(now.booked_g):g} kg -> {kilograms(booked.g):g} kg"]
    if now.drift_cm3:  # a flight stored before volumes keeps none until give_volume
        fence["booked_cm3"] = now.booked_cm3
        figures.update(booked_cm3=booked.cm3, available_cm3=now.capacity_cm3 - booked.cm3)
        changes.append(
            f"booked {cubic_metres(now.booked_cm3):g} m3 -> {cubic_metres(booked.cm3):g} m3"
        )
    if not now.drift_g:
        changes.pop(0)
    db.flights.update_one(fence, {"$set": figures})
    over = booked.g > now.capacity_g or (now.drift_cm3 and booked.cm3 > now.capacity_cm3)
    return "; ".join(changes) + (" (over capacity)" if over else "")


def totals(ledgers: list[FlightLedger], checked_at: datetime) -> dict[str, Any]:
    """An audit in a few figures: what the performance endpoint shows."""
    unbalanced = [ledger for ledger in ledgers if not ledger.balanced]
    return {
        "checked_at": checked_at,
        "flights_checked": len(ledgers),
        "flights_unbalanced": len(unbalanced),
        "drift_kg": kilograms(sum(abs(ledger.drift_g) for ledger in unbalanced)),
        "drift_m3": cubic_metres(sum(abs(ledger.drift_cm3) for ledger in unbalanced)),
        "orphans": sum(len(ledger.orphans) for ledger in unbalanced),
        "unreserved": sum(len(ledger.unreserved) for ledger in unbalanced),
    }


# The last audit's totals (JSON), whoever ran it: beat, or the ledger command.
LAST_CHECK = "ledger:last_check"


def check(db: Database, client: redis.Redis, now: datetime) -> list[FlightLedger]:
    """Audit every flight and keep the totals where last_check finds them."""
    found = audit(db)
    client.set(LAST_CHECK, json.dumps(totals(found, now), default=str))
    return found


def last_check(client: redis.Redis) -> dict[str, Any] | None:
    """The totals of the last audit, None if there was none (or Redis is out)."""
    try:
        raw = client.get(LAST_CHECK)
    except REDIS_ERRORS:
        return None
    return json.loads(raw) if raw else None
