"""schemathesis against our own OpenAPI document, through the real app and services.

Every operation gets generated requests (valid and invalid); whatever comes
in, the answer is never a 5xx, every error is application/problem+json, and
every documented response conforms to its schema.
"""

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import ADMIN

EXAMPLES_PER_OPERATION = 100
CHECKS = [
    not_a_server_error,
    response_schema_conformance,
    content_type_conformance,
    status_code_conformance,
]


def fuzzer(operation, calls):
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy())
    def exercise(case):
        response = case.call(headers=ADMIN)
        calls.append((operation.label, response.status_code))
        case.validate_response(response, checks=CHECKS)
        if response.status_code >= 400:
            headers = {name.lower(): value for name, value in response.headers.items()}
            content_type = headers.get("content-type", "")
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
