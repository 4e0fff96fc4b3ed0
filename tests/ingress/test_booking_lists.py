"""GET /api/bookings: a rate limit of its own, as the OpenAPI document declares it."""

from core.services import connect_services
from core.settings import replace
from tests.conftest import bearer, new_customer


def lists_limited_to(settings, budget: int):
    from ingress import create_app

    patched = replace(settings, RATE_LIMIT_LISTS=budget)
    return create_app(patched, services=connect_services(patched))


def test_list_reads_past_their_budget_are_a_429_with_retry_after(settings, services):
    client = lists_limited_to(settings, 3).test_client()
    key = bearer(new_customer(services.db)["api_key"])
    codes = [client.get("/api/bookings?limit=1", headers=key).status_code for _ in range(3)]
    assert codes == [200, 200, 200]
    refused = client.get("/api/bookings?status=BOOKED", headers=key)  # any filter, same budget
    assert refused.status_code == 429
    assert refused.mimetype == "application/problem+json"
    assert refused.get_json()["status"] == 429
    assert 0 < int(refused.headers["Retry-After"]) <= 60
    assert refused.headers["RateLimit-Limit"] == "3"
    assert refused.headers["RateLimit-Remaining"] == "0"
    # The budget is the caller's: another customer lists on.
    other = bearer(new_customer(services.db)["api_key"])
    assert client.get("/api/bookings?limit=1", headers=other).status_code == 200


def test_the_openapi_document_declares_the_lists_429(client):
    document = client.get("/api/openapi.json").get_json()
    answers = document["paths"]["/api/bookings"]["get"]["responses"]
    assert "application/problem+json" in answers["429"]["content"]
    assert answers["429"]["headers"]["Retry-After"]["schema"]["type"] == "integer"
    limit = next(
        p for p in document["paths"]["/api/bookings"]["get"]["parameters"] if p["name"] == "limit"
    )
    assert (limit["schema"]["minimum"], limit["schema"]["maximum"]) == (1, 200)
