"""Cargo space by volume (core.reservations, core.flights, core.ledger): a booking
with dimensions takes its volume and its weight together, all legs or none; a
flight full by either measure refuses it, naming the measure; a cancel gives
both back once; the ledger balances both; old flights get a volume once."""

import threading

import pytest

from core import flights, group_commit, ledger, reservations
from core.clock import utcnow
from core.errors import FlightFull
from core.ids import new_job_id, new_ref_id
from core.lifecycle import CANCELLED
from tests.core.test_reservations import (
    _create_bookings,
    _create_item,
    _flight_item,
    _import,
    new_flight,
)

CUBE = [{"count": 1, "length_cm": 100, "width_cm": 100, "height_cm": 100}]  # 1 m3


def volume(services, fid):
    view = flights.get_flight(services.db, fid)
    return view["capacity_m3"], view["booked_m3"], view["available_m3"]


def weight(services, fid):
    view = flights.get_flight(services.db, fid)
    return view["capacity_kg"], view["booked_kg"], view["available_kg"]


def held(services, fid):
    return reservations.reserved_space(services.db, fid)


@pytest.mark.slow(reason="many threads racing for one flight's volume")
def test_concurrent_reservations_never_go_above_the_volume(services):
    """Weight to spare for all 30; the volume holds 7 of the 1.5 m3 bookings."""
    fid = new_flight(services, 100_000, capacity_m3=11)
    outcomes = []

    def book():
        try:
            reservations.reserve(
                services.db, services.locks, new_ref_id(), [fid], 10, volume_cm3=1_500_000
            )
            outcomes.append("reserved")
        except FlightFull as exc:
            assert exc.to_problem()["short_of"] == "volume" and fid in exc.detail
            outcomes.append("full")

    threads = [threading.Thread(target=book) for _ in range(30)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert outcomes.count("reserved") == 7 and outcomes.count("full") == 23  # floor(11 / 1.5)
    assert volume(services, fid) == (11, 10.5, 0.5)
    assert weight(services, fid) == (100_000, 70, 99_930)
    assert len(held(services, fid)) == 7


def test_volume_fits_and_weight_does_not(services):
    fid = new_flight(services, 500, capacity_m3=50)
    with pytest.raises(FlightFull) as refused:
        reservations.reserve(services.db, services.locks, new_ref_id(), [fid], 600, None, 10**6)
    problem = refused.value.to_problem()
    assert problem["status"] == 409 and problem["type"].endswith("flight-full")
    assert problem["flight_id"] == fid and problem["short_of"] == "weight"
    assert "500 kg" in problem["detail"]
    assert volume(services, fid) == (50, 0, 50) and weight(services, fid) == (500, 0, 500)


def test_weight_fits_and_volume_does_not(services):
    fid = new_flight(services, 5000, capacity_m3=2)
    with pytest.raises(FlightFull) as refused:
        reservations.reserve(services.db, services.locks, new_ref_id(), [fid], 100, None, 2_000_001)
    problem = refused.value.to_problem()
    assert problem["flight_id"] == fid and problem["short_of"] == "volume"
    assert "2 m3" in problem["detail"]
    assert volume(services, fid) == (2, 0, 2) and weight(services, fid) == (5000, 0, 5000)


def test_a_booking_without_dimensions_reserves_weight_only(services):
    fid = new_flight(services, 1000, capacity_m3=1)
    ref_id = new_ref_id()
    reservations.reserve(services.db, services.locks, ref_id, [fid], 400)
    assert volume(services, fid) == (1, 0, 1) and weight(services, fid) == (1000, 400, 600)
    assert held(services, fid) == {ref_id: reservations.Space(400_000, 0)}


def test_the_volume_is_derived_from_the_weight_at_the_standard_density(services):
    fid = new_flight(services, 1000)  # no capacity_m3
    assert volume(services, fid) == (6, 0, 6)  # 1,000 kg x 6,000 cm3 per kg


def test_a_second_leg_short_of_volume_leaves_the_first_untouched(services):
    first = new_flight(services, 1000, capacity_m3=10, hour=6)
    second = new_flight(services, 1000, capacity_m3=0.5, origin="RSB", destination="RSC", hour=12)
    with pytest.raises(FlightFull) as refused:
        reservations.reserve(
            services.db, services.locks, new_ref_id(), [first, second], 10, None, 10**6
        )
    assert refused.value.extra == {"flight_id": second, "short_of": "volume"}
    assert volume(services, first) == (10, 0, 10) and weight(services, first) == (1000, 0, 1000)
    assert (
        held(services, first) == {} and not services.db.flights.find_one({"_id": first})["pending"]
    )


def test_a_group_takes_both_measures_and_refuses_by_either(services):
    """3 m3 and 1,000 kg: two cubes of 100 kg fit; a third cube does not (volume);
    a dense 900 kg crate without dimensions does not (weight)."""
    fid = new_flight(services, 1000, capacity_m3=3)
    cubes = [_create_item(fid, 100, pieces=1, dimensions=CUBE) for _ in range(2)]
    first = _create_bookings(services, cubes)
    assert all(isinstance(b, dict) for b in first)
    third = _create_item(fid, 100, pieces=1, dimensions=[{**CUBE[0], "height_cm": 101}])
    crate = _create_item(fid, 900)
    refused = _create_bookings(services, [third, crate])
    assert [r.extra["short_of"] for r in refused] == ["volume", "weight"]
    assert volume(services, fid) == (3, 2, 1) and weight(services, fid) == (1000, 200, 800)
    assert held(services, fid) == {
        b["ref_id"]: reservations.Space(100_000, 1_000_000) for b in first
    }
    assert not services.db.flights.find_one({"_id": fid}).get("pending_cm3")


def _cancel(services, ref_id, job_id):
    item = {"job_id": job_id, "ref_id": ref_id, "target": CANCELLED, "request": {}, "owner": None}
    (moved,) = group_commit.transition_bookings(
        services.db, services.locks, services.redis, [item], clock=utcnow
    )
    return moved


def test_a_cancel_gives_back_both_measures_once_under_redelivery(services):
    fid = new_flight(services, 1000, capacity_m3=10)
    (booking,) = _create_bookings(services, [_create_item(fid, 250, pieces=1, dimensions=CUBE)])
    (other,) = _create_bookings(services, [_create_item(fid, 50, pieces=1, dimensions=CUBE)])
    assert booking["volume_cm3"] == 1_000_000
    assert volume(services, fid) == (10, 2, 8) and weight(services, fid) == (1000, 300, 700)
    job_id = new_job_id()
    for _ in range(3):  # redelivered twice
        assert _cancel(services, booking["ref_id"], job_id)["status"] == CANCELLED
    assert volume(services, fid) == (10, 1, 9) and weight(services, fid) == (1000, 50, 950)
    assert held(services, fid) == {other["ref_id"]: reservations.Space(50_000, 1_000_000)}


def test_a_release_that_died_midway_gives_back_both_measures_once(services):
    fid = new_flight(services, 1000, capacity_m3=10)
    ref_id = new_ref_id()
    reservations.reserve(services.db, services.locks, ref_id, [fid], 400, None, 3_000_000)
    services.db.flights.update_one(  # the release's first update, then the worker died
        {"_id": fid},
        {
            "$inc": {
                "available_g": 400_000,
                "booked_g": -400_000,
                "available_cm3": 3_000_000,
                "booked_cm3": -3_000_000,
            },
            "$set": {f"pending.{ref_id}": -400_000, f"pending_cm3.{ref_id}": -3_000_000},
        },
    )
    (mid,) = ledger.audit(services.db, [fid])
    assert mid.drift_cm3 == 0 and mid.under_way_cm3 == -3_000_000  # a give-back under way
    booking = {
        "ref_id": ref_id,
        "flight_ids": [fid],
        "weight_kg": 400,
        "volume_cm3": 3_000_000,
        "status": CANCELLED,
    }
    for _ in range(2):  # the redelivery, twice
        reservations.settle(services.db, services.locks, booking)
    assert volume(services, fid) == (10, 0, 10) and weight(services, fid) == (1000, 0, 1000)
    flight = services.db.flights.find_one({"_id": fid})
    assert not flight.get("pending") and not flight.get("pending_cm3")


def test_space_taken_by_a_delivery_that_died_before_recording_it_is_not_taken_again(services):
    fid = new_flight(services, 1000, capacity_m3=10)
    ref_id = new_ref_id()
    space = reservations.Space(400_000, 4_000_000)
    assert reservations._take(services.db, fid, [(ref_id, space)])  # then the worker died
    (mid,) = ledger.audit(services.db, [fid])
    assert mid.drift_cm3 == 0 and mid.under_way_cm3 == 4_000_000  # a take under way
    reservations.reserve(services.db, services.locks, ref_id, [fid], 400, None, 4_000_000)
    assert volume(services, fid) == (10, 4, 6) and held(services, fid) == {ref_id: space}


def test_a_reimport_below_the_booked_volume_is_refused_naming_the_measure(services):
    fid = new_flight(services, 1000, capacity_m3=10)
    reservations.reserve(services.db, services.locks, new_ref_id(), [fid], 100, None, 6_000_000)
    before = services.db.flights.find_one({"_id": fid})
    result = _import(services, [{**_flight_item(fid, 1000), "capacity_m3": 5.5}])
    (error,) = result["errors"]
    assert error["problem"]["type"].endswith("capacity-below-booked")
    assert error["problem"]["short_of"] == "volume" and error["problem"]["flight_id"] == fid
    assert services.db.flights.find_one({"_id": fid}) == before
    assert _import(services, [{**_flight_item(fid, 1000), "capacity_m3": 6}])["failed"] == 0
    assert volume(services, fid) == (6, 6, 0)


def test_a_capacity_below_booked_weight_names_the_weight(services):
    fid = new_flight(services, 1000, capacity_m3=10)
    reservations.reserve(services.db, services.locks, new_ref_id(), [fid], 600)
    (error,) = _import(services, [_flight_item(fid, 500)])["errors"]
    assert error["problem"]["short_of"] == "weight"


def test_the_ledger_balances_volume_and_finds_and_repairs_its_drift(services):
    fid = new_flight(services, 1000, capacity_m3=10)
    _create_bookings(services, [_create_item(fid, 100, pieces=1, dimensions=CUBE)])
    (found,) = ledger.audit(services.db, [fid])
    assert found.balanced and (found.booked_cm3, found.reserved_cm3) == (10**6, 10**6)
    services.db.flights.update_one({"_id": fid}, {"$inc": {"booked_cm3": 250_000}})  # drift
    (found,) = ledger.audit(services.db, [fid])
    assert not found.balanced and found.drift_g == 0 and found.drift_cm3 == 250_000
    assert found.summary()["drift_m3"] == 0.25
    (repaired,) = ledger.repair(services.db, services.locks, [fid])
    assert any("m3" in action for action in repaired["actions"])
    (after,) = ledger.audit(services.db, [fid])
    assert after.balanced and volume(services, fid) == (10, 1, 9)


def test_flights_stored_before_volumes_get_the_derived_volume_once(services):
    fid = new_flight(services, 1000)
    ref_id = new_ref_id()
    reservations.reserve(services.db, services.locks, ref_id, [fid], 250)
    services.db.flights.update_one(
        {"_id": fid}, {"$unset": {"capacity_cm3": "", "booked_cm3": "", "available_cm3": ""}}
    )
    assert volume(services, fid) == (None, None, None)
    services.db.migrations.delete_one({"_id": flights.VOLUME_MIGRATION})
    assert flights.give_volume(services.db) >= 1
    assert volume(services, fid) == (6, 0, 6) and weight(services, fid) == (1000, 250, 750)
    assert flights.give_volume(services.db) == 0  # once per database
    reservations.reserve(services.db, services.locks, new_ref_id(), [fid], 5, None, 10**6)
    assert volume(services, fid) == (6, 1, 5)
    (found,) = ledger.audit(services.db, [fid])
    assert found.drift_g == found.drift_cm3 == 0
