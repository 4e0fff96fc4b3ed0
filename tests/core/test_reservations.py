"""Cargo space (core.reservations, core.flights): reservations never go above
capacity, are all legs or none, happen once per booking, and are given back
once on a cancel; a flight update never drops below what is booked."""

import itertools
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from core import flights, group_commit, reservations
from core.clock import utcnow
from core.errors import CapacityBelowBooked, FlightFull
from core.ids import new_job_id, new_ref_id
from core.lifecycle import CANCELLED, DELIVERED
from core.locks import LockManager, flight_lock_key
from tests.conftest import moved_booking, store_flights

_numbers = itertools.count(1)


def new_flight(services, capacity_kg, *, origin="RSA", destination="RSB", hour=8, **volume):
    """A flight stored as the import stores it (`capacity_m3` may be given);
    returns its flight_id."""
    number = f"RS{next(_numbers):03d}"
    departure = datetime(2033, 3, 1, hour, tzinfo=UTC)
    doc = flights.flight_document(
        {
            "flight_number": number,
            "airline": "Reserve Air",
            "origin": origin,
            "destination": destination,
            "departure_ts": departure,
            "arrival_ts": departure + timedelta(hours=2),
            "capacity_kg": capacity_kg,
            **volume,
        },
        services.settings.DEFAULT_FLIGHT_CAPACITY_KG,
    )
    services.db.flights.delete_one({"_id": doc["_id"]})
    services.db.flights.insert_one(doc)
    return doc["_id"]


def space(services, fid):
    view = flights.get_flight(services.db, fid)
    return view["capacity_kg"], view["booked_kg"], view["available_kg"]


def holders(services, fid):
    return reservations.flight_reservations(services.db, fid)


@pytest.mark.slow(reason="many threads racing for one flight")
def test_concurrent_reservations_never_go_above_capacity(services):
    fid = new_flight(services, 1000)
    outcomes = []

    def book():
        try:
            reservations.reserve(services.db, services.locks, new_ref_id(), [fid], 100)
            outcomes.append("reserved")
        except FlightFull as exc:
            assert exc.status == 409 and exc.to_problem()["type"].endswith("flight-full")
            assert exc.to_problem()["flight_id"] == fid and fid in exc.detail
            outcomes.append("full")

    threads = [threading.Thread(target=book) for _ in range(30)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(outcomes).count("reserved") == 10 and outcomes.count("full") == 20
    assert space(services, fid) == (1000, 1000, 0)
    assert len(holders(services, fid)) == 10


def test_the_write_alone_holds_capacity_without_the_lock(services):
    """A lock that expired midway: the conditional update still refuses."""
    fid = new_flight(services, 150)
    assert reservations._take(services.db, fid, [(new_ref_id(), reservations.Space(100_000))])
    assert not reservations._take(services.db, fid, [(new_ref_id(), reservations.Space(100_000))])
    assert space(services, fid) == (150, 100, 50)


def test_a_group_on_one_flight_takes_its_space_in_one_update_or_one_by_one(services):
    fid = new_flight(services, 1000)

    def group(weight_kg):
        return [reservations.Wanted(new_ref_id(), [fid], weight_kg) for _ in range(3)]

    first = group(300)
    assert reservations.reserve_many(services.db, services.locks, first) == [None] * 3
    late = group(60)  # 100 kg left: not all fit
    refused = reservations.reserve_many(services.db, services.locks, late)
    assert refused[0] is None and all(isinstance(r, FlightFull) for r in refused[1:])
    assert space(services, fid) == (1000, 960, 40)
    assert holders(services, fid) == {w.ref_id: w.weight_kg * 1000 for w in first + late[:1]}
    assert not services.db.flights.find_one({"_id": fid}).get("pending")


def test_space_taken_by_a_delivery_that_died_before_recording_it_is_not_taken_again(services):
    fid = new_flight(services, 1000)
    ref_id = new_ref_id()
    assert reservations._take(
        services.db, fid, [(ref_id, reservations.Space(400_000))]
    )  # then the worker died
    reservations.reserve(services.db, services.locks, ref_id, [fid], 400)  # the redelivery
    assert space(services, fid) == (1000, 400, 600) and holders(services, fid) == {ref_id: 400_000}
    assert not services.db.flights.find_one({"_id": fid}).get("pending")


def test_a_release_that_died_midway_gives_back_once(services):
    fid = new_flight(services, 1000)
    ref_id = new_ref_id()
    reservations.reserve(services.db, services.locks, ref_id, [fid], 400)
    mark = f"pending.{ref_id}"
    services.db.flights.update_one(  # the release's first update, then the worker died
        {"_id": fid},
        {"$inc": {"available_g": 400_000, "booked_g": -400_000}, "$set": {mark: -400_000}},
    )
    booking = {"ref_id": ref_id, "flight_ids": [fid], "weight_kg": 400, "status": CANCELLED}
    reservations.settle(services.db, services.locks, booking)  # the redelivery
    reservations.settle(services.db, services.locks, booking)
    assert space(services, fid) == (1000, 0, 1000) and holders(services, fid) == {}
    assert not services.db.flights.find_one({"_id": fid}).get("pending")


def test_a_reservation_is_made_once_per_booking(services):
    fid = new_flight(services, 1000)
    ref_id = new_ref_id()
    for _ in range(3):  # redeliveries
        reservations.reserve(services.db, services.locks, ref_id, [fid], 125.5)
    assert space(services, fid) == (1000, 125.5, 874.5)
    assert holders(services, fid) == {ref_id: 125_500}


def test_two_legs_with_the_second_full_leave_the_first_untouched(services):
    first = new_flight(services, 1000, hour=6)
    second = new_flight(services, 50, origin="RSB", destination="RSC", hour=12)
    with pytest.raises(FlightFull) as refused:
        reservations.reserve(services.db, services.locks, new_ref_id(), [first, second], 100)
    assert refused.value.extra["flight_id"] == second
    assert space(services, first) == (1000, 0, 1000) and holders(services, first) == {}
    assert space(services, second) == (50, 0, 50)


@pytest.mark.slow(reason="crossing bookings racing for their legs")
def test_legs_are_locked_in_one_order_so_crossing_bookings_cannot_deadlock(services):
    """Two bookings naming the same legs in opposite orders, many times over."""
    a, b = new_flight(services, 10_000, hour=6), new_flight(services, 10_000, hour=7)
    locks = LockManager(services.redis, services.settings)  # real waits, the spec's backoff
    errors = []

    def book(legs):
        try:
            for _ in range(20):
                reservations.reserve(services.db, locks, new_ref_id(), legs, 10)
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=book, args=(legs,)) for legs in ([a, b], [b, a])]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == [] and not any(t.is_alive() for t in threads)
    assert space(services, a)[1] == space(services, b)[1] == 400


