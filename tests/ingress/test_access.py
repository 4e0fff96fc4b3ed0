"""Customers, API keys and roles, black-box over HTTP on the real services.

Every role against every endpoint: allowed, or the right 401 / 403 / 404.
"""

import re
import uuid

import pytest

from core import bookings, queued_jobs
from core.cache_keys import api_key_key
from core.clock import utcnow
from core.customers import hash_api_key
from tests import conftest
from tests.conftest import (
    ADMIN,
    CUSTOMER,
    IDS,
    OPERATOR,
    OTHER_CUSTOMER,
    bearer,
    booking_body,
    new_customer,
)

ANONYMOUS: dict[str, str] = {}
BAD_KEY = {"Authorization": "Bearer rgk_" + "x" * 43}
ROLES = {
    "anonymous": ANONYMOUS,
    "owner": CUSTOMER,
    "other customer": OTHER_CUSTOMER,
    "operator": OPERATOR,
    "admin": ADMIN,
    "bad key": BAD_KEY,
}
PERSONAL = {
    "customer_name": "Zebulon Quartermaine",
    "customer_email": "zebulon.q@private.example",
}
NOTES = "handled by crew member Ximena"


def stored_booking(services, owner: str | None = None, **fields) -> str:
    """A BOOKED booking straight in the database, owned by customer `owner` (by IDS name)."""
    customer_id = IDS[owner] if owner else None
    return conftest.stored_booking(services, customer_id=customer_id, **PERSONAL, **fields)


def call(client, method: str, path: str, headers: dict, body=None):
    kwargs = {"headers": headers}
    if method == "POST":
        kwargs["json"] = {} if body is None else body
    return client.open(path, method=method, **kwargs)


def expect(response, status: int, case) -> None:
    assert response.status_code == status, (case, response.status_code, response.get_data(True))
    if status in (401, 403, 404):
        assert response.mimetype == "application/problem+json", case
        assert response.get_json()["status"] == status
    if status == 401:
        assert response.headers["WWW-Authenticate"].startswith("Bearer"), case


# (method, path template, body, expected status per role). {ref} is a fresh
# BOOKED booking of the owner for each case, {job} a job the owner submitted.
MATRIX = [
    (
        "POST",
        "/api/bookings",
        booking_body(),
        {
            "anonymous": 401,
            "owner": 202,
            "other customer": 202,
            "operator": 403,
            "admin": 403,
            "bad key": 401,
        },
    ),
    (
        "GET",
        "/api/bookings",
        None,
        {
            "anonymous": 401,
            "owner": 200,
            "other customer": 200,
            "operator": 200,
            "admin": 200,
            "bad key": 401,
        },
    ),
    (
        "GET",
        "/api/bookings/{ref}",
        None,
        {
            "anonymous": 200,
            "owner": 200,
            "other customer": 200,
            "operator": 200,
            "admin": 200,
            "bad key": 401,
        },
    ),
    *[
        (
            "POST",
            f"/api/bookings/{{ref}}/{action}",
            {},
            {
                "anonymous": 401,
                "owner": 403,
                "other customer": 403,
                # Allowed: refused by the state machine (409) unless the booking
                # is where this action applies; depart applies to BOOKED.
                "operator": 202 if action == "depart" else 409,
                "admin": 202 if action == "depart" else 409,
                "bad key": 401,
            },
        )
        for action in ("depart", "arrive", "deliver")
    ],
    (
        "POST",
        "/api/bookings/{ref}/cancel",
        {"reason": "no longer needed"},
        {
            "anonymous": 401,
            "owner": 202,
            "other customer": 404,
            "operator": 202,
            "admin": 202,
            "bad key": 401,
        },
    ),
    (
        "GET",
        "/api/jobs/{job}",
        None,
        {
            "anonymous": 401,
            "owner": 200,
            "other customer": 404,
            "operator": 200,
            "admin": 200,
            "bad key": 401,
        },
    ),
    (
        "GET",
        "/api/flights?origin=DEL&destination=BLR&date=2031-01-01",
        None,
        {role: 401 if role == "bad key" else 200 for role in ROLES},
    ),
    (
        "GET",
        "/api/routes?origin=DEL&destination=BLR&date=2031-01-01",
        None,
        {role: 401 if role == "bad key" else 200 for role in ROLES},
    ),
    ("GET", "/health", None, dict.fromkeys(ROLES, 200)),
    (
        "POST",
        "/api/admin/bookings/status/bulk",
        {"updates": [{"ref_id": "RG000000000", "newStatus": "DEPARTED"}]},
        {
            "anonymous": 401,
            "owner": 403,
            "other customer": 403,
            "operator": 202,
            "admin": 202,
            "bad key": 401,
        },
    ),
]
CASES = [
    pytest.param(method, path, body, role, status, id=f"{method} {path} as {role}")
    for method, path, body, statuses in MATRIX
    for role, status in statuses.items()
]


