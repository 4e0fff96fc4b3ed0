import time
from datetime import datetime, timedelta

import pytest

from core import bookings, cache_keys, transitions
from core.clock import utcnow
from core.errors import NotFound, NotReady
from core.ids import new_job_id, new_ref_id
from core.lifecycle import InvalidTransition, MilestoneOutOfOrder
from core.locks import booking_lock_key
from tests.conftest import moved_booking, stored_booking

DATA = {"origin": "DEL", "destination": "BLR", "pieces": 5, "weight_kg": 125.5}


def new_booking(services):
    return stored_booking(services, **DATA)


def move(services, ref_id, target, job_id=None, **data):
    return moved_booking(services, ref_id, target, job_id=job_id, **data)


def events(services, ref_id):
    return [
        e["type"] for e in services.db.booking_events.find({"booking_id": ref_id}).sort("at_ts", 1)
    ]


def test_lifecycle_records_each_step(services):
    ref_id = new_booking(services)
    move(services, ref_id, "DEPARTED", location="DEL Airport", flight_number="RG001")
    move(services, ref_id, "ARRIVED", location="BLR Airport")
    final = move(services, ref_id, "DELIVERED", notes="Signed by J. Doe")
    assert final["status"] == "DELIVERED" and final["version"] == 4
    assert events(services, ref_id) == [
        "BOOKING_CREATED",
        "STATUS_DEPARTED",
        "STATUS_ARRIVED",
        "STATUS_DELIVERED",
    ]
    details = bookings.get_booking_details(services.db, ref_id)
    assert details["events"][1]["flight_number"] == "RG001"
    assert details["events"][3]["notes"] == "Signed by J. Doe"
    assert not services.redis.exists(booking_lock_key(ref_id))


@pytest.mark.parametrize(
    ("path", "target"),
    [
        ([], "ARRIVED"),
        ([], "DELIVERED"),
        ([], "BOOKED"),
        (["DEPARTED"], "DEPARTED"),
        (["DEPARTED"], "DELIVERED"),
        (["DEPARTED", "ARRIVED"], "CANCELLED"),
        (["DEPARTED", "ARRIVED"], "ARRIVED"),
        (["DEPARTED", "ARRIVED", "DELIVERED"], "CANCELLED"),
        (["CANCELLED"], "DEPARTED"),
        (["CANCELLED"], "CANCELLED"),
    ],
)
def test_the_worker_refuses_invalid_transitions_under_the_lock(services, path, target):
    ref_id = new_booking(services)
    for step in path:
        move(services, ref_id, step)
    with pytest.raises(
        InvalidTransition, match=f"Cannot transition from {(path or ['BOOKED'])[-1]} to {target}"
    ):
        move(services, ref_id, target)
    assert len(events(services, ref_id)) == 1 + len(path)


def test_the_same_job_twice_records_one_transition(services):
    ref_id, job_id = new_booking(services), new_job_id()
    first = move(services, ref_id, "DEPARTED", job_id)
    again = move(services, ref_id, "DEPARTED", job_id)
    assert first["version"] == again["version"] == 2
    assert events(services, ref_id).count("STATUS_DEPARTED") == 1


def test_a_redelivery_writes_the_event_a_dead_worker_did_not(services):
    ref_id, job_id = new_booking(services), new_job_id()
    move(services, ref_id, "DEPARTED", job_id, location="DEL")
    # As if the worker died after the booking update, before the event insert:
    services.db.booking_events.delete_one({"_id": f"{job_id}:STATUS_DEPARTED"})
    move(services, ref_id, "DEPARTED", job_id, location="DEL")
    assert events(services, ref_id) == ["BOOKING_CREATED", "STATUS_DEPARTED"]
    assert services.db.bookings.find_one({"ref_id": ref_id})["version"] == 2


