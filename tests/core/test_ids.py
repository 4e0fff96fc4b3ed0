"""core/ids.py: each id's shape, matched whole; and no regular expression in the
code base that a trailing newline slips past."""

import ast
from pathlib import Path

import pytest

from core import ids

ROOT = Path(__file__).resolve().parents[2]
CODE = ["core", "ingress", "workers", "tools", "perf", "celeryconfig.py"]


@pytest.mark.parametrize(
    ("shape", "made"),
    [
        (ids.REF_ID, ids.new_ref_id()),
        (ids.CUSTOMER_ID, ids.new_customer_id()),
        (ids.JOB_ID, ids.new_job_id()),
        (ids.FLIGHT_ID, "RG0001-20261128"),
    ],
)
def test_an_id_is_its_shape_whole(shape, made):
    assert shape.matches(made) and shape.matches(shape.example)
    for other in (made + "\n", made + "\r", made + " ", "\n" + made, made[:-1], made + "0", ""):
        assert not shape.matches(other), repr(other)
    assert not shape.matches(None) and not shape.matches(123)


def test_the_predicates_refuse_a_trailing_newline():
    assert ids.is_ref_id("RG000000000") and not ids.is_ref_id("RG000000000\n")
    assert ids.is_customer_id("cus_0123456789abcdef")
    assert not ids.is_customer_id("cus_0123456789abcdef\n")
    job_id = ids.new_job_id()
    assert ids.is_job_id(job_id) and not ids.is_job_id(job_id + "\n")
    assert not ids.is_job_id(job_id.upper())  # one spelling per job


def python_files():
    for entry in CODE:
        path = ROOT / entry
        yield from [path] if path.is_file() else sorted(path.rglob("*.py"))


def test_no_regular_expression_is_matched_only_at_its_start():
    """`pattern.match` and marshmallow's `validate.Regexp` (which calls it) stop
    at a `$` that a trailing newline follows: every check is a fullmatch."""
    found = []
    for path in python_files():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            called = node.func if isinstance(node, ast.Call) else None
            name = getattr(called, "attr", None) or getattr(called, "id", None)
            # werkzeug's MapAdapter.match(..., return_rule=True) routes a path: no pattern.
            routing = any(k.arg == "return_rule" for k in getattr(node, "keywords", []))
            if name in ("match", "Regexp") and not routing:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not found, found
