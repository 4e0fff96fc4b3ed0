"""What a client sends cannot forge the ingress's log: not a line (a %0A in the
path) and not a field (an X-Request-ID with spaces)."""

import io
import logging
import re

import pytest

from core import logs
from tests.core.test_logs import parsed

FORGED_LINE = "2026-01-01T00:00:00.000Z error   ingress: GET /api/admin/locks 200 request_id=x"


@pytest.fixture
def console():
    """The ingress's access lines, as the console format writes them."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logs._ContextFormatter(as_json=False))
    logger = logging.getLogger("ingress")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield out
    logger.removeHandler(handler)
    logger.setLevel(level)


def test_a_newline_in_the_path_writes_no_line_of_its_own(client, console):
    r = client.get("/api/nowhere%0A" + FORGED_LINE.replace(" ", "%20"))
    assert r.status_code == 404
    lines = console.getvalue().splitlines()
    assert len(lines) == 1, lines
    message, fields = parsed(lines[0])
    assert message == f"GET /api/nowhere\n{FORGED_LINE} 404"
    assert set(fields) == {"request_id", "ms"}


def test_a_request_id_with_spaces_is_replaced_and_writes_no_field(client, console):
    r = client.get("/api/nowhere", headers={"X-Request-ID": "abc level=error user=admin"})
    rid = r.headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", rid), rid
    (line,) = console.getvalue().splitlines()
    message, fields = parsed(line)
    assert (message, fields["request_id"], set(fields)) == (
        "GET /api/nowhere 404",
        rid,
        {"request_id", "ms"},
    )


def test_a_request_id_of_the_allowed_shape_is_echoed_and_logged(client, console):
    r = client.get("/api/nowhere", headers={"X-Request-ID": "order-42.retry_1"})
    assert r.headers["X-Request-ID"] == "order-42.retry_1"
    assert parsed(console.getvalue().splitlines()[0])[1]["request_id"] == "order-42.retry_1"
