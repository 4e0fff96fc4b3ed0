"""Cargo space exactly once when a step fails and the job runs again.

A transient error (AutoReconnect, as a replica-set failover raises) is
injected at every write a use case makes, once before the write reaches the
server and once after it applied (its acknowledgement lost); then the job runs
again, as its retry does. Every path that takes or gives back space is
covered: a group of creates (two bookings sharing a flight, and a two-leg
booking whose second leg is full, so its first leg is taken and given back),
the same bookings as a bulk import, and a cancel. Afterwards the ledger
(core.ledger) balances on every flight: booked weight = the live bookings'
reservations, no pending marks left, nothing reserved twice; and the same
by volume, with bookings that carry dimensions and a leg short of volume."""

from datetime import UTC, datetime, timedelta
from itertools import count

import pytest

from core import bulk, flights, group_commit, ledger
from core.clock import utcnow
from core.errors import FlightFull
from core.ids import new_job_id, new_ref_id
from core.lifecycle import CANCELLED
from tests.faulty import FaultyDatabase, InjectedFault

_numbers = count(1)


def _flight(services, capacity_kg, origin, destination, hour, **volume) -> str:
    departure = datetime(2034, 5, 1, hour, tzinfo=UTC)
    doc = flights.flight_document(
        {
            "flight_number": f"RT{next(_numbers):04d}",
            "airline": "Retry Air",
            "origin": origin,
            "destination": destination,
            "departure_ts": departure,
            "arrival_ts": departure + timedelta(hours=2),
            "capacity_kg": capacity_kg,
            **volume,
        },
        1000,
    )
    services.db.flights.insert_one(doc)
    return doc["_id"]


class Trip:
    """Two flights RTA -> RTX (roomy) -> RTB (50 kg), and three 100 kg bookings:
    two on the first flight alone, one on both (refused: the second is full)."""

    def __init__(self, services):
        self.first = _flight(services, 1000, "RTA", "RTX", 8)
        self.second = _flight(services, 50, "RTX", "RTB", 12)
        one_leg = {"origin": "RTA", "destination": "RTX", "flight_ids": [self.first]}
        both = {"origin": "RTA", "destination": "RTB", "flight_ids": [self.first, self.second]}
        self.requests = [
            {"pieces": 1, "weight_kg": 100, **legs} for legs in (one_leg, one_leg, both)
        ]

    def booked_m3(self, services):
        """The first flight's booked volume once the two one-leg bookings hold it."""
        return 0

    def items(self):
        return [
            {"job_id": new_job_id(), "ref_id": new_ref_id(), "request": r, "customer_id": None}
            for r in self.requests
        ]


class VolumeTrip(Trip):
    """The same by volume: RTA -> RTX (10 m3) -> RTB (0.5 m3, weight to spare),
    three 100 kg bookings of 1 m3 each; the third refused for the volume."""

    CUBE = [{"count": 1, "length_cm": 100, "width_cm": 100, "height_cm": 100}]

    def __init__(self, services):
        self.first = _flight(services, 1000, "RTA", "RTX", 8, capacity_m3=10)
        self.second = _flight(services, 1000, "RTX", "RTB", 12, capacity_m3=0.5)
        one_leg = {"origin": "RTA", "destination": "RTX", "flight_ids": [self.first]}
        both = {"origin": "RTA", "destination": "RTB", "flight_ids": [self.first, self.second]}
        self.requests = [
            {"pieces": 1, "weight_kg": 100, "dimensions": self.CUBE, **legs}
            for legs in (one_leg, one_leg, both)
        ]

    def booked_m3(self, services):
        return 2


def create_bookings(services, db, items):
    return group_commit.create_bookings(
        db, services.locks, items, now=utcnow(), min_connection_minutes=60
    )


def balanced(services, *fids) -> list[str]:
    """What is wrong with these flights' books (nothing: [])."""
    wrong = []
    for found in ledger.audit(services.db, list(fids)):
        if not found.balanced or found.marked or found.creating:
            wrong.append(str(found.summary()))
    return wrong


def booked_kg(services, fid) -> float:
    return flights.get_flight(services.db, fid)["booked_kg"]


