"""Group commit (core.group_commit): many queued jobs decided and written
together, each with its own outcome, and a group delivered again having no
second effect."""

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from core import bookings, group_commit, jobs, queued_jobs, transitions
from core.clock import utcnow
from core.errors import Conflict, CustomerDisabled, NotFound, NotReady, Unprocessable
from core.ids import new_job_id, new_ref_id
from core.lifecycle import InvalidTransition, MilestoneOutOfOrder
from core.locks import booking_lock_key
from tests.conftest import stored_booking

DATA = {"origin": "DEL", "destination": "BLR", "pieces": 5, "weight_kg": 125.5}


# -- factories ---------------------------------------------------------------------------


def create_item(ref_id=None, customer_id=None, **request):
    """A queued create as the worker hands it to create_bookings."""
    return {
        "job_id": new_job_id(),
        "ref_id": ref_id or new_ref_id(),
        "request": {**DATA, **request},
        "customer_id": customer_id,
    }


def create_bookings(services, items, now=None):
    return group_commit.create_bookings(
        services.db,
        services.locks,
        items,
        now=now or utcnow(),
        min_connection_minutes=services.settings.MIN_CONNECTION_MINUTES,
    )


def new_booking(services, customer_id=None):
    return stored_booking(services, customer_id=customer_id, **DATA)


def transition_item(ref_id, target, owner=None, job_id=None, **request):
    """A queued transition as the worker hands it to transition_bookings."""
    return {
        "job_id": job_id or new_job_id(),
        "ref_id": ref_id,
        "target": target,
        "request": request,
        "owner": owner,
    }


def transition_bookings(services, items):
    return group_commit.transition_bookings(
        services.db, services.locks, services.redis, items, clock=utcnow
    )


def stored(services, ref_id):
    return services.db.bookings.find_one({"ref_id": ref_id})


def events(services, ref_id):
    return [
        e["type"] for e in services.db.booking_events.find({"booking_id": ref_id}).sort("at_ts", 1)
    ]


def to_bson_precision(moment):
    """A datetime as MongoDB gives it back: milliseconds."""
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


# -- create_bookings -----------------------------------------------------------------------


def create_job_of(settings, payload: dict, **fields) -> dict:
    """A new create job as the ingress makes one (not recorded anywhere yet)."""
    return jobs.new_job(
        settings,
        job_id=new_job_id(),
        job_type=queued_jobs.CREATE_JOB,
        payload=payload,
        now=utcnow(),
        links={},
        **fields,
    )


def test_create_bookings_makes_each_item_one_booking_and_one_event(services):
    items = [create_item(pieces=n + 1, customer_id=f"c{n}") for n in range(5)]
    outcomes = create_bookings(services, items)
    assert len(outcomes) == len(items)
    for item, outcome in zip(items, outcomes, strict=True):
        # Aligned: each outcome is its own item's booking.
        assert outcome["ref_id"] == item["ref_id"]
        assert outcome["pieces"] == item["request"]["pieces"]
        assert outcome["customer_id"] == item["customer_id"]
        assert (outcome["status"], outcome["version"]) == ("BOOKED", 1)
        assert services.db.bookings.count_documents({"ref_id": item["ref_id"]}) == 1
        assert stored(services, item["ref_id"])["job_id"] == item["job_id"]
        assert events(services, item["ref_id"]) == ["BOOKING_CREATED"]
        assert services.db.booking_events.find_one(
            {"_id": bookings.event_id(item["job_id"], "BOOKING_CREATED")}
        )


def test_an_unknown_flight_refuses_its_own_item_and_the_others_are_created(services):
    items = [
        create_item(),
        create_item(flight_ids=["ZZ0000-20340101"]),  # no such flight
        create_item(),
    ]
    first, refused, last = create_bookings(services, items)
    assert isinstance(refused, Unprocessable) and refused.status == 422
    assert "ZZ0000-20340101" in refused.detail
    assert stored(services, items[1]["ref_id"]) is None
    assert events(services, items[1]["ref_id"]) == []
    for item, outcome in ((items[0], first), (items[2], last)):
        assert outcome["ref_id"] == item["ref_id"]
        assert events(services, item["ref_id"]) == ["BOOKING_CREATED"]


