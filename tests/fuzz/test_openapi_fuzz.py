"""schemathesis against our own OpenAPI document, through the real app and services.

Every operation gets generated requests (valid and invalid), sent with the
credentials of the first role its document names (`x-roles`): whatever comes
in, the answer is never a 5xx, every error is application/problem+json, every
documented response conforms to its schema, and an operation that declares
security refuses requests without credentials or with wrong ones.
"""

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import ADMIN, CUSTOMER, OPERATOR

EXAMPLES_PER_OPERATION = 100
CHECKS = [
    not_a_server_error,
    response_schema_conformance,
    content_type_conformance,
    status_code_conformance,
    ignored_auth,
]
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
        case.validate_response(response, checks=CHECKS, headers=headers)
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
