"""Bulk bookings and bulk status updates through HTTP and real workers."""

import pytest
import requests

from core import bulk
from tests.conftest import ADMIN, booking_body, progressed, wait_job
from tools.processes import kill_worker


def post(base, path, body, wait=30):
    headers = {**ADMIN, "Prefer": f"wait={min(wait, 10)}"}
    r = requests.post(base + path, json=body, headers=headers, timeout=60)
    if r.status_code == 202:
        return wait_job(base, r.headers["Location"], timeout=wait)
    return r.json()


def test_a_thousand_bookings_with_a_few_bad_ones(live_server, services):
    items = [booking_body(pieces=1 + i % 100) for i in range(1000)]
    bad = {
        7: {"origin": "D1L"},
        250: {"pieces": 0},
        500: {"surprise": True},
        999: {"weight_kg": "x"},
    }
    for index, override in bad.items():
        items[index] = {**items[index], **override}
    items[333] = "not an object"
    job = post(live_server, "/api/admin/bookings/bulk", {"bookings": items}, wait=120)
    assert job["state"] == "succeeded", job
    result = job["result"]
    assert (result["total"], result["succeeded"], result["failed"]) == (1000, 995, 5)
    failed = [item["index"] for item in result["items"] if "problem" in item]
    assert failed == sorted([*bad, 333])
    stored = [item for item in result["items"] if "ref_id" in item]
    assert all(item["status"] == "BOOKED" for item in stored)
    for item in stored[::50]:  # spot checks by ref_id (indexed)
        booking = services.db.bookings.find_one({"ref_id": item["ref_id"]})
        assert booking["pieces"] == 1 + item["index"] % 100
        assert services.db.booking_events.count_documents({"booking_id": item["ref_id"]}) == 1
    assert job["progress"]["done"] == 1000


def test_five_hundred_updates_mixing_valid_invalid_and_unknown(live_server, services):
    made = post(
        live_server,
        "/api/admin/bookings/bulk",
        {"bookings": [booking_body() for _ in range(200)]},
        wait=60,
    )["result"]["items"]
    refs = [item["ref_id"] for item in made]
    updates = []
    for ref in refs[:150]:
        updates.append({"ref_id": ref, "newStatus": "DEPARTED", "eventData": {"location": "DEL"}})
    for ref in refs[:100]:  # a second update to the same booking, later in the batch: in order
        updates.append({"ref_id": ref, "newStatus": "ARRIVED", "eventData": {"location": "BLR"}})
    for ref in refs[150:200]:  # BOOKED -> DELIVERED skips a step: invalid
        updates.append({"ref_id": ref, "newStatus": "DELIVERED"})
    for n in range(150):
        updates.append({"ref_id": f"RGNOSUCH{n:03d}", "newStatus": "CANCELLED"})
    updates.append({"ref_id": refs[0], "newStatus": "LOST"})
    updates.append({"ref_id": "bad", "newStatus": "DEPARTED"})
    updates += [
        {"ref_id": ref, "newStatus": "DELIVERED", "eventData": {"notes": "ok"}} for ref in refs[:48]
    ]
    assert len(updates) == 500
    job = post(live_server, "/api/admin/bookings/status/bulk", {"updates": updates}, wait=180)
    assert job["state"] == "succeeded", job
    result = job["result"]
    by_index = {item["index"]: item for item in result["items"]}
    assert all(by_index[i]["status"] == "DEPARTED" for i in range(150))
    assert all(by_index[i]["status"] == "ARRIVED" for i in range(150, 250))
    invalid = [by_index[i]["problem"] for i in range(250, 300)]
    assert {p["status"] for p in invalid} == {409}
    assert invalid[0]["detail"] == "Cannot transition from BOOKED to DELIVERED"
    assert {by_index[i]["problem"]["status"] for i in range(300, 450)} == {404}
    assert by_index[450]["problem"]["status"] == by_index[451]["problem"]["status"] == 400
    assert all(by_index[i]["status"] == "DELIVERED" for i in range(452, 500))
    assert (result["succeeded"], result["failed"]) == (298, 202)
    timeline = requests.get(
        f"{live_server}/api/bookings/{refs[0]}", headers=ADMIN, timeout=5
    ).json()
    assert [e["type"] for e in timeline["events"]] == [
        "BOOKING_CREATED",
        "STATUS_DEPARTED",
        "STATUS_ARRIVED",
        "STATUS_DELIVERED",
    ]
    assert timeline["version"] == 4