@pytest.mark.parametrize(("method", "path", "body", "role", "status"), CASES)
def test_role_by_endpoint(client, services, method, path, body, role, status):
    ref_id = stored_booking(services, "customer")
    job = client.post("/api/bookings", json=booking_body(), headers=CUSTOMER).get_json()
    path = path.format(ref=ref_id, job=job["job_id"])
    expect(call(client, method, path, ROLES[role], body), status, (method, path, role))


def admin_routes(app):
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/api/admin"):
            for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
                yield method, rule.rule.replace("<customer_id:customer_id>", IDS["other_customer"])


def test_every_admin_route_takes_the_admin_token_only(app, client):
    routes = list(admin_routes(app))
    assert len(routes) >= 12
    for method, path in routes:
        operator_allowed = path == "/api/admin/bookings/status/bulk"
        for role, headers in ROLES.items():
            if role == "admin" or (role == "operator" and operator_allowed):
                continue
            status = 401 if role in ("anonymous", "bad key") else 403
            expect(call(client, method, path, headers), status, (method, path, role))
    # Read-only ones, for the admin (writes have tests of their own).
    for path in ("/api/admin/locks", "/api/admin/customers", "/api/admin/performance"):
        expect(client.get(path, headers=ADMIN), 200, path)


def test_every_view_under_api_declares_who_may_call_it(app):
    """A view without a declared permission would be open to anyone by accident."""
    unguarded = []
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/") or rule.rule.startswith(("/api/docs", "/api/open")):
            continue
        view = app.view_functions[rule.endpoint]
        view_class = getattr(view, "view_class", None)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            handler = getattr(view_class, method.lower(), view) if view_class else view
            if not hasattr(handler, "permission"):
                unguarded.append((method, rule.rule))
    assert not unguarded


# -- public tracking ----------------------------------------------------------------


def test_tracking_view_for_strangers_and_the_full_booking_for_the_owner(client, services):
    ref_id = stored_booking(services, "customer", flight_ids=None)
    for headers in (ANONYMOUS, OTHER_CUSTOMER):
        view = client.get(f"/api/bookings/{ref_id}", headers=headers).get_json()
        assert set(view) == {*bookings.TRACKING_FIELDS, "events"}
        at_ts = view["events"][0]["at_ts"]
        assert view["events"] == [
            {
                "code": "BKD",
                "status": "BOOKED",
                "location": None,
                "at_ts": at_ts,
                "occurred_at": None,
            }
        ]
    for headers in (CUSTOMER, OPERATOR, ADMIN):
        full = client.get(f"/api/bookings/{ref_id}", headers=headers).get_json()
        assert full["customer_email"] == PERSONAL["customer_email"]
        assert full["customer_id"] == IDS["customer"]


def test_no_personal_field_appears_in_any_anonymous_answer(app, client, services, worker):
    """A booking full of personal data, cancelled with a reason and handled with notes;
    then every GET and POST of the API, anonymously: not one byte of it comes back."""
    created = client.post(
        "/api/bookings", json=booking_body(**PERSONAL), headers={**CUSTOMER, "Prefer": "wait=10"}
    )
    assert created.status_code == 201, created.get_data(True)
    job_id = created.get_json()["job_id"]
    ref_id = created.get_json()["result"]["booking"]["ref_id"]
    departed = client.post(
        f"/api/bookings/{ref_id}/depart",
        json={"location": "DEL", "notes": NOTES},
        headers={**OPERATOR, "Prefer": "wait=10"},
    )
    assert departed.status_code == 200, departed.get_data(True)
    cancelled = client.post(
        f"/api/bookings/{ref_id}/cancel",
        json={"reason": NOTES + " (cancel)"},
        headers={**CUSTOMER, "Prefer": "wait=10"},
    )
    assert cancelled.status_code == 200, cancelled.get_data(True)
    secrets = [*PERSONAL.values(), NOTES, IDS["customer"]]
    answers = 0
    for rule in app.url_map.iter_rules():
        path = re.sub(r"<(?:\w+:)?ref_id>", ref_id, rule.rule)
        path = re.sub(r"<(?:\w+:)?job_id>", job_id, path)
        path = re.sub(r"<[^>]+>", ref_id, path)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            for query in ("", f"?origin=DEL&destination=BLR&date=2031-01-01&ref_id={ref_id}"):
                text = call(client, method, path + query, ANONYMOUS).get_data(as_text=True)
                answers += 1
                leaked = [s for s in secrets if s in text]
                assert not leaked, (method, path, leaked)
    assert answers > 40
    # The same booking, as its owner: everything is there (the secrets are real).
    full = client.get(f"/api/bookings/{ref_id}", headers=CUSTOMER).get_data(as_text=True)
    assert all(s in full for s in secrets)


