"""Admin authentication and per-IP rate limits, on real Redis."""

import threading
import uuid

import pytest
import redis

from core.services import connect_services
from core.settings import replace
from tests.conftest import ADMIN, bearer, booking_body, new_customer


def test_the_right_token_gets_in(client):
    assert client.get("/api/admin/locks", headers=ADMIN).status_code == 200


def test_wrong_tokens_and_schemes_are_refused(client):
    for header in ("Bearer wrong-token", "Basic dXNlcjpwYXNz", f"Bearer {'x' * 1000}", "Bearer "):
        r = client.get("/api/admin/locks", headers={"Authorization": header})
        assert r.status_code == 401, header
        assert r.mimetype == "application/problem+json"
        assert r.headers["WWW-Authenticate"].startswith("Bearer")


def test_no_configured_token_opens_nothing(settings, services):
    from ingress import create_app

    closed = create_app(replace(settings, ADMIN_TOKEN=""), services=services)
    for header in ("Bearer ", "Bearer anything", "Bearer rgk_anything"):
        r = closed.test_client().get("/api/admin/locks", headers={"Authorization": header})
        assert r.status_code == 401, header


def limited_app(settings, **limits):
    from ingress import create_app

    patched = replace(settings, **{"RATE_LIMIT_BOOKINGS": 50, "RATE_LIMIT_ROUTES": 30, **limits})
    return create_app(patched, services=connect_services(patched))


def client_for(app, ip):
    c = app.test_client()
    c.environ_base["REMOTE_ADDR"] = ip
    return c


@pytest.fixture
def fresh_ip():
    """A loopback address no other test has used, so budgets start full."""
    n = uuid.uuid4().int
    return f"127.{n % 250 + 1}.{n // 250 % 250 + 1}.{n // 62500 % 250 + 1}"


@pytest.fixture
def fresh_key(services):
    """A new customer's key: its budgets start full."""
    return bearer(new_customer(services.db)["api_key"])


@pytest.mark.slow(reason="spends a whole rate-limit budget")
def test_the_51st_booking_in_a_minute_is_a_429(settings, fresh_ip, fresh_key, services):
    c = client_for(limited_app(settings), fresh_ip)
    for n in range(50):
        r = c.post("/api/bookings", json=booking_body(), headers=fresh_key)
        assert r.status_code == 202, n
        assert r.headers["RateLimit-Limit"] == "50"
        assert r.headers["RateLimit-Remaining"] == str(49 - n)
        assert r.headers["Retry-After"] == "1"  # the job's, not the limiter's
    r = c.post("/api/bookings", json=booking_body(), headers=fresh_key)
    assert r.status_code == 429
    assert r.mimetype == "application/problem+json"
    assert r.get_json()["status"] == 429
    assert 0 < int(r.headers["Retry-After"]) <= 60
    assert r.headers["RateLimit-Remaining"] == "0"
    # Reads are not booking creation: still served.
    assert c.get("/api/bookings?limit=1", headers=fresh_key).status_code == 200
    # The budget is the key's, not the address's: another customer from the
    # same IP books on, while this one is refused from another IP too.
    other = bearer(new_customer(services.db)["api_key"])
    assert c.post("/api/bookings", json=booking_body(), headers=other).status_code == 202
    elsewhere = client_for(limited_app(settings), "127.0.0.1")
    assert (
        elsewhere.post("/api/bookings", json=booking_body(), headers=fresh_key).status_code == 429
    )


@pytest.mark.slow(reason="spends a whole rate-limit budget")
def test_two_ingress_processes_share_one_budget(settings, fresh_ip, fresh_key):
    first, second = limited_app(settings), limited_app(settings)  # two apps: two processes' worth

    def book(app):
        return client_for(app, fresh_ip).post(
            "/api/bookings", json=booking_body(), headers=fresh_key
        )

    assert all(book(first).status_code == 202 for _ in range(30))
    assert all(book(second).status_code == 202 for _ in range(20))
    assert book(second).status_code == 429
    assert book(first).status_code == 429


def test_another_ip_is_unaffected(settings, fresh_ip):
    app = limited_app(settings, RATE_LIMIT_ROUTES=3)
    params = "origin=DEL&destination=BLR&date=2032-02-01"
    for _ in range(3):
        assert client_for(app, fresh_ip).get(f"/api/routes?{params}").status_code == 200
    assert client_for(app, fresh_ip).get(f"/api/routes?{params}").status_code == 429
    other = fresh_ip.rsplit(".", 1)[0] + (".1" if not fresh_ip.endswith(".1") else ".2")
    assert client_for(app, other).get(f"/api/routes?{params}").status_code == 200