def booked_m3(services, fid) -> float:
    return flights.get_flight(services.db, fid)["booked_m3"]


def at_every_write(services, scenario) -> list[str]:
    """Run `scenario` (run(db), then check() -> problems) once cleanly to learn
    its writes, then once per write and per side of it with that write
    failing, each on fresh data; returns every case's problems."""
    probe = scenario()
    counted = FaultyDatabase(services.db)
    probe.run(counted)
    assert not probe.check(), probe.check()
    assert counted.writes, "the scenario wrote nothing"
    problems = []
    for step, label in enumerate(counted.writes):
        for applied in (False, True):
            case = scenario()
            with pytest.raises(InjectedFault):
                case.run(FaultyDatabase(services.db, fail_at=step, applied=applied))
            case.run(services.db)  # the job's retry
            problems += [f"{label} (write {step}, applied={applied}): {p}" for p in case.check()]
    return problems


class GroupCreate:
    def __init__(self, services, trip=Trip):
        self.services, self.trip = services, trip(services)
        self.items = self.trip.items()

    def run(self, db):
        self.outcomes = create_bookings(self.services, db, self.items)

    def check(self):
        x, y, z = self.outcomes
        problems = balanced(self.services, self.trip.first, self.trip.second)
        if not (isinstance(x, dict) and isinstance(y, dict) and isinstance(z, FlightFull)):
            problems.append(f"outcomes {self.outcomes}")
        if (
            booked_kg(self.services, self.trip.first),
            booked_kg(self.services, self.trip.second),
        ) != (200, 0):
            problems.append("booked weights")
        if booked_m3(self.services, self.trip.first) != self.trip.booked_m3(self.services):
            problems.append("booked volume")
        return problems


class BulkCreate:
    def __init__(self, services, trip=Trip):
        self.services, self.trip, self.job_id = services, trip(services), new_job_id()

    def run(self, db):
        self.result = bulk.import_bookings(
            db,
            self.services.locks,
            self.trip.requests,
            job_id=self.job_id,
            now=utcnow(),
            chunk_size=2,
            min_connection_minutes=60,
            awbs=self.services.awb_stock,
        )

    def check(self):
        problems = balanced(self.services, self.trip.first, self.trip.second)
        if (self.result["succeeded"], self.result["failed"]) != (2, 1):
            problems.append(f"result {self.result}")
        if booked_kg(self.services, self.trip.first) != 200:
            problems.append("booked weight")
        if booked_m3(self.services, self.trip.first) != self.trip.booked_m3(self.services):
            problems.append("booked volume")
        return problems


class Cancel:
    def __init__(self, services, trip=Trip):
        self.services, self.trip = services, trip(services)
        (self.booking, *_) = create_bookings(services, services.db, self.trip.items()[:1])
        self.job_id = new_job_id()

    def run(self, db):
        item = {
            "job_id": self.job_id,
            "ref_id": self.booking["ref_id"],
            "target": CANCELLED,
            "request": {},
            "owner": None,
        }
        (self.moved,) = group_commit.transition_bookings(
            db, self.services.locks, self.services.redis, [item], clock=utcnow
        )

    def check(self):
        problems = balanced(self.services, self.trip.first)
        if self.moved.get("status") != CANCELLED or booked_kg(self.services, self.trip.first):
            problems.append(f"moved {self.moved}")
        if booked_m3(self.services, self.trip.first):
            problems.append("booked volume")
        return problems


@pytest.mark.slow(reason="a scenario per write and side of it: ~40 runs")
@pytest.mark.parametrize("scenario", [GroupCreate, BulkCreate, Cancel], ids=lambda s: s.__name__)
def test_a_failure_at_any_write_then_a_retry_takes_the_space_once(services, scenario):
    assert at_every_write(services, lambda: scenario(services)) == []


@pytest.mark.slow(reason="a scenario per write and side of it: ~40 runs")
@pytest.mark.parametrize("scenario", [GroupCreate, BulkCreate, Cancel], ids=lambda s: s.__name__)
def test_a_failure_at_any_write_then_a_retry_takes_the_volume_once(services, scenario):
    assert at_every_write(services, lambda: scenario(services, VolumeTrip)) == []
