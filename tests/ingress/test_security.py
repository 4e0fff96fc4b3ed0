"""Admin authentication and per-IP rate limits, on real Redis."""

import uuid

import pytest

from core.services import connect_services
from core.settings import load_settings
from tests.conftest import ADMIN, booking_body


def admin_routes(app):
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/api/admin"):
            for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
                yield method, rule.rule


def test_every_admin_route_refuses_no_token_and_a_wrong_token(app, client):
    routes = list(admin_routes(app))
    assert len(routes) >= 8
    for method, path in routes:
        missing = client.open(path, method=method, json={})
        assert missing.status_code == 401, (method, path)
        assert missing.mimetype == "application/problem+json"
        assert missing.headers["WWW-Authenticate"].startswith("Bearer")
        for header in ("Bearer wrong-token", "Basic dXNlcjpwYXNz", f"Bearer {'x' * 1000}"):
            wrong = client.open(path, method=method, json={}, headers={"Authorization": header})
            assert wrong.status_code in (401, 403), (method, path, header)
        wrong = client.open(path, method=method, json={}, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 403, (method, path)


def test_the_right_token_gets_in(client):
    assert client.get("/api/admin/locks", headers=ADMIN).status_code == 200


def test_no_configured_token_opens_nothing(settings, services):
    from ingress import create_app

    closed = create_app(
        load_settings({}, **{**settings.__dict__, "ADMIN_TOKEN": ""}), services=services
    )
    r = closed.test_client().get("/api/admin/locks", headers={"Authorization": "Bearer "})
    assert r.status_code == 401
    r = closed.test_client().get("/api/admin/locks", headers={"Authorization": "Bearer anything"})
    assert r.status_code == 403


def limited_app(settings, **limits):
    from ingress import create_app

    patched = load_settings(
        {}, **{**settings.__dict__, "RATE_LIMIT_BOOKINGS": 50, "RATE_LIMIT_ROUTES": 30, **limits}
    )
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


def test_the_51st_booking_in_a_minute_is_a_429(settings, fresh_ip):
    c = client_for(limited_app(settings), fresh_ip)
    for n in range(50):
        r = c.post("/api/bookings", json=booking_body())
        assert r.status_code == 202, n
        assert r.headers["RateLimit-Limit"] == "50"
        assert r.headers["RateLimit-Remaining"] == str(49 - n)
        assert r.headers["Retry-After"] == "1"  # the job's, not the limiter's
    r = c.post("/api/bookings", json=booking_body())
    assert r.status_code == 429
    assert r.mimetype == "application/problem+json"
    assert r.get_json()["status"] == 429
    assert 0 < int(r.headers["Retry-After"]) <= 60
    assert r.headers["RateLimit-Remaining"] == "0"
    # Reads are not booking creation: still served.
    assert c.get("/api/bookings?limit=1").status_code == 200


def test_two_ingress_processes_share_one_budget(settings, fresh_ip):
    first, second = limited_app(settings), limited_app(settings)  # two apps: two processes' worth
    for _ in range(30):
        assert (
            client_for(first, fresh_ip).post("/api/bookings", json=booking_body()).status_code
            == 202
        )
    for _ in range(20):
        assert (
            client_for(second, fresh_ip).post("/api/bookings", json=booking_body()).status_code
            == 202
        )
    assert (
        client_for(second, fresh_ip).post("/api/bookings", json=booking_body()).status_code == 429
    )
    assert client_for(first, fresh_ip).post("/api/bookings", json=booking_body()).status_code == 429


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
