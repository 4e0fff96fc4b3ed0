"""The cargo-space ledger (core.ledger): an audit that finds every way a
flight's books can be wrong, and a repair that sets each right without
touching a create still under way."""

from core import jobs, ledger, queued_jobs, reservations
from core.clock import utcnow
from core.ids import new_job_id, new_ref_id
from core.lifecycle import CANCELLED
from tests.conftest import recorded_job
from tests.core.test_reservations import _create_bookings, _create_item, new_flight


def book(services, fid, weight_kg=100):
    (booking,) = _create_bookings(services, [_create_item(fid, weight_kg)])
    return booking


def books_of(services, fid):
    (found,) = ledger.audit(services.db, [fid])
    return found


def _ended_create(services, ref_id, job_id=None):
    """A create job of booking `ref_id` that ended failed, as MongoDB keeps it."""
    job = jobs.new_job(
        services.settings,
        job_id=job_id or new_job_id(),
        job_type=queued_jobs.CREATE_JOB,
        payload={"ref_id": ref_id},
        now=utcnow(),
        links={},
        ref_id=ref_id,
    )
    jobs.record_job(services.db, services.settings, job)
    jobs.finish_job(services.db, job["_id"], utcnow(), error={"status": 503})


def test_bookings_made_and_cancelled_the_usual_way_balance(services):
    fid = new_flight(services, 1000)
    kept, cancelled = book(services, fid), book(services, fid)
    services.db.bookings.update_one(
        {"ref_id": cancelled["ref_id"]}, {"$set": {"status": CANCELLED}}
    )
    reservations.settle(services.db, services.locks, {**cancelled, "status": CANCELLED})
    found = books_of(services, fid)
    assert found.balanced and (found.booked_g, found.reserved_g) == (100_000, 100_000)
    everything = {f.flight_id: f for f in ledger.audit(services.db)}  # the whole database
    assert everything[fid] == found and kept["ref_id"] not in found.orphans


def test_drift_orphans_and_unreserved_bookings_are_found_and_repaired(services):
    fid = new_flight(services, 1000)
    booked = book(services, fid, 200)
    orphan = book(services, fid, 100)
    services.db.bookings.delete_one({"ref_id": orphan["ref_id"]})  # its create ended without it
    _ended_create(services, orphan["ref_id"], orphan["job_id"])
    lost = book(services, fid, 50)
    services.db.reservations.delete_one({"_id": reservations.reservation_id(fid, lost["ref_id"])})
    services.db.flights.update_one({"_id": fid}, {"$inc": {"booked_g": 7_000}})  # drift
    found = books_of(services, fid)
    assert found.orphans == [orphan["ref_id"]] and found.unreserved == [lost["ref_id"]]
    assert found.drift_g == 7_000 + 50_000 and not found.balanced

    (repaired,) = ledger.repair(services.db, services.locks, [fid])
    assert repaired["flight_id"] == fid and len(repaired["actions"]) == 3, repaired
    after = books_of(services, fid)
    assert after.balanced and after.booked_g == (200 + 50) * 1000
    assert set(reservations.flight_reservations(services.db, fid)) == {
        booked["ref_id"],
        lost["ref_id"],
    }
    assert services.db.flights.find_one({"_id": fid})["available_g"] == 750_000
    assert ledger.repair(services.db, services.locks, [fid]) == []  # nothing left to do


def test_space_reserved_by_a_create_still_under_way_is_left_alone(services, settings):
    fid = new_flight(services, 1000)
    job_id = recorded_job(settings, services, queued_jobs.CREATE_JOB, {"ref_id": "pending"})
    ref_id = new_ref_id()
    reservations.reserve(services.db, services.locks, ref_id, [fid], 100, job_id=job_id)
    found = books_of(services, fid)
    assert found.balanced and found.creating == [ref_id] and found.orphans == []
    assert ledger.repair(services.db, services.locks, [fid]) == []
    assert reservations.flight_reservations(services.db, fid) == {ref_id: 100_000}
    # Its job ends without storing the booking: now the space is an orphan's.
    jobs.finish_job(services.db, job_id, utcnow(), error={"status": 500})
    assert books_of(services, fid).orphans == [ref_id]
    ledger.repair(services.db, services.locks, [fid])
    assert books_of(services, fid).booked_g == 0


def test_marks_of_dead_workers_are_counted_and_settled(services):
    fid = new_flight(services, 1000)
    given_back = book(services, fid, 300)
    # A release that died after its first update: space free, reservation not yet deleted.
    services.db.flights.update_one(
        {"_id": fid},
        {
            "$inc": {"available_g": 300_000, "booked_g": -300_000},
            "$set": {f"pending.{given_back['ref_id']}": -300_000},
        },
    )
    services.db.bookings.update_one(
        {"ref_id": given_back["ref_id"]}, {"$set": {"status": CANCELLED}}
    )
    # Two takes that died before recording: one whose create then ended
    # failed, one whose create may still come back (its redelivery's to finish).
    abandoned, unfinished = new_ref_id(), new_ref_id()
    assert reservations._take(
        services.db,
        fid,
        [(abandoned, reservations.Space(40_000)), (unfinished, reservations.Space(5_000))],
    )
    _ended_create(services, abandoned)
    found = books_of(services, fid)
    assert found.drift_g == 0 and len(found.marked) == 3
    assert found.under_way_g == 40_000 + 5_000 - 300_000
    ledger.repair(services.db, services.locks, [fid])
    after = books_of(services, fid)
    assert after.balanced and after.marked == [unfinished] and after.booked_g == 5_000
    assert reservations.flight_reservations(services.db, fid) == {}
