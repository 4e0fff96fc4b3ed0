"""schemathesis' stateful phase: sequences of calls that follow the document's
OpenAPI links (a booking's 202 -> its job, the booking, its transitions; a
flights list -> a flight) and the links schemathesis infers, with every check
on every answer, through the real app, worker and services.

Rotating and disabling customers stay out of the sequences: fed the ids the
admin's customer list shows, they would revoke the very keys this suite calls
with. test_openapi_fuzz covers them with generated ids, tests/ingress/test_access
with real ones."""

import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis.errors import FlakyStrategyDefinition

from tests.fuzz.test_openapi_fuzz import checks_for, credentials

SEQUENCES, STEPS = 60, 6


def test_linked_calls_pass_every_check(app, worker):
    schema = schemathesis.openapi.from_wsgi("/api/openapi.json", app)
    schema = schema.exclude(path_regex=r"^/api/admin/customers/")
    base = schema.as_state_machine()
    steps = []

    class Machine(base):
        def get_call_kwargs(self, case):
            return {"headers": credentials(case.operation)}

        def validate_response(self, response, case, additional_checks=None, **kwargs):
            steps.append((case.operation.label, response.status_code))
            checks = checks_for(response)
            case.validate_response(response, checks=checks, headers=kwargs.get("headers"))

    run_settings = settings(
        max_examples=SEQUENCES,
        stateful_step_count=STEPS,
        deadline=None,
        database=None,
        # The same generated data every run (which rule runs next still
        # follows schemathesis' rule order: see the assertion below).
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    try:
        Machine.run(settings=run_settings)
    except FlakyStrategyDefinition:
        # Not a failed check: which rules a step may take depends on earlier
        # answers (a link is followed only from a 201 or a 202), and an answer
        # can depend on timing (a booking created within its `Prefer: wait`,
        # or not). Hypothesis then finds a sequence it drew before taking
        # another turn, and stops. Once more; a real failure fails every time.
        steps.clear()
        Machine.run(settings=run_settings)
    # Answers only a value from a link can bring (a real job id or ref_id): the
    # links were followed. Which of them a run follows depends on the order
    # schemathesis lists its rules in, which varies between processes.
    through_links = {
        ("GET /api/jobs/{job_id}", 200),
        ("GET /api/bookings/{ref_id}", 200),
        ("POST /api/bookings/{ref_id}/depart", 202),
        ("POST /api/bookings/{ref_id}/cancel", 202),
    }
    seen = ", ".join(f"{label} {code}" for label, code in sorted(set(steps)))
    assert through_links & set(steps), seen
    assert not [s for s in steps if s[1] >= 500]
    print(f"{len(steps)} calls in {SEQUENCES} linked sequences, every check, no 5xx")