def test_a_redelivered_group_creates_nothing_new_and_answers_the_stored_bookings(services):
    items = [create_item() for _ in range(4)]
    first_now = utcnow()
    create_bookings(services, items, now=first_now)
    # As if the first delivery died between its two inserts for one item:
    # its booking is stored, its event is not.
    services.db.booking_events.delete_one(
        {"_id": bookings.event_id(items[0]["job_id"], "BOOKING_CREATED")}
    )
    newcomer = create_item()  # redelivered in a group with a job never run before
    again = create_bookings(services, [*items, newcomer], now=first_now + timedelta(minutes=1))
    for item, outcome in zip(items, again, strict=False):
        assert outcome["ref_id"] == item["ref_id"]
        # The booking the first delivery stored, not a new one.
        assert outcome["created_at"] == to_bson_precision(first_now)
        assert services.db.bookings.count_documents({"ref_id": item["ref_id"]}) == 1
        assert events(services, item["ref_id"]) == ["BOOKING_CREATED"]
    assert again[-1]["ref_id"] == newcomer["ref_id"]
    assert again[-1]["created_at"] == first_now + timedelta(minutes=1)
    assert events(services, newcomer["ref_id"]) == ["BOOKING_CREATED"]


def test_a_ref_id_held_by_another_jobs_booking_is_a_conflict_for_that_item_only(services):
    (holder,) = create_bookings(services, [create_item()])
    clash = create_item(ref_id=holder["ref_id"], pieces=9)  # another job, same ref_id
    other = create_item()
    refused, created = create_bookings(services, [clash, other])
    assert isinstance(refused, Conflict) and refused.status == 409
    kept = stored(services, holder["ref_id"])
    assert (kept["job_id"], kept["pieces"]) == (holder["job_id"], holder["pieces"])
    assert services.db.booking_events.count_documents({"booking_id": holder["ref_id"]}) == 1
    assert created["ref_id"] == other["ref_id"]
    assert events(services, other["ref_id"]) == ["BOOKING_CREATED"]


# -- transition_bookings -------------------------------------------------------------------


def test_transition_bookings_moves_several_bookings_with_one_event_each(services):
    refs = [new_booking(services) for _ in range(4)]
    items = [transition_item(ref, "DEPARTED", location="DEL") for ref in refs]
    outcomes = transition_bookings(services, items)
    for ref, outcome in zip(refs, outcomes, strict=True):
        assert (outcome["ref_id"], outcome["status"], outcome["version"]) == (ref, "DEPARTED", 2)
        booking = stored(services, ref)
        assert (booking["status"], booking["version"]) == ("DEPARTED", 2)
        assert events(services, ref) == ["BOOKING_CREATED", "STATUS_DEPARTED"]
        event = services.db.booking_events.find_one({"booking_id": ref, "type": "STATUS_DEPARTED"})
        assert event["location"] == "DEL"
        assert not services.redis.exists(booking_lock_key(ref))


def test_two_transitions_of_one_booking_in_a_group_apply_in_order(services):
    ref = new_booking(services)
    departed, arrived = transition_bookings(
        services,
        [
            transition_item(ref, "DEPARTED", location="DEL"),
            transition_item(ref, "ARRIVED", location="BLR"),
        ],
    )
    assert (departed["status"], departed["version"]) == ("DEPARTED", 2)
    assert (arrived["status"], arrived["version"]) == ("ARRIVED", 3)
    booking = stored(services, ref)
    assert (booking["status"], booking["version"]) == ("ARRIVED", 3)
    assert events(services, ref) == ["BOOKING_CREATED", "STATUS_DEPARTED", "STATUS_ARRIVED"]


def test_an_invalid_transition_is_refused_for_its_item_only(services):
    booked, other = new_booking(services), new_booking(services)
    refused, moved = transition_bookings(
        services, [transition_item(booked, "DELIVERED"), transition_item(other, "DEPARTED")]
    )
    assert isinstance(refused, InvalidTransition) and refused.status == 409
    assert "Cannot transition from BOOKED to DELIVERED" in refused.detail
    unmoved = stored(services, booked)
    assert (unmoved["status"], unmoved["version"]) == ("BOOKED", 1)
    assert events(services, booked) == ["BOOKING_CREATED"]
    assert (moved["status"], moved["version"]) == ("DEPARTED", 2)


def test_a_strangers_transition_is_not_found_and_the_owners_goes_through(services):
    ref = new_booking(services, customer_id="owner-1")
    stranger, owner = transition_bookings(
        services,
        [
            transition_item(ref, "CANCELLED", owner="stranger-2"),
            transition_item(ref, "CANCELLED", owner="owner-1", reason="changed plans"),
        ],
    )
    assert isinstance(stranger, NotFound) and stranger.status == 404
    assert (owner["status"], owner["version"]) == ("CANCELLED", 2)
    assert events(services, ref) == ["BOOKING_CREATED", "STATUS_CANCELLED"]