# -- customers and keys -----------------------------------------------------------------


def test_the_admin_creates_lists_rotates_and_disables_customers(client, services):
    made = client.post(
        "/api/admin/customers",
        json={"name": "Acme Forwarding", "email": "ops@acme.example", "role": "customer"},
        headers=ADMIN,
    )
    assert made.status_code == 201, made.get_data(True)
    body = made.get_json()
    assert body["role"] == "customer" and body["active"] is True
    key, customer_id = body["api_key"], body["customer_id"]
    stored = services.db.customers.find_one({"_id": customer_id})
    assert stored["key_hash"] == hash_api_key(key)
    assert key not in str(stored)  # only the hash is kept

    listed, cursor = [], None
    while True:
        query = "?limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = client.get("/api/admin/customers" + query, headers=ADMIN).get_json()
        listed += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    mine = [c for c in listed if c["customer_id"] == customer_id]
    assert len(mine) == 1 and "api_key" not in mine[0] and "key_hash" not in mine[0]
    assert len({c["customer_id"] for c in listed}) == len(listed)

    rotated = client.post(f"/api/admin/customers/{customer_id}/keys", headers=ADMIN)
    assert rotated.status_code == 201
    new_key = rotated.get_json()["api_key"]
    assert new_key != key
    assert client.get("/api/bookings", headers=bearer(key)).status_code == 401
    assert client.get("/api/bookings", headers=bearer(new_key)).status_code == 200

    disabled = client.delete(f"/api/admin/customers/{customer_id}", headers=ADMIN)
    assert disabled.status_code == 200 and disabled.get_json()["active"] is False
    assert client.get("/api/bookings", headers=bearer(new_key)).status_code == 401
    again = client.delete(f"/api/admin/customers/{customer_id}", headers=ADMIN)
    assert again.status_code == 200  # idempotent
    refused = client.post(f"/api/admin/customers/{customer_id}/keys", headers=ADMIN)
    assert refused.status_code == 409
    for path in ("/api/admin/customers/cus_0000000000000000", "/api/admin/customers/nobody"):
        assert client.delete(path, headers=ADMIN).status_code == 404
        assert client.post(path + "/keys", headers=ADMIN).status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        {"name": "X", "email": "x@example.com", "role": "admin"},
        {"name": "X", "email": "not-an-email", "role": "customer"},
        {"name": "", "email": "x@example.com", "role": "customer"},
        {"email": "x@example.com", "role": "customer"},
        {"name": "X", "email": "x@example.com", "role": "customer", "api_key": "mine"},
    ],
)
def test_a_bad_customer_is_a_400(client, body):
    r = client.post("/api/admin/customers", json=body, headers=ADMIN)
    assert r.status_code == 400 and r.mimetype == "application/problem+json"


@pytest.mark.parametrize("change", ["rotate", "disable"])
def test_a_revoked_key_fails_on_the_very_next_request_despite_the_cache(client, services, change):
    made = new_customer(services.db)
    key, customer_id = made["api_key"], made["customer_id"]
    for _ in range(2):  # the second lookup is a cache hit
        assert client.get("/api/bookings?limit=1", headers=bearer(key)).status_code == 200
    cached = services.redis.get(api_key_key(hash_api_key(key)))
    assert cached and customer_id in cached
    if change == "rotate":
        r = client.post(f"/api/admin/customers/{customer_id}/keys", headers=ADMIN)
    else:
        r = client.delete(f"/api/admin/customers/{customer_id}", headers=ADMIN)
    assert r.status_code in (200, 201)
    refused = client.get("/api/bookings?limit=1", headers=bearer(key))
    assert refused.status_code == 401
    assert 'error="invalid_token"' in refused.headers["WWW-Authenticate"]


