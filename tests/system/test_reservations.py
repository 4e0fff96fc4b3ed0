"""Flight capacity end to end: HTTP -> RabbitMQ -> real workers, under the flight lock."""

from concurrent.futures import ThreadPoolExecutor
from datetime import date

import requests

from core import reservations
from tests.conftest import ADMIN, OPERATOR, booking_body, post_booking, wait_job
from tests.system.test_bulk import post
from tests.system.test_flights import bulk, flight


def flight_view(base, fid):
    r = requests.get(f"{base}/api/flights/{fid}", timeout=5)
    assert r.status_code == 200, r.text
    return r.json()


def stored_space(services, fid):
    doc = services.db.flights.find_one({"_id": fid})
    held = reservations.flight_reservations(services.db, fid)
    return doc["booked_g"] / 1000, doc["available_g"] / 1000, len(held)


def test_thirty_concurrent_bookings_of_100_kg_fill_1000_kg_exactly(live_server, services):
    bulk(live_server, [flight("CP1", "KCA", "KCB", date(2033, 4, 1), 8, capacity_kg=1000)])
    fid = "CP1-20330401"
    body = booking_body(origin="KCA", destination="KCB", weight_kg=100, flight_ids=[fid])

    def book(_):
        r = post_booking(live_server, body)
        assert r.status_code == 202, r.text
        return r.headers["Location"]

    with ThreadPoolExecutor(30) as pool:
        urls = list(pool.map(book, range(30)))
    jobs = [wait_job(live_server, url, timeout=60) for url in urls]
    succeeded = [j for j in jobs if j["state"] == "succeeded"]
    failed = [j for j in jobs if j["state"] == "failed"]
    assert (len(succeeded), len(failed)) == (10, 20)
    for job in failed:
        assert job["error"]["status"] == 409
        assert job["error"]["type"].endswith("flight-full")
        assert fid in job["error"]["detail"]
    assert stored_space(services, fid) == (1000, 0, 10)
    view = flight_view(live_server, fid)
    assert (view["capacity_kg"], view["booked_kg"], view["available_kg"]) == (1000, 1000, 0)


def test_a_cancel_gives_the_space_back_and_a_delivery_keeps_it(live_server, services):
    bulk(live_server, [flight("CP2", "KCA", "KCB", date(2033, 4, 2), 8, capacity_kg=500)])
    fid = "CP2-20330402"

    def create(weight):
        body = booking_body(origin="KCA", destination="KCB", weight_kg=weight, flight_ids=[fid])
        r = post_booking(live_server, body, Prefer="wait=10")
        assert r.status_code == 201, r.text
        return r.json()["result"]["booking"]["ref_id"]

    def act(ref_id, action):
        r = requests.post(
            f"{live_server}/api/bookings/{ref_id}/{action}",
            json={"location": "KCB"},
            headers={**OPERATOR, "Prefer": "wait=10"},
            timeout=15,
        )
        assert r.status_code == 200, r.text

    cancelled, delivered = create(200), create(250)
    assert stored_space(services, fid) == (450, 50, 2)
    act(cancelled, "cancel")
    assert stored_space(services, fid) == (250, 250, 1)
    for action in ("depart", "arrive", "deliver"):
        act(delivered, action)
    assert stored_space(services, fid) == (250, 250, 1)


def test_a_two_leg_booking_whose_second_leg_is_full_fails_and_leaves_the_first(
    live_server, services
):
    day = date(2033, 4, 3)
    bulk(
        live_server,
        [
            flight("CP3", "KCA", "KCB", day, 6, capacity_kg=1000),
            flight("CP4", "KCB", "KCC", day, 12, capacity_kg=50),
        ],
    )
    legs = ["CP3-20330403", "CP4-20330403"]
    body = booking_body(origin="KCA", destination="KCC", weight_kg=100, flight_ids=legs)
    r = post_booking(live_server, body, Prefer="wait=10")
    assert r.status_code == 409, r.text
    assert r.json()["type"].endswith("flight-full") and "CP4-20330403" in r.json()["detail"]
    assert stored_space(services, "CP3-20330403") == (0, 1000, 0)
    assert stored_space(services, "CP4-20330403") == (0, 50, 0)


def test_bulk_bookings_reserve_the_same_way_with_a_409_per_item_that_does_not_fit(
    live_server, services
):
    bulk(live_server, [flight("CP5", "KCA", "KCB", date(2033, 4, 4), 8, capacity_kg=300)])
    fid = "CP5-20330404"
    items = [
        booking_body(origin="KCA", destination="KCB", weight_kg=100, flight_ids=[fid])
        for _ in range(5)
    ]
    job = post(live_server, "/api/admin/bookings/bulk", {"bookings": items}, wait=60)
    assert job["state"] == "succeeded", job
    result = job["result"]
    assert (result["succeeded"], result["failed"]) == (3, 2)
    problems = [item["problem"] for item in result["items"] if "problem" in item]
    assert all(p["status"] == 409 and p["type"].endswith("flight-full") for p in problems)
    assert stored_space(services, fid) == (300, 0, 3)


def test_a_reimport_below_what_is_booked_fails_that_item(live_server, services):
    day = date(2033, 4, 5)
    bulk(live_server, [flight("CP6", "KCA", "KCB", day, 8, capacity_kg=1000)])
    fid = "CP6-20330405"
    body = booking_body(origin="KCA", destination="KCB", weight_kg=700, flight_ids=[fid])
    r = post_booking(live_server, body, Prefer="wait=10")
    assert r.status_code == 201, r.text
    r = bulk(
        live_server,
        [
            flight("CP6", "KCA", "KCB", day, 8, capacity_kg=600),
            flight("CP7", "KCA", "KCB", day, 9, capacity_kg=600),
        ],
    )
    job = r.json() if r.status_code == 200 else wait_job(live_server, r.headers["Location"])
    result = job["result"]
    assert (result["succeeded"], result["failed"]) == (1, 1), result
    (error,) = result["errors"]
    assert error["index"] == 0 and error["problem"]["status"] == 409
    assert fid in error["problem"]["detail"]
    view = flight_view(live_server, fid)
    assert (view["capacity_kg"], view["booked_kg"], view["available_kg"]) == (1000, 700, 300)


def test_flight_locks_show_in_the_admin_view_while_held(live_server, services):
    from core.locks import flight_lock_key

    held = services.locks.acquire(flight_lock_key("CP9-20330406"), 15)
    try:
        listed = requests.get(live_server + "/api/admin/locks", headers=ADMIN, timeout=5).json()
        assert "flight:CP9-20330406" in [lock["key"] for lock in listed["locks"]]
    finally:
        services.locks.release(held)
