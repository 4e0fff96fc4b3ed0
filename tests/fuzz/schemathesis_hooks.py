"""What the contract runs add to schemathesis (loaded with SCHEMATHESIS_HOOKS).

One check: every error is an RFC 9457 problem. And the two answers that
JSON Schema cannot describe, which the OpenAPI document states in words:
- a 400 that names only a rule tying two fields together (destination
  differs from origin; or a field to the clock: a milestone's `at` not in
  the future), or one no pattern states (an AWB's check digit, an AWB of
  RadiantGo's own prefix), on an operation whose description states that
  rule: schema-valid, yet refused as the document says (ST202 otherwise);
- a 422 that a webhook operation's 422 documents by its problem type: a
  URL of the right shape that may not receive deliveries
  (`webhook-url-refused`: core.webhook_targets decides, on addresses JSON Schema
  cannot see), or all_bookings false for an endpoint of no owner
  (`all-bookings-required`: it depends on the caller);
- a booking's reference whose create job failed: its 202 accepted a job,
  not a booking, so its 404 (type `booking-not-made`, as GET
  /api/bookings/{ref_id} documents) is no created resource gone missing
  (ST302 otherwise). A create still running answers 202, never 404;
- a request the ingress shed before any work (503 `overloaded` with
  Retry-After, on an operation whose 503 documents it): on a busy machine
  the run itself may overload the stack, and a shed answer says nothing of
  the request (ST101 and any other check it would trip otherwise).
Every other failure of every check fails the run.
"""

from __future__ import annotations

import json
import os

import schemathesis

from core.errors import AllBookingsRequired
from core.schemas import rules
from core.webhook_endpoints import URL_REFUSED_SLUG

PROBLEM_JSON = "application/problem+json"
# Every rule core.schemas.rules declares: one added there is known here without a list to keep.
TIED_RULES = tuple(v for v in vars(rules).values() if isinstance(v, rules.TiedFields))
STATED_422 = (URL_REFUSED_SLUG, AllBookingsRequired.slug)
NOT_MADE = "/problems/booking-not-made"
SHED = "/problems/overloaded"
DROPPED_ENV = "CONTRACT_DROPPED"  # a file each dropped failure is written to, a line each


def _header(response, name: str) -> str:
    value = response.headers.get(name.lower()) or response.headers.get(name) or ""
    return value[0] if isinstance(value, list) else value


def _problem(response) -> dict:
    try:
        body = json.loads(response.content or b"{}")
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


@schemathesis.check
def errors_are_problems(ctx, response, case):
    """Every 4xx and 5xx is application/problem+json, never an HTML page."""
    if response.status_code >= 400 and not _header(response, "content-type").startswith(
        PROBLEM_JSON
    ):
        raise AssertionError(
            f"{case.operation.label} answered {response.status_code} as"
            f" {_header(response, 'content-type')!r}, not {PROBLEM_JSON}"
        )


def refused_for_stated_rules(case, response) -> bool:
    """A 400 whose errors are only tied-field rules that the operation's
    description states."""
    if response.status_code != 400:
        return False
    stated = case.operation.definition.raw.get("description") or ""
    rules = [rule for rule in TIED_RULES if rule.statement in stated]
    errors = _problem(response).get("errors") or {}
    return bool(errors) and all(
        isinstance(messages, list)
        and any(rule.field == field and messages == [rule.message] for rule in rules)
        for field, messages in errors.items()
    )


def refused_as_documented(case, response) -> bool:
    """A 422 whose problem type the operation's documented 422 names."""
    if response.status_code != 422:
        return False
    responses = case.operation.definition.raw.get("responses") or {}
    documented = (responses.get("422") or {}).get("description") or ""
    slug = _problem(response).get("type", "").rsplit("/", 1)[-1]
    return slug in STATED_422 and f"`{slug}`" in documented


def booking_not_made(response) -> bool:
    problem = _problem(response)
    return (
        response.status_code == 404
        and problem.get("type", "").endswith(NOT_MADE)
        and bool(problem.get("job_id"))
    )


def shed_as_documented(case, response) -> bool:
    """A 503 `overloaded` with Retry-After, which the operation's 503 documents."""
    if response.status_code != 503 or not _header(response, "retry-after"):
        return False
    responses = case.operation.definition.raw.get("responses") or {}
    documented = (responses.get("503") or {}).get("description") or ""
    return _problem(response).get("type", "").endswith(SHED) and "`overloaded`" in documented


@schemathesis.hook
def filter_failure(context, failure, case, response) -> bool:
    stated = failure.code == "ST202" and (
        refused_for_stated_rules(case, response) or refused_as_documented(case, response)
    )
    not_made = failure.code == "ST302" and booking_not_made(response)
    shed = shed_as_documented(case, response)
    if (stated or not_made or shed) and os.environ.get(DROPPED_ENV):
        with open(os.environ[DROPPED_ENV], "a") as dropped:
            print(failure.code, case.operation.label, response.status_code, file=dropped)
    return not (stated or not_made or shed)