def test_a_redelivered_group_changes_nothing(services):
    first, second = new_booking(services), new_booking(services)
    items = [
        transition_item(first, "DEPARTED"),
        transition_item(first, "ARRIVED"),
        transition_item(second, "CANCELLED", reason="customer"),
    ]
    transition_bookings(services, items)
    # As if the first delivery died after the update, before the event insert.
    services.db.booking_events.delete_one(
        {"_id": bookings.event_id(items[2]["job_id"], "STATUS_CANCELLED")}
    )
    again = transition_bookings(services, items)  # the same jobs: the same job_ids
    assert [(b["status"], b["version"]) for b in again] == [
        ("ARRIVED", 3),  # the booking as it is now, for both of its jobs
        ("ARRIVED", 3),
        ("CANCELLED", 2),
    ]
    assert (stored(services, first)["version"], stored(services, second)["version"]) == (3, 2)
    assert events(services, first) == ["BOOKING_CREATED", "STATUS_DEPARTED", "STATUS_ARRIVED"]
    assert events(services, second) == ["BOOKING_CREATED", "STATUS_CANCELLED"]
    assert len(stored(services, first)["applied"]) == 2


def milestone_item(ref_id, code, job_id=None, **request):
    """A queued milestone as the worker hands it to transition_bookings."""
    return {
        "job_id": job_id or new_job_id(),
        "ref_id": ref_id,
        "milestone": code,
        "request": {"code": code, "location": "DEL", **request},
        "owner": None,
    }


def test_milestones_and_transitions_of_one_booking_in_a_group_apply_in_order(services):
    """RCS and MAN were accepted while the booking was BOOKED; the departure
    queued between them came first for MAN, which is refused under the lock."""
    ref = new_booking(services)
    received, departed, manifested = transition_bookings(
        services,
        [
            milestone_item(ref, "RCS", at="2026-11-28T03:00:00.000Z"),
            transition_item(ref, "DEPARTED"),
            milestone_item(ref, "MAN"),
        ],
    )
    assert (received["status"], received["version"]) == ("BOOKED", 2)
    assert (departed["status"], departed["version"]) == ("DEPARTED", 3)
    assert isinstance(manifested, MilestoneOutOfOrder) and manifested.status == 409
    assert events(services, ref) == ["BOOKING_CREATED", "MILESTONE_RCS", "STATUS_DEPARTED"]
    event = services.db.booking_events.find_one({"booking_id": ref, "type": "MILESTONE_RCS"})
    assert (event["code"], event["location"], event["version"]) == ("RCS", "DEL", 2)
    assert event["occurred_at"] == datetime(2026, 11, 28, 3, tzinfo=UTC)


def test_a_milestone_out_of_its_phase_is_refused_in_a_group_for_its_item_only(services):
    departed, booked = new_booking(services), new_booking(services)
    transition_bookings(services, [transition_item(departed, "DEPARTED")])
    refused, received = transition_bookings(
        services, [milestone_item(departed, "RCS"), milestone_item(booked, "RCS")]
    )
    assert isinstance(refused, MilestoneOutOfOrder)
    assert refused.detail == "RCS is recorded while a booking is BOOKED; this one is DEPARTED."
    assert stored(services, departed)["version"] == 2
    assert events(services, departed) == ["BOOKING_CREATED", "STATUS_DEPARTED"]
    assert (received["status"], received["version"]) == ("BOOKED", 2)


def test_a_redelivered_group_records_its_milestones_once(services):
    refs = [new_booking(services) for _ in range(3)]
    items = [milestone_item(ref, "RCS") for ref in refs]
    transition_bookings(services, items)
    # As if the first delivery died after the update, before the event insert.
    services.db.booking_events.delete_one(
        {"_id": bookings.event_id(items[1]["job_id"], "MILESTONE_RCS")}
    )
    again = transition_bookings(services, items)
    assert [(b["status"], b["version"]) for b in again] == [("BOOKED", 2)] * 3
    for ref in refs:
        assert events(services, ref) == ["BOOKING_CREATED", "MILESTONE_RCS"]
        assert len(stored(services, ref)["applied"]) == 1


def test_a_booking_locked_elsewhere_is_moved_once_the_lock_is_released(services):
    locked, free = new_booking(services), new_booking(services)
    taken, released = threading.Event(), threading.Event()

    def hold_for_a_while():
        held = services.locks.acquire(booking_lock_key(locked))
        taken.set()
        time.sleep(0.3)
        services.locks.release(held)
        released.set()

    holder = threading.Thread(target=hold_for_a_while)
    holder.start()
    assert taken.wait(5)
    started = time.monotonic()
    moved_locked, moved_free = transition_bookings(
        services, [transition_item(locked, "DEPARTED"), transition_item(free, "DEPARTED")]
    )
    waited = time.monotonic() - started
    holder.join(5)
    # It waited for the other holder (one at a time), rather than refusing.
    assert released.is_set() and waited >= 0.2
    assert (moved_locked["status"], moved_locked["version"]) == ("DEPARTED", 2)
    assert (moved_free["status"], moved_free["version"]) == ("DEPARTED", 2)
    assert events(services, locked) == ["BOOKING_CREATED", "STATUS_DEPARTED"]


