"""ingress/webhooks.py over the test client: endpoints per owner, secrets
shown once and rotated, test events, deliveries listed and retried."""

from __future__ import annotations

import secrets
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from core.clock import utcnow
from core.settings import replace
from core.webhook_endpoints import URL_REFUSED_SLUG
from tests.conftest import ADMIN, bearer, keyed_client, new_customer

URL = "https://203.0.113.7/hooks"  # never reached: nothing delivers in these tests
BODY = {"url": URL, "events": ["booking.created"]}


@pytest.fixture(autouse=True)
def _clean(services):
    yield
    for name in ("webhook_endpoints", "webhook_deliveries", "webhook_events"):
        services.db[name].delete_many({})


def _app_allowing_private(settings, services, allowed: bool):
    """An app on the session's clients, WEBHOOK_ALLOW_PRIVATE as `allowed`."""
    from dataclasses import replace as changed

    from ingress import create_app

    own = replace(settings, WEBHOOK_ALLOW_PRIVATE=allowed)
    return create_app(own, services=changed(services, settings=own))


@pytest.fixture
def private_ok(settings, services):
    """An app allowing private URLs (as the session's does: its receivers are local)."""
    return _app_allowing_private(settings, services, True)


@pytest.fixture
def private_refused(settings, services):
    """An app as production runs: WEBHOOK_ALLOW_PRIVATE off."""
    return _app_allowing_private(settings, services, False)


@pytest.fixture
def public_url(monkeypatch):
    """URL checks pass for every URL here (whether one may receive deliveries is
    core.webhook_targets's, tested there): the tests below are about who and what."""
    from core import webhook_targets

    monkeypatch.setattr(webhook_targets, "check_url", lambda url, *, allow_private: None)


def caller(app, services, role="customer"):
    made = new_customer(services.db, role=role)
    return keyed_client(app, bearer(made["api_key"])), made["customer_id"]


def created(client, **body) -> dict:
    r = client.post("/api/webhooks", json={**BODY, **body})
    assert r.status_code == 201, r.get_json()
    return r.get_json()


def delivery(services, endpoint_id: str, created_at: datetime, **fields) -> str:
    """A delivery stored as the delivery code stores one."""
    delivery_id = "dlv_" + secrets.token_hex(12)
    services.db.webhook_deliveries.insert_one(
        {
            "_id": delivery_id,
            "event_id": "msg_" + secrets.token_hex(12),
            "endpoint_id": endpoint_id,
            "type": "booking.created",
            "created_at": created_at,
            "state": "failed",
            "next_at": None,
            "attempts": [{"at": created_at, "status_code": 500, "duration_ms": 12, "error": None}],
            **fields,
        }
    )
    return delivery_id


def test_create_shows_the_secret_once(app, services, public_url):
    client, customer_id = caller(app, services)
    made = created(client, description="TMS")
    assert made["secret"].startswith("whsec_")
    assert made["owner"] == customer_id and made["all_bookings"] is False and made["enabled"]
    assert made["endpoint_id"].startswith("ep_") and made["version"] == 1
    listed = client.get("/api/webhooks").get_json()["items"]
    one = client.get(f"/api/webhooks/{made['endpoint_id']}").get_json()
    assert [e["endpoint_id"] for e in listed] == [made["endpoint_id"]]
    assert "secret" not in listed[0] and "secret" not in one and "secrets" not in one
    assert one["description"] == "TMS"


def test_another_owners_endpoint_is_a_404_on_every_route(app, services, public_url):
    mine, _ = caller(app, services)
    theirs, _ = caller(app, services)
    endpoint_id = created(mine)["endpoint_id"]
    delivery_id = delivery(services, endpoint_id, utcnow())
    base = f"/api/webhooks/{endpoint_id}"
    answers = [
        theirs.get(base),
        theirs.patch(base, json={"description": "x"}),
        theirs.delete(base),
        theirs.post(f"{base}/secret"),
        theirs.post(f"{base}/test"),
        theirs.get(f"{base}/deliveries"),
        theirs.post(f"{base}/deliveries/{delivery_id}/retry"),
    ]
    assert [r.status_code for r in answers] == [404] * 7
    assert theirs.get("/api/webhooks").get_json()["items"] == []
    assert mine.get(base).status_code == 200  # untouched