def test_a_release_happens_once(services):
    fid = new_flight(services, 1000)
    ref_id = new_ref_id()
    reservations.reserve(services.db, services.locks, ref_id, [fid], 300)
    booking = {"ref_id": ref_id, "flight_ids": [fid], "weight_kg": 300, "status": CANCELLED}
    for _ in range(3):
        reservations.settle(services.db, services.locks, booking)
    assert space(services, fid) == (1000, 0, 1000) and holders(services, fid) == {}


def test_delivered_bookings_keep_their_space(services):
    fid = new_flight(services, 1000)
    ref_id = new_ref_id()
    reservations.reserve(services.db, services.locks, ref_id, [fid], 300)
    booking = {"ref_id": ref_id, "flight_ids": [fid], "weight_kg": 300, "status": DELIVERED}
    reservations.settle(services.db, services.locks, booking)
    assert space(services, fid) == (1000, 300, 700)


def _create_item(fid, weight_kg, **request):
    return {
        "job_id": new_job_id(),
        "ref_id": new_ref_id(),
        "request": {
            "origin": "RSA",
            "destination": "RSB",
            "pieces": 1,
            "weight_kg": weight_kg,
            "flight_ids": [fid],
            **request,
        },
        "customer_id": None,
    }


def _create_bookings(services, items):
    return group_commit.create_bookings(
        services.db,
        services.locks,
        items,
        now=utcnow(),
        min_connection_minutes=services.settings.MIN_CONNECTION_MINUTES,
    )


def test_a_group_of_creates_reserves_each_booking_and_refuses_what_does_not_fit(services):
    fid = new_flight(services, 250)
    items = [_create_item(fid, 100) for _ in range(3)]
    first, second, third = _create_bookings(services, items)
    assert first["ref_id"] == items[0]["ref_id"] and second["ref_id"] == items[1]["ref_id"]
    assert isinstance(third, FlightFull)
    assert services.db.bookings.find_one({"ref_id": items[2]["ref_id"]}) is None
    again = _create_bookings(services, items)  # the group redelivered
    assert [getattr(o, "get", lambda _: None)("ref_id") for o in again[:2]] == [
        items[0]["ref_id"],
        items[1]["ref_id"],
    ]
    assert space(services, fid) == (250, 200, 50)


