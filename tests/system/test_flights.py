"""Flight import, route search and cache warming through HTTP and a real worker."""

import time
from datetime import UTC, date, datetime, timedelta

import requests

from core import cache_keys, route_answers
from core.flushing import FLUSH_INTERVAL_S
from tests.conftest import ADMIN, booking_body, post_booking, wait_job

TODAY = datetime.now(UTC).date()


def flight(number, origin, destination, day: date, hh: int, minutes: int = 120, **extra):
    dep = datetime(day.year, day.month, day.day, hh, 0, tzinfo=UTC)
    body = {
        "flight_number": number,
        "airline": "RadiantGo Airlines",
        "origin": origin,
        "destination": destination,
        "departure_ts": dep.isoformat().replace("+00:00", "Z"),
        "arrival_ts": (dep + timedelta(minutes=minutes)).isoformat(),
    }
    body.update(extra)
    return body


def bulk(base, items, wait=10):
    return requests.post(
        base + "/api/admin/flights/bulk",
        json={"flights": items},
        headers={**ADMIN, "Prefer": f"wait={wait}"} if wait else ADMIN,
        timeout=30,
    )


def test_import_reports_bad_items_by_index_and_stores_the_rest(live_server, services):
    day = date(2032, 1, 5)
    items = [
        flight("IM1", "KAA", "KBB", day, 8),
        {"flight_number": "IM2", "origin": "KAA"},  # missing fields
        flight("IM3", "KAA", "KBB", day, 9, minutes=-30),  # arrives before departing
        flight("IM4", "KAA", "KAA", day, 10),  # same airports
        "not an object",
        flight("IM6", "KAA", "KBB", day, 11, minutes=25 * 60),  # over 24 h
        flight("IM7", "KBB", "KAA", day, 12, departure_ts="2032-01-05T12:00:00"),  # no offset
        flight("IM8", "KBB", "KAA", day, 13),
    ]
    r = bulk(live_server, items)
    assert r.status_code == 200, r.text
    job = r.json()
    assert job["type"] == "flights.import"
    result = job["result"]
    assert (result["total"], result["succeeded"], result["failed"]) == (8, 2, 6)
    assert [e["index"] for e in result["errors"]] == [1, 2, 3, 4, 5, 6]
    assert all(e["problem"]["status"] == 400 for e in result["errors"])
    assert job["progress"] == {"total": 8, "done": 8, "failed": 6}
    got = requests.get(live_server + "/api/flights/IM1-20320105", timeout=5).json()
    assert got["arrival_ts"] == "2032-01-05T10:00:00.000Z" and got["origin"] == "KAA"
    assert requests.get(live_server + "/api/flights/IM3-20320105", timeout=5).status_code == 404


def test_reimport_is_idempotent_and_updates(live_server, services):
    day = date(2032, 1, 6)
    items = [flight(f"RI{n}", "KCC", "KDD", day, n) for n in range(1, 11)]
    for _ in range(2):
        assert bulk(live_server, items).json()["result"]["succeeded"] == 10
    listing = requests.get(
        live_server + "/api/flights",
        params={"origin": "KCC", "destination": "KDD", "date": "2032-01-06"},
        timeout=5,
    ).json()
    assert listing["count"] == 10
    assert [f["flight_number"] for f in listing["items"]] == [f"RI{n}" for n in range(1, 11)]
    changed = [flight("RI1", "KCC", "KDD", day, 1, airline="Other Air")]
    bulk(live_server, changed)
    assert services.db.flights.find_one({"_id": "RI1-20320106"})["airline"] == "Other Air"
    assert services.db.flights.count_documents({"flight_number": "RI1"}) == 1


def test_envelope_errors(live_server, settings):
    base = live_server + "/api/admin/flights/bulk"
    for body in (
        {},
        {"flights": []},
        {"flights": "x"},
        {"flights": {"a": 1}},
        [1],
        {"flights": [], "x": 1},
    ):
        r = requests.post(base, json=body, headers=ADMIN, timeout=10)
        assert r.status_code == 400, body
        assert r.headers["Content-Type"] == "application/problem+json"
    over = [flight("OV1", "KEE", "KFF", date(2032, 1, 7), 8)] * (settings.BULK_FLIGHT_LIMIT + 1)
    r = requests.post(base, json={"flights": over}, headers=ADMIN, timeout=30)
    assert r.status_code == 413
    assert r.headers["Content-Type"] == "application/problem+json"