def test_all_bookings_is_refused_to_a_customer_and_granted_to_an_operator(
    app, services, public_url
):
    customer, _ = caller(app, services)
    r = customer.post("/api/webhooks", json={**BODY, "all_bookings": True})
    assert r.status_code == 403 and "all_bookings" in r.get_json()["detail"]
    endpoint_id = created(customer)["endpoint_id"]
    r = customer.patch(f"/api/webhooks/{endpoint_id}", json={"all_bookings": True})
    assert r.status_code == 403
    # The admin may not give a customer's endpoint every booking's events either.
    r = keyed_client(app, ADMIN).patch(f"/api/webhooks/{endpoint_id}", json={"all_bookings": True})
    assert r.status_code == 403
    operator, _ = caller(app, services, role="operator")
    assert created(operator, all_bookings=True)["all_bookings"] is True


def test_the_admin_sees_every_endpoint_and_owns_its_own_as_no_one(app, services, public_url):
    customer, _ = caller(app, services)
    theirs = created(customer)["endpoint_id"]
    admin = keyed_client(app, ADMIN)
    own = created(admin)
    assert own["owner"] is None and own["all_bookings"] is True
    r = admin.post("/api/webhooks", json={**BODY, "all_bookings": False})
    assert r.status_code == 422 and r.get_json()["type"].endswith("/all-bookings-required")
    first = admin.get("/api/webhooks?limit=1").get_json()
    second = admin.get(f"/api/webhooks?limit=1&cursor={first['next_cursor']}").get_json()
    assert {first["items"][0]["endpoint_id"], second["items"][0]["endpoint_id"]} == {
        theirs,
        own["endpoint_id"],
    }
    assert second["next_cursor"] is None
    assert (
        admin.patch(f"/api/webhooks/{theirs}", json={"description": "by admin"}).status_code == 200
    )
    assert admin.delete(f"/api/webhooks/{theirs}").status_code == 204
    assert customer.get(f"/api/webhooks/{theirs}").status_code == 404


def test_more_endpoints_than_the_cap_is_a_409(app, services, settings, public_url):
    client, _ = caller(app, services)
    for _ in range(settings.WEBHOOK_MAX_ENDPOINTS):
        created(client)
    r = client.post("/api/webhooks", json=BODY)
    assert r.status_code == 409, r.get_json()
    assert r.get_json()["type"].endswith("/endpoint-limit-reached")
    assert "WEBHOOK_MAX_ENDPOINTS" in r.get_json()["detail"]


def test_rotation_keeps_the_old_secret_for_the_overlap_and_three_at_most(
    app, services, settings, public_url
):
    client, _ = caller(app, services)
    made = created(client)
    path = f"/api/webhooks/{made['endpoint_id']}/secret"
    before = utcnow()
    rotated = client.post(path).get_json()
    assert rotated["secret"] != made["secret"] and rotated["version"] == 2
    doc = services.db.webhook_endpoints.find_one({"_id": made["endpoint_id"]})
    assert [s["secret"] for s in doc["secrets"]] == [rotated["secret"], made["secret"]]
    assert doc["secrets"][0]["expires_at"] is None
    overlap = timedelta(hours=settings.WEBHOOK_SECRET_OVERLAP_H)
    assert before + overlap <= doc["secrets"][1]["expires_at"] <= utcnow() + overlap
    latest = [client.post(path).get_json()["secret"] for _ in range(3)]
    doc = services.db.webhook_endpoints.find_one({"_id": made["endpoint_id"]})
    assert [s["secret"] for s in doc["secrets"]] == latest[::-1]  # 3, newest first
    assert "secret" not in client.get(f"/api/webhooks/{made['endpoint_id']}").get_json()


def test_rotation_drops_expired_secrets():
    from core.webhook_endpoints import rotated

    now = datetime(2030, 1, 1, tzinfo=UTC)
    secrets_ = [
        {"secret": "b", "created_at": now, "expires_at": None},
        {"secret": "a", "created_at": now, "expires_at": now - timedelta(seconds=1)},
    ]
    after = rotated(secrets_, "c", now=now, overlap=timedelta(hours=24))
    assert [(s["secret"], s["expires_at"]) for s in after] == [
        ("c", None),
        ("b", now + timedelta(hours=24)),
    ]