def test_a_redelivered_create_of_a_booking_cancelled_meanwhile_reserves_nothing(services):
    """Its first delivery stored it and died before ending the job; the booking
    was cancelled (its space given back) before the redelivery."""
    fid = new_flight(services, 1000)
    item = _create_item(fid, 100)
    (booking,) = _create_bookings(services, [item])
    cancel = {
        "job_id": new_job_id(),
        "ref_id": booking["ref_id"],
        "target": CANCELLED,
        "request": {},
        "owner": None,
    }
    group_commit.transition_bookings(
        services.db, services.locks, services.redis, [cancel], clock=utcnow
    )
    assert space(services, fid) == (1000, 0, 1000)
    _create_bookings(services, [item])
    assert space(services, fid) == (1000, 0, 1000)


def test_a_cancel_gives_the_space_back_once_under_redelivery(services):
    fid = new_flight(services, 1000)
    (booking,) = _create_bookings(services, [_create_item(fid, 400)])
    assert space(services, fid) == (1000, 400, 600)
    cancel = {
        "job_id": new_job_id(),
        "ref_id": booking["ref_id"],
        "target": CANCELLED,
        "request": {"reason": "customer"},
        "owner": None,
    }
    for _ in range(3):  # the group path, redelivered twice
        (moved,) = group_commit.transition_bookings(
            services.db, services.locks, services.redis, [cancel], clock=utcnow
        )
        assert moved["status"] == CANCELLED
    # and the one-at-a-time path, redelivered
    moved_booking(services, booking["ref_id"], CANCELLED, job_id=cancel["job_id"])
    assert space(services, fid) == (1000, 0, 1000) and holders(services, fid) == {}


def _flight_item(fid, capacity_kg):
    number, day = fid.split("-")
    departure = datetime.strptime(day, "%Y%m%d").replace(tzinfo=UTC) + timedelta(hours=8)
    return {
        "flight_number": number,
        "airline": "Reserve Air",
        "origin": "RSA",
        "destination": "RSB",
        "departure_ts": departure.isoformat(),
        "arrival_ts": (departure + timedelta(hours=2)).isoformat(),
        "capacity_kg": capacity_kg,
    }


def _import(services, items, locks=None):
    return store_flights(services, items, chunk_size=10, locks=locks)


def test_a_reimport_below_what_is_booked_fails_that_item_and_keeps_the_flight(services):
    fid, other = new_flight(services, 1000), new_flight(services, 1000)
    reservations.reserve(services.db, services.locks, new_ref_id(), [fid], 600)
    before = services.db.flights.find_one({"_id": fid})
    result = _import(services, [_flight_item(other, 2000), _flight_item(fid, 500)])
    assert result["succeeded"] == 1 and result["failed"] == 1
    (error,) = result["errors"]
    assert error["index"] == 1 and error["problem"]["status"] == 409
    assert error["problem"]["type"].endswith("capacity-below-booked")
    assert services.db.flights.find_one({"_id": fid}) == before
    assert space(services, other) == (2000, 0, 2000)


def test_a_reimport_keeps_what_is_booked_and_moves_what_is_available(services):
    fid = new_flight(services, 1000)
    ref_id = new_ref_id()
    reservations.reserve(services.db, services.locks, ref_id, [fid], 600)
    assert _import(services, [_flight_item(fid, 800)])["failed"] == 0
    assert space(services, fid) == (800, 600, 200) and holders(services, fid) == {ref_id: 600_000}


def test_a_reimport_waits_for_the_flight_lock(services):
    fid = new_flight(services, 1000)
    held = services.locks.acquire(flight_lock_key(fid), 15)
    backing_off = threading.Event()

    def sleep(seconds):  # the spec's backoff, observed
        backing_off.set()
        time.sleep(seconds)

    locks = LockManager(services.redis, services.settings, sleep=sleep)
    thread = threading.Thread(target=_import, args=(services, [_flight_item(fid, 1200)], locks))
    thread.start()
    try:
        assert backing_off.wait(10)  # it found the lock taken and waits
        assert space(services, fid)[0] == 1000
    finally:
        services.locks.release(held)
    thread.join(30)
    assert space(services, fid)[0] == 1200


def test_flights_stored_before_capacities_get_the_default(services):
    fid = new_flight(services, 1000)
    services.db.flights.update_one(
        {"_id": fid},
        {"$unset": {"capacity_g": "", "booked_g": "", "available_g": ""}},
    )
    services.db.migrations.delete_one({"_id": flights.CAPACITY_MIGRATION})
    assert flights.give_capacity(services.db, 20_000) >= 1
    assert space(services, fid) == (20_000, 0, 20_000)
    assert flights.give_capacity(services.db, 20_000) == 0  # once per database
    reservations.reserve(services.db, services.locks, new_ref_id(), [fid], 5)
    assert space(services, fid) == (20_000, 5, 19_995)


def test_a_capacity_below_booked_names_the_flight():
    exc = CapacityBelowBooked("x", flight_id="F-1")
    assert exc.status == 409 and exc.to_problem()["flight_id"] == "F-1"
