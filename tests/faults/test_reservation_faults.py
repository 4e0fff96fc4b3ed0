"""A worker SIGKILLed between a booking's legs: after the redelivery, no
reservation is left that no booking holds, and none is made twice."""

import time
from datetime import UTC, timedelta

import pytest

from core import reservations
from core.clock import utcnow
from core.flights import flight_document
from core.ids import new_ref_id
from core.locks import flight_lock_key
from tests.conftest import CUSTOMER, booking_body, wait_job
from tools.processes import kill_worker


def two_legs(services, tag: str) -> tuple[str, str]:
    day = utcnow().replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=30)
    legs = []
    for n, (origin, destination, hour) in enumerate((("KFA", "KFB", 6), ("KFB", "KFC", 12))):
        departure = (day + timedelta(hours=hour)).astimezone(UTC)
        doc = flight_document(
            {
                "flight_number": f"{tag}{n}",
                "airline": "Fault Air",
                "origin": origin,
                "destination": destination,
                "departure_ts": departure,
                "arrival_ts": departure + timedelta(hours=2),
                "capacity_kg": 1000,
            },
            1000,
        )
        services.db.flights.replace_one({"_id": doc["_id"]}, doc, upsert=True)
        legs.append(doc["_id"])
    return legs[0], legs[1]


def reserved_by(services, fid: str, ref_id: str) -> bool:
    return ref_id in reservations.flight_reservations(services.db, fid)


def taken_for(services, fid: str, ref_id: str) -> bool:
    """The space is taken for the booking: recorded, or still marked pending."""
    flight = services.db.flights.find_one({"_id": fid})
    return reserved_by(services, fid, ref_id) or ref_id in flight.get("pending", {})


def booked_kg(services, fid: str) -> float:
    return services.db.flights.find_one({"_id": fid})["booked_g"] / 1000


@pytest.mark.parametrize(
    "second_leg",
    [pytest.param("filled-meanwhile", marks=pytest.mark.heavy(reason="~18 s")), "with-room"],
)
def test_a_worker_killed_between_legs_leaves_no_stray_reservation(
    isolated_stack, services, second_leg
):
    stack = isolated_stack(f"kill-legs-{second_leg}")
    client = stack.client()
    first, second = two_legs(services, "KL" + second_leg[0].upper())
    # The second leg's lock, held here: the worker reserves the first leg, then waits.
    held = services.locks.acquire(flight_lock_key(second), 60)
    try:
        victim = stack.start_worker("victim", concurrency=1)
        body = booking_body(
            origin="KFA", destination="KFC", weight_kg=100, flight_ids=[first, second]
        )
        r = client.post("/api/bookings", json=body, headers=CUSTOMER)
        assert r.status_code == 202, r.get_json()
        ref_id, url = r.get_json()["ref_id"], r.headers["Location"]
        deadline = time.monotonic() + 30
        while not taken_for(services, first, ref_id):
            assert time.monotonic() < deadline, "the victim never took the first leg's space"
            time.sleep(0.02)
        kill_worker(victim)  # between the legs: the first reserved, the second not
        assert not taken_for(services, second, ref_id)
        if second_leg == "filled-meanwhile":  # another booking takes the rest
            assert reservations._take(
                services.db, second, [(new_ref_id(), reservations.Space(1000 * 1000))]
            )
        services.locks.release(held)
        stack.start_worker("rescuer")
        job = wait_job(client, url, timeout=60, headers=CUSTOMER)
    finally:
        services.locks.release(held)
    stored = services.db.bookings.count_documents({"ref_id": ref_id})
    if second_leg == "filled-meanwhile":
        assert job["state"] == "failed" and job["error"]["type"].endswith("flight-full")
        assert stored == 0
        assert not taken_for(services, first, ref_id) and booked_kg(services, first) == 0
        assert booked_kg(services, second) == 1000  # the other booking's, untouched
    else:
        assert job["state"] == "succeeded" and stored == 1
        assert reserved_by(services, first, ref_id) and reserved_by(services, second, ref_id)
        assert booked_kg(services, first) == booked_kg(services, second) == 100
    for fid in (first, second):  # no mark of the booking's left behind
        assert ref_id not in services.db.flights.find_one({"_id": fid}).get("pending", {})
    print(f"{second_leg}: job {job['state']}, stray reservations 0, doubled 0")
