"""Hostile input and abuse at the HTTP boundary: 4xx problems, never a 5xx;
credential guessing, shared Idempotency-Keys and waiting clients kept in bounds."""

import base64
import itertools
import json
import threading
import time
import uuid

import pytest

from core.services import connect_services
from core.settings import Settings, replace
from tests.conftest import ADMIN, CUSTOMER, OTHER_CUSTOMER, booking_body, keyed_client


def app_with(settings, **overrides):
    from ingress import create_app

    patched = replace(settings, **overrides)
    return create_app(patched, services=connect_services(patched))


def assert_4xx_problem(response, case):
    assert 400 <= response.status_code < 500, (case, response.status_code, response.get_data(True))
    assert response.mimetype == "application/problem+json", case


# -- no 5xx from client input -----------------------------------------------------------


def test_a_lone_surrogate_in_flight_ids_is_a_400(app, services):
    client = keyed_client(app, CUSTOMER)
    body = json.dumps(booking_body(flight_ids=["\ud800"]))  # escaped: \\ud800 on the wire
    before = services.db.jobs.estimated_document_count()
    r = client.post("/api/bookings", data=body, content_type="application/json")
    assert_4xx_problem(r, "surrogate")
    assert r.status_code == 400 and "flight_ids" in r.get_json()["errors"]
    assert services.db.jobs.estimated_document_count() == before


@pytest.mark.parametrize("day", ["9999-12-31", "0001-01-01", "1999-12-31", "2100-01-01"])
@pytest.mark.parametrize("path", ["/api/flights", "/api/routes"])
def test_dates_outside_the_calendar_are_a_400(client, path, day):
    r = client.get(f"{path}?origin=DEL&destination=BLR&date={day}")
    assert_4xx_problem(r, day)
    assert r.get_json()["errors"]["date"] == ["Must be a date between 2000-01-01 and 2099-12-31."]


def test_the_calendar_edges_themselves_are_served(client):
    for day in ("2000-01-01", "2099-12-31"):
        assert client.get(f"/api/routes?origin=DEL&destination=BLR&date={day}").status_code == 200


@pytest.mark.parametrize(
    "cursor",
    [
        base64.urlsafe_b64encode(b'["0001-01-01T00:00:00+05:00", "RG000000000"]').decode(),
        "-1-RG000000000",
        "99999999999999-RG000000000",
        "1700000000000-rg000000000",
        "1700000000000-RG000000000\n",
    ],
)
def test_cursors_not_of_the_documented_shape_are_a_400(app, cursor):
    r = keyed_client(app, CUSTOMER).get("/api/bookings", query_string={"cursor": cursor})
    assert_4xx_problem(r, cursor)
    assert r.get_json()["errors"] == {"cursor": ["Invalid cursor."]}


@pytest.mark.parametrize("millis", ["0000000000000", "9999999999999", "4102444800000"])
def test_every_cursor_of_that_shape_is_served_even_at_the_calendars_edges(app, millis):
    r = keyed_client(app, CUSTOMER).get(f"/api/bookings?cursor={millis}-RG000000000")
    assert r.status_code == 200, r.get_data(True)