def test_a_write_the_fence_refused_is_decided_again_on_the_new_state(services, monkeypatch):
    raced, calm = new_booking(services), new_booking(services)
    real_fenced_update = transitions.fenced_update

    def race_then_fence(booking, target, job_id, now, *milestone):
        if booking["ref_id"] == raced and stored(services, raced)["status"] == "BOOKED":
            # Someone whose lock expired commits between our read and our write.
            services.db.bookings.update_one(
                {"ref_id": raced}, {"$set": {"status": "CANCELLED"}, "$inc": {"version": 1}}
            )
        return real_fenced_update(booking, target, job_id, now, *milestone)

    monkeypatch.setattr(transitions, "fenced_update", race_then_fence)
    refused, moved = transition_bookings(
        services, [transition_item(raced, "DEPARTED"), transition_item(calm, "DEPARTED")]
    )
    assert isinstance(refused, InvalidTransition)
    assert "Cannot transition from CANCELLED to DEPARTED" in refused.detail
    assert events(services, raced) == ["BOOKING_CREATED"]  # no event for the refused write
    assert (moved["status"], moved["version"]) == ("DEPARTED", 2)
    assert events(services, calm) == ["BOOKING_CREATED", "STATUS_DEPARTED"]


def test_a_booking_whose_create_is_queued_is_not_ready_and_an_unknown_one_not_found(
    services, settings
):
    pending_ref, ready = new_ref_id(), new_booking(services)
    create_job = create_job_of(settings, {"ref_id": pending_ref}, ref_id=pending_ref)
    queued = queued_jobs.job_record(create_job)
    queued_jobs.hold_queued(services.redis, queued, ttl_s=60)
    try:
        pending, unknown, moved = transition_bookings(
            services,
            [
                transition_item(pending_ref, "DEPARTED"),
                transition_item(new_ref_id(), "DEPARTED"),
                transition_item(ready, "DEPARTED"),
            ],
        )
    finally:
        queued_jobs.release_queued(services.redis, [queued])
    assert isinstance(pending, NotReady) and pending.transient
    assert isinstance(unknown, NotFound)
    assert (moved["status"], moved["version"]) == ("DEPARTED", 2)


# -- jobs of a customer disabled after they were accepted ------------------------------


def disabled_customer(services, role="customer") -> str:
    from core.customers import disable_customer
    from tests.conftest import new_customer

    made = new_customer(services.db, role=role)
    disable_customer(services.db, services.cache, made["customer_id"], now=utcnow(), ttl=60)
    return made["customer_id"]


def test_a_disabled_customers_create_is_forbidden_and_takes_nothing(services):
    from tests.core.test_reservations import new_flight

    gone = disabled_customer(services)
    fid = new_flight(services, 1000)
    flying = {"origin": "RSA", "destination": "RSB", "flight_ids": [fid], "weight_kg": 100}
    refused, created = create_bookings(
        services, [create_item(customer_id=gone, **flying), create_item(**flying)]
    )
    assert refused.status == 403 and refused.to_problem()["type"].endswith("customer-disabled")
    assert gone in refused.detail
    assert created["ref_id"] == stored(services, created["ref_id"])["ref_id"]
    assert services.db.bookings.count_documents({"customer_id": gone}) == 0
    assert services.db.flights.find_one({"_id": fid})["booked_g"] == 100_000  # the other's only


def test_a_disabled_submitters_transitions_are_forbidden_in_a_group_and_alone(services):
    gone = disabled_customer(services, role="operator")
    ref, other = new_booking(services), new_booking(services)
    refused, moved = transition_bookings(
        services,
        [
            {**transition_item(ref, "DEPARTED"), "submitter": gone},
            {**transition_item(other, "DEPARTED"), "submitter": None},
        ],
    )
    assert isinstance(refused, CustomerDisabled) and moved["status"] == "DEPARTED"
    assert (stored(services, ref)["status"], stored(services, ref)["version"]) == ("BOOKED", 1)
    # One at a time (a booking locked elsewhere, a bulk update): refused under its lock.
    with pytest.raises(CustomerDisabled):
        transitions.transition_booking(
            services.db,
            services.locks,
            ref_id=ref,
            target="DEPARTED",
            job_id=new_job_id(),
            data={},
            clock=utcnow,
            queued_records=services.redis,
            submitter=gone,
        )
    assert stored(services, ref)["status"] == "BOOKED"