def test_a_reader_holding_the_old_record_cannot_refill_the_cache(services):
    """The race the fence is for: a lookup read the customer before the rotation
    and writes its cache entry after it. The entry is refused."""
    from core import customers

    made = new_customer(services.db)
    key, customer_id = made["api_key"], made["customer_id"]
    before = services.db.customers.find_one({"_id": customer_id})
    customers.rotate_key(services.db, services.cache, customer_id, now=utcnow(), ttl=1800)
    cache_key = api_key_key(hash_api_key(key))
    stale = {"role": "customer", "customer_id": customer_id}
    assert services.cache.set_versioned(cache_key, before["version"], stale, 1800) is False
    assert customers.authenticate(services.db, services.cache, key, 1800) is None


@pytest.mark.parametrize("change", ["rotate", "disable"])
def test_the_fence_survives_clearing_the_cache(client, services, change):
    """Rotate or disable, clear the cache, then the racing lookup's fill: the
    clear left the fence (the entry's tombstone), so the old key stays refused."""
    from core import customers

    made = new_customer(services.db)
    key, customer_id = bearer(made["api_key"]), made["customer_id"]
    assert client.get("/api/bookings?limit=1", headers=key).status_code == 200  # cached
    before = services.db.customers.find_one({"_id": customer_id})  # the racing lookup's read
    if change == "rotate":
        r = client.post(f"/api/admin/customers/{customer_id}/keys", headers=ADMIN)
    else:
        r = client.delete(f"/api/admin/customers/{customer_id}", headers=ADMIN)
    assert r.status_code in (200, 201)
    cleared = client.delete("/api/admin/cache/clear", headers=ADMIN)
    assert cleared.status_code == 200 and cleared.get_json()["deleted"] >= 1
    cache_key = api_key_key(hash_api_key(made["api_key"]))
    fenced = services.redis.get(cache_key)
    assert fenced == f"{before['version'] + 1}|", fenced  # the value gone, the fence kept
    stale = {"role": "customer", "customer_id": customer_id}
    assert services.cache.set_versioned(cache_key, before["version"], stale, 1800) is False
    assert customers.authenticate(services.db, services.cache, made["api_key"], 1800) is None
    assert client.get("/api/bookings?limit=1", headers=key).status_code == 401


def test_clearing_the_cache_drops_values_and_keeps_every_fence(client, services):
    """Booking details are versioned too: a clear leaves each entry's version."""
    details, fenced = "booking:details:RGCLEAR0001", "booking:details:RGCLEAR0002"
    services.cache.set_versioned(details, 3, {"ref_id": "RGCLEAR0001"}, 60)
    services.cache.invalidate_versioned(fenced, 5, 60)
    services.redis.set("flights:CLR1-20320101", "{}", ex=60)
    assert client.delete("/api/admin/cache/clear", headers=ADMIN).status_code == 200
    assert services.redis.get(details) == "3|" and 0 < services.redis.ttl(details) <= 60
    assert services.redis.get(fenced) == "5|"
    assert not services.redis.exists("flights:CLR1-20320101")
    assert services.cache.get(details, "booking_details") is None  # a miss, as before
    assert services.cache.set_versioned(fenced, 4, {"ref_id": "RGCLEAR0002"}, 60) is False
    assert services.cache.set_versioned(details, 3, {"ref_id": "RGCLEAR0001"}, 60) is True


# -- scoping ------------------------------------------------------------------------------


def test_bookings_and_jobs_record_their_customer_and_lists_stay_apart(client, services, worker):
    origin = "ZQA"
    mine = client.post(
        "/api/bookings",
        json=booking_body(origin=origin),
        headers={**CUSTOMER, "Prefer": "wait=10"},
    ).get_json()
    theirs = client.post(
        "/api/bookings",
        json=booking_body(origin=origin),
        headers={**OTHER_CUSTOMER, "Prefer": "wait=10"},
    ).get_json()
    assert services.db.jobs.find_one({"_id": mine["job_id"]})["customer_id"] == IDS["customer"]
    my_ref = mine["result"]["booking"]["ref_id"]
    assert services.db.bookings.find_one({"ref_id": my_ref})["customer_id"] == IDS["customer"]
    their_ref = theirs["result"]["booking"]["ref_id"]

    def listed(headers, **query):
        q = "&".join(f"{k}={v}" for k, v in {"origin": origin, **query}.items())
        page = client.get(f"/api/bookings?{q}", headers=headers).get_json()
        return {b["ref_id"] for b in page["items"]}

    assert listed(CUSTOMER) == {my_ref}
    assert listed(CUSTOMER, status="BOOKED") == {my_ref}
    assert listed(CUSTOMER, status="CANCELLED") == set()
    assert listed(OTHER_CUSTOMER) == {their_ref}
    assert listed(OPERATOR) == listed(ADMIN) == {my_ref, their_ref}
    figures = client.get("/api/admin/performance", headers=ADMIN).get_json()
    assert figures["customers"][IDS["customer"]]["requests"] >= 2