def test_envelope_errors_and_limits(live_server, settings):
    for path, field, limit in (
        ("/api/admin/bookings/bulk", "bookings", settings.BULK_BOOKING_LIMIT),
        ("/api/admin/bookings/status/bulk", "updates", settings.BULK_UPDATE_LIMIT),
    ):
        for body in ({}, {field: []}, {field: "x"}, {field: {"a": 1}}):
            r = requests.post(live_server + path, json=body, headers=ADMIN, timeout=10)
            assert r.status_code == 400, (path, body)
            assert r.headers["Content-Type"] == "application/problem+json"
        over = {field: [{"x": 1}] * (limit + 1)}
        r = requests.post(live_server + path, json=over, headers=ADMIN, timeout=30)
        assert r.status_code == 413, path
        assert r.headers["Content-Type"] == "application/problem+json"


@pytest.mark.slow(reason="two batches of 30 bookings and 30 updates")
def test_the_same_bulk_job_run_twice_applies_each_item_once(services):
    """A redelivered message runs the whole batch again: nothing doubles."""
    from core.clock import utcnow
    from core.ids import new_job_id

    job_id = new_job_id()
    items = [booking_body() for _ in range(30)]
    first, again = (  # a delivery, then its redelivery
        bulk.import_bookings(
            services.db,
            services.locks,
            items,
            job_id=job_id,
            now=utcnow(),
            chunk_size=7,
            min_connection_minutes=60,
            awbs=services.awb_stock,
        )
        for _ in range(2)
    )
    assert first["items"] == again["items"]  # each stored booking keeps its first AWB
    refs = [item["ref_id"] for item in first["items"]]
    assert len(set(refs)) == 30
    assert len({item["awb"] for item in first["items"]}) == 30
    assert all(services.db.booking_events.count_documents({"booking_id": r}) == 1 for r in refs)
    updates = [{"ref_id": r, "newStatus": "DEPARTED"} for r in refs]
    for _ in range(2):
        done = bulk.update_statuses(
            services.db,
            services.locks,
            updates,
            job_id=job_id,
            clock=utcnow,
            queued_records=services.redis,
            chunk_size=7,
            on_changed=lambda b: None,
        )
        assert done["succeeded"] == 30
    for r in refs:
        assert services.db.bookings.find_one({"ref_id": r})["version"] == 2
        assert services.db.booking_events.count_documents({"booking_id": r}) == 2


def test_a_worker_killed_mid_batch_is_redelivered_and_finishes_once(isolated_stack, services):
    stack = isolated_stack("kill", BULK_CHUNK_SIZE=25)
    client = stack.client()
    victim = stack.start_worker("victim")
    r = client.post(
        "/api/admin/bookings/bulk",
        headers=ADMIN,
        json={"bookings": [booking_body(pieces=2) for _ in range(1000)]},
    )
    job_url = r.headers["Location"]
    job = progressed(client, job_url, 1000)
    kill_worker(victim)  # mid-batch, its message unacked
    assert job["state"] == "running" and job["progress"]["done"] < 1000
    stack.start_worker("rescuer")
    job = wait_job(client, job_url, timeout=120)
    assert job["state"] == "succeeded" and job["result"]["succeeded"] == 1000
    refs = [item["ref_id"] for item in job["result"]["items"]]
    assert len(set(refs)) == 1000
    for ref in refs[::10]:
        assert services.db.bookings.count_documents({"ref_id": ref}) == 1
        assert services.db.booking_events.count_documents({"booking_id": ref}) == 1