def test_an_import_invalidates_cached_routes_and_flights(live_server, services):
    day = date(2032, 1, 8)
    bulk(live_server, [flight("CI1", "KGG", "KHH", day, 8)])
    params = {"origin": "KGG", "destination": "KHH", "date": day.isoformat()}
    first = requests.get(live_server + "/api/routes", params=params, timeout=5).json()
    assert first["counts"]["direct"] == 1
    assert services.redis.exists(cache_keys.route_key("KGG", "KHH", day))
    assert (
        requests.get(live_server + "/api/routes", params=params, timeout=5).json() == first
    )  # cached
    bulk(live_server, [flight("CI2", "KGG", "KHH", day, 9)])
    after = requests.get(live_server + "/api/routes", params=params, timeout=5).json()
    assert after["counts"]["direct"] == 2
    assert [o["flights"][0]["flight_number"] for o in after["direct"]] == ["CI1", "CI2"]


def test_route_query_errors(live_server):
    for params in (
        {"origin": "DEL", "destination": "DEL", "date": "2032-01-01"},
        {"origin": "DE1", "destination": "BLR", "date": "2032-01-01"},
        {"origin": "DEL", "destination": "BLR", "date": "2032-13-01"},
        {"origin": "DEL", "destination": "BLR"},
        {"origin": "DEL", "destination": "BLR", "date": "2032-01-01", "limit": 0},
    ):
        r = requests.get(live_server + "/api/routes", params=params, timeout=5)
        assert r.status_code == 400, params
        assert r.headers["Content-Type"] == "application/problem+json"
    r = requests.get(
        live_server + "/api/routes",
        params={"origin": "ZZQ", "destination": "ZZW", "date": "2032-01-01"},
        timeout=5,
    )
    assert r.status_code == 200
    assert r.json()["direct"] == [] and r.json()["one_transit"] == []


def test_limit_applies_per_list_and_counts_say_how_many(live_server):
    day = date(2032, 1, 9)
    bulk(live_server, [flight(f"LM{n}", "KII", "KJJ", day, n) for n in range(1, 8)])
    r = requests.get(
        live_server + "/api/routes",
        params={"origin": "KII", "destination": "KJJ", "date": day.isoformat(), "limit": 3},
        timeout=5,
    ).json()
    assert len(r["direct"]) == 3 and r["counts"]["direct"] == 7


def test_warming_fills_todays_and_tomorrows_keys(live_server, services, settings):
    r = requests.post(
        live_server + "/api/admin/cache/warm", headers={**ADMIN, "Prefer": "wait=10"}, timeout=15
    )
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "succeeded"
    configured = route_answers.popular_routes(services.cache, settings.POPULAR_ROUTES, 0)
    assert configured
    for origin, destination in configured:
        for day in (TODAY, TODAY + timedelta(days=1)):
            assert services.redis.exists(cache_keys.route_key(origin, destination, day))
    stats = requests.get(live_server + "/api/admin/cache/stats", headers=ADMIN, timeout=5).json()
    assert stats["keys"]["routes"] >= 2 * len(configured)
    assert set(stats["kinds"]) >= {"routes", "flights", "booking_details", "booking_pages"}


def test_most_searched_routes_are_warmed_too(live_server, services, settings):
    for _ in range(3):
        requests.get(
            live_server + "/api/routes",
            params={"origin": "KMM", "destination": "KNN", "date": TODAY.isoformat()},
            timeout=5,
        )
    # Counted in the ingress's process, and added to Redis by its next flush.
    deadline = time.monotonic() + 10 * FLUSH_INTERVAL_S
    while time.monotonic() < deadline:
        if ("KMM", "KNN") in route_answers.popular_routes(
            services.cache, "", settings.WARM_TOP_ROUTES
        ):
            break
        time.sleep(0.05)
    assert ("KMM", "KNN") in route_answers.popular_routes(
        services.cache, "", settings.WARM_TOP_ROUTES
    )


def test_a_booking_whose_flights_do_not_chain_fails_with_422(live_server):
    day = date(2032, 1, 10)
    bulk(
        live_server,
        [
            flight("BK1", "KPP", "KQQ", day, 8),
            flight("BK2", "KQQ", "KRR", day, 9),
            flight("BK3", "KQQ", "KRR", day, 14),
        ],
    )

    def book(ids):
        body = booking_body(origin="KPP", destination="KRR", flight_ids=ids)
        return post_booking(live_server, body, Prefer="wait=10")

    bad = book(["BK1-20320110", "BK2-20320110"])  # 0 min connection
    assert bad.status_code == 422, bad.text
    assert bad.headers["Content-Type"] == "application/problem+json"
    assert "shorter than" in bad.json()["detail"]
    job = wait_job(live_server, bad.headers["Location"])
    assert job["state"] == "failed" and job["error"]["status"] == 422
    good = book(["BK1-20320110", "BK3-20320110"])
    assert good.status_code == 201, good.text
    assert good.json()["result"]["booking"]["flight_ids"] == ["BK1-20320110", "BK3-20320110"]
