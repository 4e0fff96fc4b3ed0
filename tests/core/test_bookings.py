from datetime import timedelta

import pytest

from core import booking_lists, bookings
from core.clock import utcnow
from core.errors import ValidationFailed
from core.ids import new_job_id, new_ref_id
from tests.conftest import store_booking

DATA = {"origin": "DEL", "destination": "BLR", "pieces": 5, "weight_kg": 125.5}


def test_ref_ids_look_like_the_specs():
    ids = {new_ref_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(len(i) == 11 and i.startswith("RG") and i[2:].isalnum() and i.isupper() for i in ids)


def test_inserting_twice_with_one_job_stores_one_booking_and_one_event(services):
    ref_id, job_id = new_ref_id(), new_job_id()
    first = store_booking(services.db, ref_id=ref_id, data=DATA, job_id=job_id, now=utcnow())
    services.db.booking_events.delete_many({"booking_id": ref_id})  # the first run died here
    again = store_booking(services.db, ref_id=ref_id, data=DATA, job_id=job_id, now=utcnow())
    assert again["created_at"] == first["created_at"]
    assert services.db.bookings.count_documents({"ref_id": ref_id}) == 1
    assert services.db.booking_events.count_documents({"booking_id": ref_id}) == 1


def test_a_ref_id_another_job_holds_is_not_stored_over(services):
    ref_id = new_ref_id()
    first = store_booking(services.db, ref_id=ref_id, data=DATA, job_id=new_job_id(), now=utcnow())
    other = {**DATA, "pieces": 9}
    assert store_booking(services.db, ref_id, other, job_id=new_job_id(), now=utcnow()) is None
    assert services.db.bookings.find_one({"ref_id": ref_id})["job_id"] == first["job_id"]


def test_details_hold_the_timeline(services):
    ref_id = new_ref_id()
    store_booking(services.db, ref_id=ref_id, data=DATA, job_id=new_job_id(), now=utcnow())
    details = bookings.get_booking_details(services.db, ref_id)
    assert details["status"] == "BOOKED" and details["version"] == 1
    assert [e["type"] for e in details["events"]] == ["BOOKING_CREATED"]
    assert bookings.timeline_is_complete(details)
    assert bookings.get_booking_details(services.db, new_ref_id()) is None


def test_cursor_pages_are_stable_while_bookings_are_inserted(services):
    origin = "ZZA"  # a route no other test uses
    base = utcnow()
    made = []
    for i in range(7):
        ref_id = new_ref_id()
        store_booking(
            services.db,
            ref_id=ref_id,
            data={**DATA, "origin": origin},
            job_id=new_job_id(),
            now=base + timedelta(milliseconds=i // 2),
        )
        made.append(ref_id)
    page1 = booking_lists.list_bookings(services.db, limit=3, origin=origin)
    # Newer bookings arrive between page requests: they must not shift later pages.
    for _ in range(3):
        store_booking(
            services.db,
            ref_id=new_ref_id(),
            data={**DATA, "origin": origin},
            job_id=new_job_id(),
            now=base + timedelta(seconds=5),
        )
    page2 = booking_lists.list_bookings(
        services.db, limit=3, origin=origin, cursor=page1["next_cursor"]
    )
    page3 = booking_lists.list_bookings(
        services.db, limit=3, origin=origin, cursor=page2["next_cursor"]
    )
    seen = [b["ref_id"] for p in (page1, page2, page3) for b in p["items"]]
    assert sorted(seen) == sorted(made) and len(seen) == 7
    stamps = [(b["created_at"], b["ref_id"]) for p in (page1, page2, page3) for b in p["items"]]
    assert stamps == sorted(stamps, reverse=True)
    assert page3["next_cursor"] is None


def test_a_forged_cursor_is_a_validation_error(services):
    with pytest.raises(ValidationFailed):
        booking_lists.list_bookings(services.db, limit=3, cursor="not-a-cursor")