def test_idempotency_keys_belong_to_their_customer(client):
    key = {"Idempotency-Key": f"order-{uuid.uuid4().hex[:6]}"}
    first = client.post("/api/bookings", json=booking_body(), headers={**CUSTOMER, **key})
    replay = client.post("/api/bookings", json=booking_body(), headers={**CUSTOMER, **key})
    other = client.post("/api/bookings", json=booking_body(), headers={**OTHER_CUSTOMER, **key})
    assert first.status_code == replay.status_code == other.status_code == 202
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.get_json()["job_id"] == first.get_json()["job_id"]
    assert other.get_json()["job_id"] != first.get_json()["job_id"]
    assert "Idempotent-Replayed" not in other.headers


def test_bookings_without_an_owner_are_for_operators_and_the_admin(client, services):
    ref_id = stored_booking(services, owner=None)
    for headers in (OPERATOR, ADMIN):
        assert client.get(f"/api/bookings/{ref_id}", headers=headers).get_json()["customer_name"]
    tracked = client.get(f"/api/bookings/{ref_id}", headers=CUSTOMER).get_json()
    assert "customer_name" not in tracked
    r = client.post(f"/api/bookings/{ref_id}/cancel", json={}, headers=CUSTOMER)
    assert r.status_code == 404


def test_a_cancel_by_a_stranger_is_not_found_even_in_the_worker(services):
    """The ingress already answers 404; the worker checks again under the lock."""
    from core.errors import NotFound

    ref_id = stored_booking(services, "customer")
    with pytest.raises(NotFound):
        conftest.moved_booking(services, ref_id, "CANCELLED", owner=IDS["other_customer"])
    assert services.db.bookings.find_one({"ref_id": ref_id})["status"] == "BOOKED"


def test_bulk_bookings_belong_to_the_customer_named(client, services, worker):
    r = client.post(
        "/api/admin/bookings/bulk",
        json={"customer_id": IDS["customer"], "bookings": [booking_body(), booking_body()]},
        headers={**ADMIN, "Prefer": "wait=10"},
    )
    assert r.status_code == 200, r.get_data(True)
    refs = [item["ref_id"] for item in r.get_json()["result"]["items"]]
    for ref_id in refs:
        assert services.db.bookings.find_one({"ref_id": ref_id})["customer_id"] == IDS["customer"]
    for owner in (IDS["operator"], "cus_0000000000000000"):
        refused = client.post(
            "/api/admin/bookings/bulk",
            json={"customer_id": owner, "bookings": [booking_body()]},
            headers=ADMIN,
        )
        assert refused.status_code == 404, owner


# -- the document, and keys not required ---------------------------------------------------


def test_the_openapi_document_declares_who_may_call_what(client):
    spec = client.get("/api/openapi.json").get_json()
    assert {"apiKey", "adminToken"} <= set(spec["components"]["securitySchemes"])
    paths = spec["paths"]
    create = paths["/api/bookings"]["post"]
    assert (create["security"], create["x-roles"]) == ([{"apiKey": []}], ["customer"])
    depart = paths["/api/bookings/{ref_id}/depart"]["post"]
    assert depart["x-roles"] == ["operator", "admin"]
    assert paths["/api/admin/locks"]["get"]["security"] == [{"adminToken": []}]
    assert {} in paths["/api/bookings/{ref_id}"]["get"]["security"]  # public tracking
    assert "401" in create["responses"] and "403" in create["responses"]


def test_without_required_keys_a_keyless_caller_books_but_never_administers(settings, services):
    from core.services import connect_services
    from core.settings import replace
    from ingress import create_app

    keyless = replace(settings, REQUIRE_API_KEYS=False)
    open_app = create_app(keyless, services=connect_services(keyless))
    c = open_app.test_client()
    r = c.post("/api/bookings", json=booking_body())
    assert r.status_code == 202
    queued = queued_jobs.find_job(services.db, services.redis, r.get_json()["job_id"])
    assert queued["customer_id"] is None
    assert c.get(r.headers["Location"]).status_code == 200
    assert c.get("/api/bookings?limit=1").status_code == 200
    assert c.get("/api/admin/locks").status_code == 401
    assert c.get("/api/bookings?limit=1", headers=BAD_KEY).status_code == 401
    paths = c.get("/api/openapi.json").get_json()["paths"]
    assert {} in paths["/api/bookings"]["post"]["security"]
    assert {} not in paths["/api/admin/locks"]["get"]["security"]