def test_forwarded_for_counts_only_behind_a_trusted_proxy(settings, fresh_ip):
    params = "origin=DEL&destination=BLR&date=2032-02-02"
    proxy = "127.0.0.9"
    untrusted = limited_app(settings, RATE_LIMIT_ROUTES=2)
    behind = limited_app(settings, RATE_LIMIT_ROUTES=2, TRUSTED_PROXIES="127.0.0.9/32")
    # Not trusted: spoofed X-Forwarded-For values do not buy fresh budgets.
    c = client_for(untrusted, fresh_ip)
    codes = [
        c.get(f"/api/routes?{params}", headers={"X-Forwarded-For": f"127.9.9.{n}"}).status_code
        for n in range(3)
    ]
    assert codes == [200, 200, 429]
    # Trusted proxy: each forwarded client has its own budget.
    c = client_for(behind, proxy)
    for n in range(2):
        for _ in range(2):
            assert (
                c.get(
                    f"/api/routes?{params}", headers={"X-Forwarded-For": f"{fresh_ip}, 127.8.{n}.1"}
                ).status_code
                == 200
            )
    assert (
        c.get(f"/api/routes?{params}", headers={"X-Forwarded-For": "127.8.0.1"}).status_code == 429
    )


def test_admin_and_bulk_budgets(settings, fresh_ip):
    app = limited_app(settings, RATE_LIMIT_ADMIN=3, RATE_LIMIT_BULK=2)
    c = client_for(app, fresh_ip)
    codes = [c.get("/api/admin/locks", headers=ADMIN).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    c = client_for(limited_app(settings, RATE_LIMIT_BULK=2), fresh_ip.rsplit(".", 1)[0] + ".250")
    bodies = [
        c.post("/api/admin/bookings/bulk", headers=ADMIN, json={"bookings": [booking_body()]})
        for _ in range(3)
    ]
    assert [r.status_code for r in bodies] == [202, 202, 429]


# -- declared budgets -------------------------------------------------------------------------


def declared_scopes(app, endpoint: str, method: str) -> list[str]:
    """The scopes of the budgets a request `method` to `endpoint` spends, in check order."""
    from ingress.security import _declared

    view = app.view_functions[endpoint]
    return [budget.scope for budget, methods in _declared(view) if not methods or method in methods]


def test_every_admin_view_spends_the_admin_budget_and_bulk_work_the_bulk_one_too(app):
    admin = [e for e in app.view_functions if e.startswith("admin.")]
    assert len(admin) >= 11
    for endpoint in admin:
        bulk = endpoint in ("admin.FlightImport", "admin.BookingImport", "admin.StatusUpdates")
        for method in app.view_functions[endpoint].view_class.methods:
            expected = ["admin", "bulk"] if bulk else ["admin"]
            assert declared_scopes(app, endpoint, method) == expected, (endpoint, method)


def test_the_four_transitions_share_one_budget_and_booking_reads_spend_none(app):
    for action in ("depart", "arrive", "deliver", "cancel"):
        assert declared_scopes(app, f"bookings.{action}_booking", "POST") == ["updates"]
    assert declared_scopes(app, "bookings.Bookings", "POST") == ["bookings"]
    assert declared_scopes(app, "bookings.Bookings", "GET") == ["lists"]  # a budget of its own
    assert declared_scopes(app, "flights.Routes", "HEAD") == ["routes"]


@pytest.fixture
def declarations(monkeypatch):
    """Declarations made in the test are forgotten after it (later apps start)."""
    from ingress import security

    monkeypatch.setattr(security, "DECLARED", list(security.DECLARED))


def test_a_budget_declared_on_no_registered_view_stops_the_app(settings, services, declarations):
    from ingress import create_app
    from ingress.security import MINUTE, rate_limit

    @rate_limit("RATE_LIMIT_ROUTES", MINUTE, scope="routes")
    def renamed_away():
        """A view whose route was dropped: its limit would silently go with it."""

    with pytest.raises(LookupError, match="renamed_away"):
        create_app(settings, services=services)


def test_a_budget_naming_no_setting_stops_the_app(settings, services, declarations):
    from flask import Flask
    from flask.views import MethodView

    from ingress.security import MINUTE, install_rate_limits, rate_limit

    class Misnamed(MethodView):
        @rate_limit("RATE_LIMIT_ROUTS", MINUTE, scope="routes")
        def get(self):
            return {}

    app = Flask(__name__)
    app.extensions["radiantgo"] = services
    app.add_url_rule("/misnamed", view_func=Misnamed.as_view("misnamed"))
    with pytest.raises(LookupError, match=r"Misnamed\.get names 'RATE_LIMIT_ROUTS', no setting"):
        install_rate_limits(app, settings)


# -- round trips ------------------------------------------------------------------------------


@pytest.fixture
def redis_sends(monkeypatch):
    """The packed commands this thread sends to Redis (one per round trip: a
    pipeline or a script call is one), whatever the client; the in-process
    flushers' threads are not counted."""
    sent, me = [], threading.get_ident()
    send = redis.connection.AbstractConnection.send_packed_command

    def counted(self, command, check_health=True):
        if threading.get_ident() == me:
            sent.append(command)
        return send(self, command, check_health)

    monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command", counted)
    return sent


def test_a_keyed_create_costs_two_redis_round_trips(app, services, redis_sends):
    """Issue 12: the cached key lookup and the rate limit are one script call,
    the job's queued record is the other (metrics are tallied in the process)."""
    key = bearer(new_customer(services.db)["api_key"])
    c = app.test_client()
    # The first request fills the key's cache entry and loads the scripts.
    assert c.post("/api/bookings", json=booking_body(), headers=key).status_code == 202
    users = services.cache.hit_stats()["users"]
    redis_sends.clear()
    r = c.post("/api/bookings", json=booking_body(), headers=key)
    assert r.status_code == 202 and r.headers["RateLimit-Remaining"]
    assert len(redis_sends) <= 2, redis_sends
    # The lookup read by the rate limit's script still counts as a cache hit.
    after = services.cache.hit_stats()["users"]
    assert (after["hits"], after["misses"]) == (users["hits"] + 1, users["misses"])


@pytest.mark.parametrize("change", ["rotate", "disable"])
def test_a_revoked_key_is_refused_at_once_and_then_limited_per_ip(
    settings, services, fresh_ip, change
):
    c = client_for(limited_app(settings, RATE_LIMIT_BOOKINGS=3), fresh_ip)
    made = new_customer(services.db)
    key, customer_id = bearer(made["api_key"]), made["customer_id"]
    for n in range(2):  # the second is a cache hit: looked up with the limit
        r = c.post("/api/bookings", json=booking_body(), headers=key)
        assert (r.status_code, r.headers["RateLimit-Remaining"]) == (202, str(2 - n))
    if change == "rotate":
        r = c.post(f"/api/admin/customers/{customer_id}/keys", headers=ADMIN)
    else:
        r = c.delete(f"/api/admin/customers/{customer_id}", headers=ADMIN)
    assert r.status_code in (200, 201)
    # The tombstone is a miss: MongoDB refuses the key, and the hit is the IP's.
    refused = c.post("/api/bookings", json=booking_body(), headers=key)
    assert (refused.status_code, refused.headers["RateLimit-Remaining"]) == (401, "2")
    if change == "rotate":  # the new key starts with a window of its own
        fresh = bearer(r.get_json()["api_key"])
        for n in range(2):  # a MongoDB lookup, then a cache hit
            r = c.post("/api/bookings", json=booking_body(), headers=fresh)
            assert (r.status_code, r.headers["RateLimit-Remaining"]) == (202, str(2 - n))


def test_a_valid_key_on_a_public_read_costs_one_round_trip_its_lookup(app, services, redis_sends):
    """Failed credentials are counted per IP (ingress.security): on failures only,
    so a valid key's read still costs just its cached lookup."""
    from tests.conftest import stored_booking

    ref_id = stored_booking(services)
    key = bearer(new_customer(services.db)["api_key"])
    c = app.test_client()

    def sends(headers) -> int:
        assert c.get(f"/api/bookings/{ref_id}", headers=headers).status_code == 200  # warm
        redis_sends.clear()
        assert c.get(f"/api/bookings/{ref_id}", headers=headers).status_code == 200
        return len(redis_sends)

    assert sends(key) == sends({}) + 1, redis_sends
