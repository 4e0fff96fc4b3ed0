"""GET /metrics is for the scraper: the metrics token (METRICS_TOKEN, the admin
token when unset) or the admin token; anyone else gets a problem."""

import pytest

from core.services import connect_services
from core.settings import load_settings, replace
from tests.conftest import ADMIN, ADMIN_TOKEN, CUSTOMER, OPERATOR, bearer

SCRAPER_TOKEN = "scrape-" + "s" * 32


def app_with(settings, **overrides):
    from ingress import create_app

    patched = replace(settings, **overrides)
    return create_app(patched, services=connect_services(patched))


@pytest.fixture(scope="module")
def scraped(settings, services):
    """An app whose METRICS_TOKEN is a token of its own."""
    return app_with(settings, METRICS_TOKEN=SCRAPER_TOKEN).test_client()


def test_metrics_token_defaults_to_the_admin_token():
    assert load_settings({"ADMIN_TOKEN": "a" * 20}).metrics_token == "a" * 20
    both = load_settings({"ADMIN_TOKEN": "a" * 20, "METRICS_TOKEN": "m" * 20})
    assert both.metrics_token == "m" * 20
    assert load_settings({}).metrics_token == ""


@pytest.mark.parametrize("headers", [bearer(SCRAPER_TOKEN), ADMIN], ids=["metrics", "admin"])
def test_the_metrics_token_and_the_admin_token_read_it(scraped, headers):
    r = scraped.get("/metrics", headers=headers)
    assert r.status_code == 200
    assert r.mimetype == "text/plain"
    assert "radiantgo_requests_total" in r.get_data(as_text=True)


@pytest.mark.parametrize(
    ("headers", "invalid"),
    [
        ({}, False),
        (bearer("not-" + SCRAPER_TOKEN), True),
        (bearer(SCRAPER_TOKEN[:-1]), True),
        ({"Authorization": f"Basic {SCRAPER_TOKEN}"}, False),
        ({"Authorization": "Bearer "}, False),
    ],
    ids=["none", "wrong", "prefix", "basic", "empty"],
)
def test_without_a_valid_token_it_is_401(scraped, headers, invalid):
    r = scraped.get("/metrics", headers=headers)
    assert r.status_code == 401
    assert r.mimetype == "application/problem+json"
    assert r.get_json()["status"] == 401
    challenge = r.headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer")
    assert ('error="invalid_token"' in challenge) == invalid
    assert "radiantgo_" not in r.get_data(as_text=True)


@pytest.mark.parametrize("who", ["customer", "operator"])
def test_an_api_key_is_known_but_not_enough(scraped, who):
    r = scraped.get("/metrics", headers={"customer": CUSTOMER, "operator": OPERATOR}[who])
    assert r.status_code == 403
    assert r.mimetype == "application/problem+json"
    assert "may not read /metrics" in r.get_json()["detail"]


def test_without_metrics_token_the_admin_token_is_the_metrics_token(client):
    assert client.get("/metrics", headers=ADMIN).status_code == 200
    assert client.get("/metrics", headers=bearer(SCRAPER_TOKEN)).status_code == 401
    assert client.get("/metrics").status_code == 401


def test_no_token_set_opens_nothing(settings, services):
    c = app_with(settings, ADMIN_TOKEN="", METRICS_TOKEN="").test_client()
    assert c.get("/metrics").status_code == 401
    assert c.get("/metrics", headers=ADMIN).status_code == 401


def test_keys_not_required_still_close_it(settings, services):
    c = app_with(settings, REQUIRE_API_KEYS=False).test_client()
    assert c.get("/metrics").status_code == 401
    assert c.get("/metrics", headers=ADMIN).status_code == 200


def test_the_document_declares_its_security(client):
    doc = client.get("/api/openapi.json").get_json()
    schemes = doc["components"]["securitySchemes"]
    assert (schemes["metricsToken"]["type"], schemes["metricsToken"]["scheme"]) == (
        "http",
        "bearer",
    )
    operation = doc["paths"]["/metrics"]["get"]
    assert operation["security"] == [{"metricsToken": []}, {"adminToken": []}]
    assert operation["x-roles"] == ["admin"]
    assert {"200", "401", "403"} <= set(operation["responses"])
    assert operation["responses"]["401"]["content"]["application/problem+json"]


def test_health_stays_public(client):
    assert client.get("/health").status_code == 200
    assert ADMIN_TOKEN not in client.get("/health").get_data(as_text=True)