LOOPBACK = "http://127.0.0.1:9/hook"


def test_a_private_url_is_refused_without_the_setting(private_refused, services, private_ok):
    client, _ = caller(private_refused, services)
    for url in (LOOPBACK, "https://127.0.0.1/hook", "https://169.254.169.254/latest"):
        r = client.post("/api/webhooks", json={**BODY, "url": url})
        assert r.status_code == 422, (url, r.get_json())
        assert r.get_json()["type"].endswith("/" + URL_REFUSED_SLUG)
    allowed = keyed_client(private_ok, {"Authorization": client.environ_base["HTTP_AUTHORIZATION"]})
    made = created(allowed, url=LOOPBACK)
    assert made["url"] == LOOPBACK
    r = client.patch(f"/api/webhooks/{made['endpoint_id']}", json={"url": LOOPBACK})
    assert r.status_code == 422  # checked again on a change


@pytest.mark.parametrize(
    ("events", "status"),
    [
        (["*"], 201),
        (["booking.created", "bulk.finished"], 201),
        ([], 400),
        (["*", "booking.created"], 400),
        (["booking.created", "booking.created"], 400),
        (["webhook.test"], 400),
        (["booking.nope"], 400),
        ("*", 400),
    ],
)
def test_events_are_types_or_the_star_alone(app, services, public_url, events, status):
    client, _ = caller(app, services)
    r = client.post("/api/webhooks", json={**BODY, "events": events})
    assert r.status_code == status, r.get_json()
    if status == 400:
        assert "events" in r.get_json()["errors"]


@pytest.mark.parametrize(
    "body",
    [
        {**BODY, "secret": "mine"},
        {**BODY, "all_bookings": "true"},
        {**BODY, "url": "ftp://example.com/x"},
        {**BODY, "url": "https://example.com/a b"},
        {**BODY, "url": "https://example.com/" + "x" * 2048},
        {**BODY, "description": "x" * 257},
        {"events": ["*"]},
    ],
)
def test_bodies_outside_the_schema_are_a_400(app, services, body):
    client, _ = caller(app, services)
    assert client.post("/api/webhooks", json=body).status_code == 400


def test_re_enabling_clears_why_it_was_disabled(app, services, public_url):
    client, _ = caller(app, services)
    endpoint_id = created(client)["endpoint_id"]
    path = f"/api/webhooks/{endpoint_id}"
    off = client.patch(path, json={"enabled": False}).get_json()
    assert off["enabled"] is False and off["disabled_reason"] and off["disabled_at"]
    failing_since = utcnow() - timedelta(days=5)
    services.db.webhook_endpoints.update_one(
        {"_id": endpoint_id},
        {"$set": {"disabled_reason": "Failing for 5 days.", "failing_since": failing_since}},
    )
    assert client.post(f"{path}/test").status_code == 409  # disabled: nothing is sent
    on = client.patch(path, json={"enabled": True, "events": ["*"]}).get_json()
    assert on["enabled"] is True and on["events"] == ["*"]
    assert on["disabled_reason"] is None and on["failing_since"] is None
    assert on["disabled_at"] is None and on["version"] == 3


def test_a_patch_without_a_body_changes_nothing(app, services, public_url):
    client, _ = caller(app, services)
    made = created(client)
    r = client.patch(f"/api/webhooks/{made['endpoint_id']}")
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["version"] == 1 and r.get_json()["updated_at"] == made["updated_at"]


def test_a_test_event_is_recorded_for_its_endpoint_alone(app, services, public_url):
    client, customer_id = caller(app, services)
    endpoint_id = created(client)["endpoint_id"]
    r = client.post(f"/api/webhooks/{endpoint_id}/test")
    assert r.status_code == 202, r.get_json()
    answer = r.get_json()
    assert answer["type"] == "webhook.test" and answer["endpoint_id"] == endpoint_id
    event = services.db.webhook_events.find_one({"_id": answer["event_id"]})
    assert event["endpoint_id"] == endpoint_id and event["dispatched"] is False
    assert event["audience"] == [customer_id]
    assert event["data"] == {"endpoint_id": endpoint_id, "message": "A test event from RadiantGo."}


