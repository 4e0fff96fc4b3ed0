"""The door (ingress.overload) in the app: what it sheds and what never, how
a shed request is answered and counted, and what the OpenAPI document says.
The slot is taken by hand (the guard's own admit), so nothing here is timed;
tests/system/test_overload.py sheds under gunicorn."""

from __future__ import annotations

import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from core import metrics, queues
from core.overload import IN_FLIGHT, Admission
from core.settings import replace
from ingress import create_app
from ingress.overload import NEVER_SHED
from tests.conftest import ADMIN, CUSTOMER, booking_body


@pytest.fixture(scope="module")
def one_slot(settings, services):
    """An app whose in-flight limit is one."""
    limited = replace(
        settings,
        OVERLOAD_SHEDDING=True,
        OVERLOAD_MIN_LIMIT=1,
        OVERLOAD_INITIAL_LIMIT=1,
        OVERLOAD_MAX_LIMIT=1,
    )
    return create_app(limited, services=services)


@pytest.fixture
def slot_taken(one_slot):
    guard = one_slot.extensions["overload_guard"]
    taken = guard.admit(0.0, None)
    assert isinstance(taken, Admission)
    yield one_slot
    guard.done(taken, 0.001)


def test_a_shed_request_is_a_503_overloaded_problem_before_authentication(slot_taken):
    client = slot_taken.test_client()
    for r in (
        client.post("/api/bookings", json=booking_body()),  # no credentials: not a 401
        client.get("/api/flights", headers=CUSTOMER),  # reads are shed too
        client.get("/api/jobs/not-a-job", headers=CUSTOMER),  # not a 404
    ):
        assert r.status_code == 503, r.get_data(True)
        assert r.mimetype == "application/problem+json"
        assert r.headers["Retry-After"] == "1"
        problem = r.get_json()
        assert problem["type"] == "https://radiantgo.dev/problems/overloaded"
        assert problem["status"] == 503 and problem["instance"] == r.request.path


def test_operators_endpoints_are_never_shed(slot_taken):
    client = slot_taken.test_client()
    assert client.get("/health").status_code in (200, 503)
    assert client.get("/health").mimetype == "application/json"  # the health answer itself
    assert client.get("/metrics", headers=ADMIN).status_code == 200
    assert client.get("/api/admin/cache/stats", headers=ADMIN).status_code == 200
    assert client.get("/api/openapi.json").status_code == 200
    assert client.get("/api/docs").status_code == 200


def test_a_request_admitted_after_the_slot_is_given_back_is_served(one_slot):
    r = one_slot.test_client().get("/api/flights", headers=CUSTOMER)
    assert r.status_code == 400  # served: the view's own answer (day is required)
    assert one_slot.extensions["overload_guard"].in_flight == 0  # given back after


def shed_counter(client) -> dict[tuple[str, str], float]:
    text = client.get("/metrics", headers=ADMIN).get_data(True)
    return {
        (s.labels["endpoint"], s.labels["reason"]): s.value
        for family in text_string_to_metric_families(text)
        if family.name == "radiantgo_requests_shed"
        for s in family.samples
    }


def test_shed_requests_are_counted_on_metrics_by_endpoint_and_reason(one_slot):
    client = one_slot.test_client()
    before = shed_counter(client).get(("GET /api/flights", IN_FLIGHT), 0)
    guard = one_slot.extensions["overload_guard"]
    taken = guard.admit(0.0, None)
    try:
        assert client.get("/api/flights", headers=CUSTOMER).status_code == 503
    finally:
        guard.done(taken, 0.001)
    assert shed_counter(client)[("GET /api/flights", IN_FLIGHT)] == before + 1


def test_every_operation_that_may_be_shed_documents_its_503(one_slot):
    client = one_slot.test_client()
    document = client.get("/api/openapi.json").get_json()
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            answer = operation["responses"].get("503", {})
            if path.startswith(NEVER_SHED):
                assert "overloaded" not in answer.get("description", ""), (method, path)
                continue
            assert "overloaded" in answer["description"], (method, path)
            assert "Retry-After" in answer["headers"], (method, path)
            content = answer["content"]["application/problem+json"]["schema"]
            assert content == {"$ref": "#/components/schemas/Problem"}, (method, path)


def test_with_shedding_off_nothing_is_shed_or_documented(settings, services):
    app = create_app(replace(settings, OVERLOAD_SHEDDING=False), services=services)
    assert "overload_guard" not in app.extensions
    document = app.test_client().get("/api/openapi.json").get_json()
    assert "503" not in document["paths"]["/api/routes"]["get"]["responses"]


def test_writes_are_shed_while_the_workers_are_behind_and_reads_are_served(
    isolated_stack, services
):
    stack = isolated_stack("backlog", OVERLOAD_SHEDDING=True, OVERLOAD_BACKLOG_TARGET_S=1.0)
    client = stack.client()
    three_seconds_behind(client, stack, services)
    deadline = time.monotonic() + 10  # the sampler looks once a second
    while True:
        r = client.post("/api/bookings", json=booking_body(), headers=CUSTOMER)
        if r.status_code == 503:
            break
        assert r.status_code == 202 and time.monotonic() < deadline, r.get_data(True)
        time.sleep(0.1)
    assert r.get_json()["type"].endswith("/overloaded") and r.headers["Retry-After"] == "1"
    assert client.get("/api/flights", headers=CUSTOMER).status_code == 400  # a read: served


def test_a_burst_after_a_quiet_spell_is_not_shed_as_a_backlog(isolated_stack, services):
    """The backlog is judged at what the workers do when busy (their busiest
    second lately), not at their mean over a window that was mostly idle:
    30 jobs behind workers that took 10 in a second is a 3 s backlog, below a
    5 s target (at the mean, 1/s, it would be 30 s and shed every write)."""
    stack = isolated_stack("burst", OVERLOAD_SHEDDING=True, OVERLOAD_BACKLOG_TARGET_S=5.0)
    app = stack.app()
    client = app.test_client()
    three_seconds_behind(client, stack, services)
    gate = app.extensions["overload_guard"].backlog
    deadline = time.monotonic() + 10  # the sampler looks once a second
    while gate.backlog_s == 0:
        assert time.monotonic() < deadline, "the backlog was never sampled"
        time.sleep(0.1)
    assert 3.0 <= gate.backlog_s < 5.0  # 30 (or the few more posted meanwhile) at 10/s
    r = client.post("/api/bookings", json=booking_body(), headers=CUSTOMER)
    assert r.status_code == 202, r.get_data(True)


def three_seconds_behind(client, stack, services) -> None:
    """No worker: 30 creates wait in the bookings queue, and the workers took
    at most 10 off it in a second lately (recorded): a 3 s backlog."""
    for _ in range(30):
        assert (
            client.post("/api/bookings", json=booking_body(), headers=CUSTOMER).status_code == 202
        )
    metrics.record_tasks(
        services.redis,
        queues.CREATE_BOOKINGS,
        wait_ms=[],
        run_ms=1.0,
        count=10,
        queue=queues.queue_name(queues.BOOKINGS, stack.settings.QUEUE_NAMESPACE),
        now=time.time() - 1,
    )