def test_a_holder_whose_lock_expired_cannot_overwrite(services):
    """Fencing: correctness does not rest on lock timing."""
    ref_id = new_booking(services)
    stalled = services.locks.acquire(booking_lock_key(ref_id), ttl_s=0.2)
    seen = transitions.read_booking(services.db, ref_id)  # BOOKED, version 1
    time.sleep(0.35)  # the stalled holder's lock expires
    move(services, ref_id, "CANCELLED", reason="customer")  # takes the lock, commits
    with pytest.raises(transitions.StaleRead):
        transitions.apply_transition(
            services.db, seen, "DEPARTED", job_id=new_job_id(), data={}, now=utcnow()
        )
    services.locks.release(stalled)  # releases nothing of the new holder's
    booking = services.db.bookings.find_one({"ref_id": ref_id})
    assert (booking["status"], booking["version"]) == ("CANCELLED", 2)
    assert events(services, ref_id) == ["BOOKING_CREATED", "STATUS_CANCELLED"]


def test_a_stale_write_is_decided_again_on_the_new_state(services, monkeypatch):
    ref_id = new_booking(services)
    real_read = transitions.read_booking
    reads = []

    def read_then_race(db, ref):
        booking = real_read(db, ref)
        if not reads:  # someone without the lock commits right after our first read
            services.db.bookings.update_one(
                {"ref_id": ref}, {"$set": {"status": "CANCELLED"}, "$inc": {"version": 1}}
            )
        reads.append(booking)
        return booking

    monkeypatch.setattr(transitions, "read_booking", read_then_race)
    with pytest.raises(InvalidTransition, match="Cannot transition from CANCELLED to DEPARTED"):
        move(services, ref_id, "DEPARTED")
    assert len(reads) == 2


def _pending_create(settings, ref_id):
    from core import jobs

    job_id = new_job_id()
    return jobs.new_job(
        settings,
        job_id=job_id,
        job_type="booking.create",
        payload={"ref_id": ref_id},
        now=utcnow(),
        links={},
        ref_id=ref_id,
    )


def test_unknown_booking_is_not_found_and_pending_one_is_not_ready(services, settings):
    from core import jobs, queued_jobs

    with pytest.raises(NotFound):
        move(services, new_ref_id(), "DEPARTED")
    # Queued the thin way: its record and mark in Redis, nothing in MongoDB.
    queued = queued_jobs.job_record(_pending_create(settings, new_ref_id()))
    queued_jobs.hold_queued(services.redis, queued, ttl_s=60)
    with pytest.raises(NotReady):
        move(services, queued["ref_id"], "DEPARTED")
    queued_jobs.release_queued(services.redis, [queued])  # its create ended (and failed)
    with pytest.raises(NotFound):
        move(services, queued["ref_id"], "DEPARTED")
    # Recorded in MongoDB (an Idempotency-Key's, or accepted while Redis was out).
    recorded = _pending_create(settings, new_ref_id())
    jobs.record_job(services.db, settings, recorded)
    with pytest.raises(NotReady):
        move(services, recorded["ref_id"], "DEPARTED")


def test_a_transition_is_timed_after_the_change_it_follows(services):
    """A worker whose clock runs behind (or whose job waited for the create)
    still sorts its event after the booking's last one."""
    ref_id = new_booking(services)
    created_at = services.db.bookings.find_one({"ref_id": ref_id})["updated_at"]
    behind = created_at - timedelta(seconds=5)
    booking = moved_booking(services, ref_id, "DEPARTED", clock=lambda: behind)
    assert booking["updated_at"] > created_at
    assert events(services, ref_id) == ["BOOKING_CREATED", "STATUS_DEPARTED"]


# -- status codes and milestones -------------------------------------------------------


def record(services, ref_id, code, job_id=None, **data):
    """Milestone `code` recorded as a milestone job records it (its request in `data`)."""
    return transitions.transition_booking(
        services.db,
        services.locks,
        ref_id=ref_id,
        target=None,
        milestone=code,
        job_id=job_id or new_job_id(),
        data={"code": code, **data},
        clock=utcnow,
        queued_records=services.redis,
    )


def timeline(services, ref_id):
    return bookings.get_booking_details(services.db, ref_id)["events"]


