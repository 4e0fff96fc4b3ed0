"""Ids are checked whole before any cache or database sees them: in paths (by
the router), in bodies and in query strings (by the schemas)."""

import re
from datetime import UTC, datetime

import pytest

from core.ids import PATH_IDS
from tests.conftest import ADMIN, CUSTOMER, IDS, booking_body, flight_items, keyed_client

DAY = datetime(2032, 3, 7, tzinfo=UTC)  # no other test's flights fly that day

# A value of each path id's shape, and ones of other shapes (a trailing newline
# first: Python's `$` would let it through a match).
VALID = {
    "ref_id": "RG000000000",
    "customer_id": "cus_0123456789abcdef",
    "job_id": "1bf8eaa3-5c5e-4b7e-9a57-0d8a3c9f2e10",
    "flight_id": "RG0001-20261128",
    "endpoint_id": "ep_0123456789abcdef",
    "delivery_id": "dlv_0123456789abcdef01234567",
    "awb": "020-12345675",
}
MALFORMED = ["{}%0A", "{}%0D", "{}%20", "%20{}", "{}x", "QSA:QSB:2032-03-07", "%00", "{}%E2%80%A8"]


def routes_with(app, name: str):
    """(method, rule) of every route whose path names the id `name`."""
    for rule in app.url_map.iter_rules():
        if f":{name}>" in rule.rule:
            for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
                yield method, rule.rule


@pytest.mark.parametrize("name", sorted(PATH_IDS))
def test_a_path_id_of_another_shape_is_a_404_that_says_what_an_id_is(app, name):
    routes = list(routes_with(app, name))
    assert routes, name
    for method, rule in routes:
        for template in MALFORMED:
            # The id tested malformed; any other id in the path well-formed.
            bad = template.format(VALID[name])
            path = re.sub(
                r"<[^>]+:([^>]+)>", lambda m, bad=bad: bad if m[1] == name else VALID[m[1]], rule
            )
            r = keyed_client(app, ADMIN).open(path, method=method, json={})
            assert r.status_code == 404, (method, path, r.status_code)
            assert r.mimetype == "application/problem+json"
            assert PATH_IDS[name].what in r.get_json()["detail"], (path, r.get_json())


def test_a_flight_list_is_not_a_flight(client, services):
    """The flight list's cache key is flights:<origin>:<destination>:<day>: read
    as a flight id, it answered the list (200) before ids were checked."""
    from tests.conftest import store_flights

    assert store_flights(services, flight_items("QL", 2, DAY, "QSA", "QSB"))["failed"] == 0
    listed = client.get("/api/flights?origin=QSA&destination=QSB&date=2032-03-07")
    assert listed.get_json()["count"] == 2  # and cached
    r = client.get("/api/flights/QSA:QSB:2032-03-07")
    assert r.status_code == 404, r.get_data(True)
    assert r.get_json()["detail"] == (
        "'QSA:QSB:2032-03-07' is not a flight id (<flight_number>-<YYYYMMDD>)"
        " such as RG0001-20261128."
    )


def test_every_path_parameter_states_the_pattern_the_router_enforces(app, client):
    document = client.get("/api/openapi.json").get_json()
    seen = set()
    for path, item in document["paths"].items():
        parameters = list(item.get("parameters", []))  # the path's, and each operation's
        for method, operation in item.items():
            if method != "parameters":
                parameters += operation.get("parameters", [])
        for parameter in parameters:
            if parameter["in"] == "path":
                shape = PATH_IDS[parameter["name"]]
                assert parameter["schema"]["pattern"] == shape.pattern, path
                seen.add(parameter["name"])
    assert seen == set(PATH_IDS)


# -- ids in bodies and query strings ------------------------------------------------------


def test_a_flight_id_with_a_trailing_newline_is_no_flight_id(app, services):
    before = services.db.jobs.estimated_document_count()
    body = booking_body(flight_ids=["RG0001-20261128\n"])
    r = keyed_client(app, CUSTOMER).post("/api/bookings", json=body)
    assert r.status_code == 400, r.get_data(True)
    assert r.get_json()["errors"] == {
        "flight_ids": {
            "0": ["Must be a flight id (<flight_number>-<YYYYMMDD>) such as RG0001-20261128."]
        }
    }
    assert services.db.jobs.estimated_document_count() == before


def test_a_customer_id_with_a_trailing_newline_is_no_customer_id(app):
    admin = keyed_client(app, ADMIN)
    owned = {"customer_id": IDS["customer"] + "\n", "bookings": [booking_body()]}
    r = admin.post("/api/admin/bookings/bulk", json=owned)
    assert r.status_code == 400 and "customer_id" in r.get_json()["errors"], r.get_data(True)
    r = admin.get("/api/admin/customers", query_string={"cursor": IDS["customer"] + "\n"})
    assert r.status_code == 400 and "cursor" in r.get_json()["errors"], r.get_data(True)


def test_a_ref_id_with_a_trailing_newline_is_refused_in_a_bulk_update():
    from core.schemas.bookings import BulkStatusItemSchema

    errors = BulkStatusItemSchema().validate({"ref_id": "RG000000000\n", "newStatus": "DEPARTED"})
    assert list(errors) == ["ref_id"]


@pytest.mark.parametrize("limit", ["5%0A", "%205", "5_0", "%D9%A5", "5.0"])
@pytest.mark.parametrize(
    "path",
    [
        "/api/bookings?limit={}",
        "/api/admin/customers?limit={}",
        "/api/flights?origin=DEL&destination=BLR&date=2032-03-07&limit={}",
        "/api/routes?origin=DEL&destination=BLR&date=2032-03-07&limit={}",
    ],
)
def test_a_query_integer_is_written_as_an_integer_whole(app, path, limit):
    """int() takes "5\\n", " 5", "5_0" and other scripts' digits; the document's
    integer does not, so neither does the server."""
    r = keyed_client(app, ADMIN).get(path.format(limit))
    assert r.status_code == 400, (path, limit, r.status_code)
    assert r.get_json()["errors"] == {"limit": ["Not a valid integer."]}