def test_retry_makes_a_delivery_pending_now(app, services, public_url):
    client, _ = caller(app, services)
    endpoint_id = created(client)["endpoint_id"]
    delivery_id = delivery(services, endpoint_id, utcnow(), state="failed", next_at=None)
    before = utcnow()
    r = client.post(f"/api/webhooks/{endpoint_id}/deliveries/{delivery_id}/retry")
    assert r.status_code == 202, r.get_json()
    assert r.get_json()["state"] == "pending" and r.get_json()["delivery_id"] == delivery_id
    doc = services.db.webhook_deliveries.find_one({"_id": delivery_id})
    assert doc["state"] == "pending"
    assert before <= doc["next_at"] <= utcnow()
    other = "dlv_" + secrets.token_hex(12)
    assert client.post(f"/api/webhooks/{endpoint_id}/deliveries/{other}/retry").status_code == 404


def test_deliveries_are_listed_newest_first_by_cursor(app, services, public_url):
    client, _ = caller(app, services)
    endpoint_id = created(client)["endpoint_id"]
    start = utcnow() - timedelta(hours=1)
    ids = [delivery(services, endpoint_id, start + timedelta(seconds=n // 2)) for n in range(7)]
    delivery(services, created(client)["endpoint_id"], start)  # another endpoint's
    seen, cursor = [], None
    while True:
        query = f"?limit=3&cursor={cursor}" if cursor else "?limit=3"
        page = client.get(f"/api/webhooks/{endpoint_id}/deliveries{query}").get_json()
        assert page["endpoint"] == {"enabled": True, "disabled_reason": None}
        seen += page["deliveries"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(d["delivery_id"] for d in seen) == sorted(ids)
    order = [(d["created_at"], d["delivery_id"]) for d in seen]
    assert order == sorted(order, reverse=True)
    first = seen[0]
    assert set(first) == {
        "delivery_id",
        "event_id",
        "event_type",
        "state",
        "created_at",
        "next_attempt_at",
        "attempts",
    }
    assert first["attempts"][0]["status_code"] == 500


def test_deleting_an_endpoint_deletes_its_deliveries(app, services, public_url):
    client, _ = caller(app, services)
    endpoint_id = created(client)["endpoint_id"]
    delivery(services, endpoint_id, utcnow())
    assert client.delete(f"/api/webhooks/{endpoint_id}").status_code == 204
    assert services.db.webhook_deliveries.count_documents({"endpoint_id": endpoint_id}) == 0
    assert client.get(f"/api/webhooks/{endpoint_id}").status_code == 404


def test_ids_in_paths_are_checked_whole(app, services):
    client, _ = caller(app, services)
    for path in ("/api/webhooks/ep_1", "/api/webhooks/ep_0123456789abcdef%0A"):
        r = client.get(path)
        assert r.status_code == 404 and "webhook endpoint id" in r.get_json()["detail"]
    r = client.post(f"/api/webhooks/ep_{uuid.uuid4().hex[:16]}/deliveries/dlv_x/retry")
    assert r.status_code == 404 and "delivery id" in r.get_json()["detail"]


def test_the_anonymous_caller_is_a_401(client, services):
    assert client.get("/api/webhooks").status_code == 401


def test_the_document_describes_the_payloads_receivers_get(app):
    document = app.test_client().get("/api/openapi.json").get_json()
    callback = document["paths"]["/api/webhooks"]["post"]["callbacks"]["event"]
    operation = callback["{$request.body#/url}"]["post"]
    headers = {p["name"] for p in operation["parameters"]}
    assert headers == {"webhook-id", "webhook-timestamp", "webhook-signature"}
    event = document["components"]["schemas"]["WebhookEvent"]
    assert set(event["required"]) == {"id", "type", "created_at", "data"}


def test_every_webhook_view_spends_the_webhooks_budget(app):
    from ingress.security import _declared

    views = {e: v for e, v in app.view_functions.items() if e.startswith("webhooks.")}
    assert len(views) == 6
    for endpoint, view in views.items():
        for method in view.view_class.methods:
            scopes = [b.scope for b, methods in _declared(view) if not methods or method in methods]
            assert scopes == ["webhooks"], (endpoint, method)
