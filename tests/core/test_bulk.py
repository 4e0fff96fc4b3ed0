"""Bulk status updates (core.bulk.update_statuses): the same transitions as one at a time."""

from core import bookings, bulk
from core.clock import utcnow
from core.ids import new_job_id
from tests.conftest import stored_booking


def test_bulk_status_updates_write_events_with_their_codes(services):
    first, second = stored_booking(services), stored_booking(services)
    updates = [
        {"ref_id": first, "newStatus": "DEPARTED"},
        {"ref_id": first, "newStatus": "ARRIVED", "eventData": {"location": "BLR"}},
        {"ref_id": second, "newStatus": "CANCELLED", "eventData": {"reason": "customer"}},
    ]
    done = bulk.update_statuses(
        services.db,
        services.locks,
        updates,
        job_id=new_job_id(),
        clock=utcnow,
        queued_records=services.redis,
        chunk_size=2,
        on_changed=lambda booking: None,
    )
    assert done["succeeded"] == 3
    timeline = bookings.get_booking_details(services.db, first)["events"]
    assert [(e["code"], e["location"]) for e in timeline] == [
        ("BKD", None),
        ("DEP", None),
        ("ARR", "BLR"),
    ]
    cancelled = bookings.get_booking_details(services.db, second)["events"]
    assert [e["code"] for e in cancelled] == ["BKD", None]
    stored = services.db.booking_events.find_one({"booking_id": first, "type": "STATUS_ARRIVED"})
    assert stored["code"] == "ARR"  # stored with it, not only derived on reading
