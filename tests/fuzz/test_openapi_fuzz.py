"""schemathesis against our own OpenAPI document, through the real app and services.

Every operation gets generated requests (valid and invalid), sent with the
credentials of the first role its document names (`x-roles`), and every
schemathesis check runs on every answer: never a 5xx, every documented answer
conforms (status, content type, headers, schema), schema-valid requests are
accepted and invalid ones refused, and an operation that declares security
refuses requests without credentials or with wrong ones. Every error is also
application/problem+json.
"""

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import CHECKS as REGISTRY
from schemathesis.checks import load_all_checks
from schemathesis.specs.openapi.checks import positive_data_acceptance

from core.schemas import ARRIVES_AFTER, DIFFERENT_ENDS
from tests.conftest import ADMIN, CUSTOMER, OPERATOR

EXAMPLES_PER_OPERATION = 100
load_all_checks()
EVERY_CHECK = list(REGISTRY.get_all())
# Rules that tie two fields together: JSON Schema cannot state them, so the
# document says them in words; a 400 that names only these is not a
# schema-valid request wrongly refused.
CROSS_FIELD_RULES = {DIFFERENT_ENDS, ARRIVES_AFTER}


def refused_only_for_cross_field_rules(response) -> bool:
    if response.status_code != 400:
        return False
    errors = response.json().get("errors") or {}
    messages = [m for field in errors.values() if isinstance(field, list) for m in field]
    flat = sum(len(field) if isinstance(field, list) else 1 for field in errors.values())
    return bool(messages) and len(messages) == flat and set(messages) <= CROSS_FIELD_RULES


def checks_for(response) -> list:
    if refused_only_for_cross_field_rules(response):
        return [c for c in EVERY_CHECK if c is not positive_data_acceptance]
    return EVERY_CHECK


CREDENTIALS = {"customer": CUSTOMER, "operator": OPERATOR, "admin": ADMIN}


def credentials(operation) -> dict[str, str]:
    """The first role the operation's document names; none for public operations."""
    roles = operation.definition.raw.get("x-roles") or []
    return CREDENTIALS[roles[0]] if roles else {}


def fuzzer(operation, calls):
    headers = credentials(operation)

    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy())
    def exercise(case):
        response = case.call(headers=headers)
        calls.append((operation.label, response.status_code))
        case.validate_response(response, checks=checks_for(response), headers=headers)
        if response.status_code >= 400:
            answered = {name.lower(): value for name, value in response.headers.items()}
            content_type = answered.get("content-type", "")
            content_type = content_type[0] if isinstance(content_type, list) else content_type
            assert content_type.startswith("application/problem+json"), (
                operation.label,
                response.status_code,
                content_type,
            )

    return exercise


def test_every_operation_survives_generated_input(app):
    schema = schemathesis.openapi.from_wsgi("/api/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15
    calls: list[tuple[str, int]] = []
    for operation in operations:
        fuzzer(operation, calls)()
    assert len(calls) >= 1000, len(calls)
    assert not [c for c in calls if c[1] >= 500]
    print(f"{len(calls)} generated requests over {len(operations)} operations, no 5xx")