def test_flight_times_outside_the_calendar_are_reported_per_item(live_server, services):
    import requests

    flight = {
        "flight_number": "CAL1",
        "airline": "Edge Air",
        "origin": "DEL",
        "destination": "BLR",
        "departure_ts": "9999-12-31T22:00:00-05:00",
        "arrival_ts": "9999-12-31T23:00:00-05:00",
    }
    r = requests.post(
        live_server + "/api/admin/flights/bulk",
        json={"flights": [flight]},
        headers={**ADMIN, "Prefer": "wait=10"},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    result = r.json()["result"]
    assert (result["succeeded"], result["failed"]) == (0, 1)
    assert result["errors"][0]["problem"]["status"] == 400
    assert services.db.flights.find_one({"flight_number": "CAL1"}) is None


# -- brute force and sharing ------------------------------------------------------------------


_addresses = itertools.count(1)


def client_in(app, net: int):
    """A test client at an address of 127.<net>.*.* no other client of this
    session had (a budget is per address: a shared one would start spent)."""
    c = app.test_client()
    n = next(_addresses)
    c.environ_base["REMOTE_ADDR"] = f"127.{net}.{n // 250 % 250}.{n % 250 + 1}"
    return c


def guessed(client, path: str, tries: int = 6) -> list[int]:
    """The statuses of GET `path` with `tries` wrong admin tokens."""
    guesses = [{"Authorization": f"Bearer guess-{n}"} for n in range(tries)]
    return [client.get(path, headers=headers).status_code for headers in guesses]


def test_guessing_the_admin_token_is_rate_limited_per_ip(settings):
    app = app_with(settings, RATE_LIMIT_AUTH_FAILURES=4)
    guesser = client_in(app, 77)
    assert guessed(guesser, "/api/admin/locks") == [401, 401, 401, 401, 429, 429]
    # Past the limit the token is not even compared: the right one is a 429
    # too, so the answers say nothing about the guesses.
    refused = guesser.get("/api/admin/locks", headers=ADMIN)
    assert refused.status_code == 429 and 0 < int(refused.headers["Retry-After"]) <= 300
    # From another address the admin is served.
    assert client_in(app, 74).get("/api/admin/locks", headers=ADMIN).status_code == 200


def test_guessing_api_keys_is_rate_limited_per_ip(settings):
    app = app_with(settings, RATE_LIMIT_BOOKINGS=3)
    guesser = client_in(app, 78)
    codes = [
        guesser.post(
            "/api/bookings", json=booking_body(), headers={"Authorization": f"Bearer rgk_{n}"}
        ).status_code
        for n in range(5)
    ]
    assert codes == [401, 401, 401, 429, 429]


def test_an_idempotency_key_is_the_clients_own_and_the_endpoints_own(app, services):
    key = {"Idempotency-Key": "1"}  # the key everybody picks first
    mine = keyed_client(app, CUSTOMER)
    first = mine.post("/api/bookings", json=booking_body(), headers=key)
    other = keyed_client(app, OTHER_CUSTOMER).post(
        "/api/bookings", json=booking_body(), headers=key
    )
    assert first.status_code == other.status_code == 202
    assert first.get_json()["job_id"] != other.get_json()["job_id"]
    # The same client and key on another endpoint: another job, not a 422.
    ref_id = first.get_json()["ref_id"]
    cancel = mine.post(f"/api/bookings/{ref_id}/cancel", json={}, headers=key)
    assert cancel.status_code == 202, cancel.get_data(True)
    assert cancel.get_json()["job_id"] != first.get_json()["job_id"]
    again = mine.post("/api/bookings", json=booking_body(), headers=key)
    assert again.get_json()["job_id"] == first.get_json()["job_id"]


def test_anonymous_idempotency_keys_are_scoped_by_ip(settings):
    app = app_with(settings, REQUIRE_API_KEYS=False)
    key = {"Idempotency-Key": f"anon-{uuid.uuid4().hex[:6]}"}
    jobs = []
    for address in ("127.79.0.1", "127.79.0.2", "127.79.0.1"):
        c = app.test_client()
        c.environ_base["REMOTE_ADDR"] = address
        jobs.append(c.post("/api/bookings", json=booking_body(), headers=key).get_json()["job_id"])
    assert jobs[0] != jobs[1] and jobs[0] == jobs[2]


@pytest.mark.slow(reason="waits out a Prefer: wait=3")
def test_waiters_beyond_the_cap_are_answered_at_once(settings, services):
    """One waiting slot (MAX_WAITERS=1) and a job no worker will run: the first
    poller waits; the second gets its answer at once, with Retry-After."""
    app = app_with(settings, MAX_WAITERS=1, QUEUE_NAMESPACE=f"nobody-{uuid.uuid4().hex[:6]}")
    customer = keyed_client(app, CUSTOMER)
    job_url = customer.post("/api/bookings", json=booking_body()).headers["Location"]
    waiter = app.extensions["job_waiter"]
    answers = {}

    def wait_long():
        answers["first"] = keyed_client(app, CUSTOMER).get(job_url, headers={"Prefer": "wait=3"})

    first = threading.Thread(target=wait_long)
    first.start()
    deadline = time.monotonic() + 5
    while waiter.in_use == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert waiter.in_use == 1
    started = time.monotonic()
    second = customer.get(job_url, headers={"Prefer": "wait=3"})
    late = customer.post("/api/bookings", json=booking_body(), headers={"Prefer": "wait=3"})
    elapsed = time.monotonic() - started
    first.join()
    assert elapsed < 1.5  # neither waited its 3 s
    assert second.status_code == 200 and second.headers["Retry-After"] == "1"
    assert "Preference-Applied" not in second.headers
    assert late.status_code == 202 and late.headers["Retry-After"] == "1"
    assert answers["first"].headers["Preference-Applied"] == "wait=3"
    assert waiter.in_use == 0


def test_job_polls_are_rate_limited_generously(settings, services):
    app = app_with(settings, RATE_LIMIT_JOBS=5)
    c = keyed_client(app, CUSTOMER)
    job_url = c.post("/api/bookings", json=booking_body()).headers["Location"]
    codes = [c.get(job_url).status_code for _ in range(6)]
    assert codes == [200] * 5 + [429]


def test_guessing_the_admin_token_at_metrics_is_limited_but_scraping_is_not(settings):
    app = app_with(settings, RATE_LIMIT_AUTH_FAILURES=4)
    scraper = client_in(app, 76)
    assert all(scraper.get("/metrics", headers=ADMIN).status_code == 200 for _ in range(6))
    assert guessed(client_in(app, 75), "/metrics") == [401, 401, 401, 401, 429, 429]


GUESSED_AT = [  # every kind of endpoint that reads credentials, public reads first
    ("GET", "/api/flights/RG0001-20261128"),
    ("GET", "/api/flights?origin=DEL&destination=BLR&date=2031-01-01"),
    ("GET", "/api/bookings/RG000000000"),
    ("GET", "/api/routes?origin=DEL&destination=BLR&date=2031-01-01"),
    ("GET", "/api/jobs/1bf8eaa3-5c5e-4b7e-9a57-0d8a3c9f2e10"),
    ("GET", "/api/bookings"),
    ("POST", "/api/bookings/RG000000000/cancel"),
    ("GET", "/metrics"),
    ("GET", "/api/admin/locks"),
]


@pytest.mark.parametrize("token", ["rgk_" + "x" * 43, "not-the-admin-token"])
def test_thirty_wrong_tokens_on_a_public_read_are_ten_401s_then_429s(settings, token):
    """The issue's guessing oracle: GET /api/flights/<id> read credentials without
    counting failures, so any token (the admin's too) could be tested there."""
    shipped = Settings.RATE_LIMIT_AUTH_FAILURES
    assert shipped == 10
    app = app_with(settings, RATE_LIMIT_AUTH_FAILURES=shipped)
    guesser = client_in(app, 73)
    wrong = {"Authorization": f"Bearer {token}"}
    answers = [guesser.get("/api/flights/RG0001-20261128", headers=wrong) for _ in range(30)]
    assert [r.status_code for r in answers] == [401] * 10 + [429] * 20
    assert all(r.mimetype == "application/problem+json" for r in answers)
    assert 0 < int(answers[-1].headers["Retry-After"]) <= 300
    if not token.startswith("rgk_"):  # and the right admin token, tried next, tells nothing
        assert guesser.get("/api/flights/RG0001-20261128", headers=ADMIN).status_code == 429


def test_failures_spread_over_endpoints_share_one_budget(settings, services):
    app = app_with(settings, RATE_LIMIT_AUTH_FAILURES=len(GUESSED_AT))
    guesser = client_in(app, 72)
    statuses = []
    for n, (method, path) in enumerate(GUESSED_AT * 2):
        wrong = {"Authorization": f"Bearer {'rgk_' if n % 2 else ''}guess-{n}"}
        statuses.append(guesser.open(path, method=method, headers=wrong, json={}).status_code)
    assert statuses == [401] * len(GUESSED_AT) + [429] * len(GUESSED_AT), statuses
    # A customer's valid key from that address is still served: 256 random bits
    # are not guessed, and customers behind one NAT keep working.
    keyed = client_in(app, 72)
    keyed.environ_base["REMOTE_ADDR"] = guesser.environ_base["REMOTE_ADDR"]
    assert keyed.get("/api/flights/RG0001-20261128", headers=CUSTOMER).status_code == 404
    assert keyed.get("/api/bookings?limit=1", headers=CUSTOMER).status_code == 200


def test_valid_credentials_and_none_are_never_counted(settings):
    app = app_with(settings, RATE_LIMIT_AUTH_FAILURES=2)
    c = client_in(app, 71)
    for headers in ({}, CUSTOMER, ADMIN) * 3:
        assert c.get("/api/flights/RG0001-20261128", headers=headers).status_code == 404
    assert guessed(c, "/api/flights/RG0001-20261128", tries=3) == [401, 401, 429]


@pytest.mark.parametrize(
    "path",
    [
        "/api/bookings?stauts=BOOKED",
        "/api/routes?origin=DEL&destination=BLR&date=2031-01-01&foo=1",
        "/api/flights?origin=DEL&destination=BLR&date=2031-01-01&=x",
        "/api/admin/customers?3=null",
    ],
)
def test_a_query_parameter_the_operation_does_not_take_is_a_400(app, path):
    r = keyed_client(app, ADMIN).get(path)
    assert_4xx_problem(r, path)
    assert r.status_code == 400 and "Unknown field." in str(r.get_json()["errors"])