def test_every_event_carries_its_code_and_a_cancellation_none(services):
    delivered, cancelled = new_booking(services), new_booking(services)
    for target in ("DEPARTED", "ARRIVED", "DELIVERED"):
        move(services, delivered, target)
    move(services, cancelled, "CANCELLED", reason="customer")
    assert [e["code"] for e in timeline(services, delivered)] == ["BKD", "DEP", "ARR", "DLV"]
    assert [e["code"] for e in timeline(services, cancelled)] == ["BKD", None]
    stored = services.db.booking_events.find({"booking_id": cancelled}).sort("at_ts", 1)
    assert [("code" in e, e["code"]) for e in stored] == [(True, "BKD"), (True, None)]


def test_events_stored_before_codes_existed_show_their_code(services):
    cache = services.cache
    ref_id = new_booking(services)
    move(services, ref_id, "DEPARTED")
    services.db.booking_events.update_many({"booking_id": ref_id}, {"$unset": {"code": ""}})
    assert [e["code"] for e in timeline(services, ref_id)] == ["BKD", "DEP"]
    # And from a cache entry written before codes existed.
    details = bookings.get_booking_details(services.db, ref_id)
    for event in details["events"]:
        del event["code"]
    key = cache_keys.booking_details_key(ref_id)
    cache.set_versioned(key, details["version"], details, 60)
    read = bookings.read_booking_details(services.db, cache, ref_id, 60)
    assert [e["code"] for e in read["events"]] == ["BKD", "DEP"]


def test_a_milestone_keeps_the_status_moves_the_version_and_joins_the_timeline(services):
    ref_id = new_booking(services)
    happened = "2026-11-28T03:00:00.000Z"
    booking = record(services, ref_id, "RCS", location="DEL", at=happened)
    assert (booking["status"], booking["version"]) == ("BOOKED", 2)
    record(services, ref_id, "MAN", location="DEL")  # no `at`: when it is recorded
    move(services, ref_id, "DEPARTED")
    move(services, ref_id, "ARRIVED")
    record(services, ref_id, "RCF", location="BLR")
    final = record(services, ref_id, "NFD", location="BLR")
    assert (final["status"], final["version"]) == ("ARRIVED", 7)
    events = timeline(services, ref_id)
    assert [e["code"] for e in events] == ["BKD", "RCS", "MAN", "DEP", "ARR", "RCF", "NFD"]
    assert [e["status"] for e in events[:3]] == ["BOOKED"] * 3
    rcs, man = events[1], events[2]
    assert (rcs["type"], rcs["location"]) == ("MILESTONE_RCS", "DEL")
    assert rcs["occurred_at"] == datetime.fromisoformat(happened)
    assert man["occurred_at"] == man["at_ts"]
    assert all(e["occurred_at"] is None for e in events if e["code"] in ("BKD", "DEP", "ARR"))


@pytest.mark.parametrize(
    ("path", "code"),
    [
        (["DEPARTED"], "RCS"),
        (["DEPARTED"], "RCF"),
        ([], "NFD"),
        (["DEPARTED", "ARRIVED"], "MAN"),
        (["DEPARTED", "ARRIVED", "DELIVERED"], "NFD"),
        (["CANCELLED"], "MAN"),
    ],
)
def test_a_milestone_out_of_order_is_refused_under_the_lock(services, path, code):
    """The door saw an earlier status (or a race moved it since): the worker decides again."""
    ref_id = new_booking(services)
    for step in path:
        move(services, ref_id, step)
    with pytest.raises(MilestoneOutOfOrder):
        record(services, ref_id, code, location="DEL")
    assert len(events(services, ref_id)) == 1 + len(path)
    assert services.db.bookings.find_one({"ref_id": ref_id})["version"] == 1 + len(path)


def test_a_redelivered_milestone_is_recorded_once_with_its_event(services):
    ref_id, job_id = new_booking(services), new_job_id()
    record(services, ref_id, "RCS", job_id, location="DEL")
    # As if the worker died after the booking update, before the event insert:
    services.db.booking_events.delete_one({"_id": f"{job_id}:MILESTONE_RCS"})
    again = record(services, ref_id, "RCS", job_id, location="DEL")
    assert again["version"] == 2
    assert events(services, ref_id) == ["BOOKING_CREATED", "MILESTONE_RCS"]
    assert timeline(services, ref_id)[1]["code"] == "RCS"
