"""OpenAPI helpers: a Blueprint that documents problem responses, who may call
each operation (security schemes, x-roles) and its links, and Swagger UI's
assets served from the installed package (the docs work offline)."""

from __future__ import annotations

import copy

import flask
import flask_smorest
from swagger_ui_bundle import swagger_ui_path

from core import access
from ingress.problems import ProblemParser
from ingress.responses.common import ProblemSchema
from ingress.responses.jobs import JobAcceptedSchema, JobSchema
from ingress.security import requires

SWAGGER_ASSETS = "/api/docs/assets/"
PROBLEM_JSON_TYPE = "application/problem+json"

# OpenAPI security schemes: all bearer tokens, told apart by who issues them
# (the metrics token is a scraper's, for GET /metrics).
API_KEY, ADMIN_TOKEN = "apiKey", "adminToken"
METRICS_TOKEN = "metricsToken"  # noqa: S105 (a scheme's name, not a secret)
SECURITY_SCHEMES = {
    API_KEY: {
        "type": "http",
        "scheme": "bearer",
        "description": "A customer's or operator's API key, issued by POST /api/admin/customers.",
    },
    ADMIN_TOKEN: {
        "type": "http",
        "scheme": "bearer",
        "description": "The admin token (the ADMIN_TOKEN setting).",
    },
    METRICS_TOKEN: {
        "type": "http",
        "scheme": "bearer",
        "description": "The metrics token (METRICS_TOKEN; the admin token when unset).",
    },
}
ROLES_EXTENSION = "x-roles"
# Anyone may call; a key or the admin token may change the answer (or the rate budget).
OPTIONAL_CREDENTIALS = [{}, {API_KEY: []}, {ADMIN_TOKEN: []}]


def link(path: str, method: str, **parameters: str) -> dict:
    """An OpenAPI link to the operation `method` `path`, its parameters taken
    from this response (e.g. job_id="$response.body#/job_id")."""
    pointer = path.replace("~", "~0").replace("/", "~1")
    return {"operationRef": f"#/paths/{pointer}/{method}", "parameters": parameters}


def links(status: int, **named: dict):
    """Document the links of response `status` (clients and schemathesis follow them)."""
    return Blueprint.doc(responses={status: {"links": named}})


def document_guest_access(spec) -> None:
    """With REQUIRE_API_KEYS off, every operation a guest may call needs no credentials."""
    # apispec keeps the operations it was given in `_paths` (no public accessor).
    for operations in spec._paths.values():
        for operation in operations.values():
            roles = operation.get(ROLES_EXTENSION) if isinstance(operation, dict) else None
            if roles and roles != [access.ADMIN] and {} not in operation["security"]:
                operation["security"].insert(0, {})


PROBLEM_DETAILS = "Problem details (RFC 9457)"
OVERLOADED = (
    "Overloaded (problem type `overloaded`): more requests are arriving than the"
    " service can answer now, and this one was refused before any work; send it"
    " again after Retry-After."
)
RETRY_AFTER = {
    "description": "Seconds after which the request may be sent again.",
    "schema": {"type": "integer", "minimum": 1},
}


def document_shedding(spec, never_shed: tuple[str, ...]) -> None:
    """Every operation the ingress may shed (ingress.overload) may answer 503
    `overloaded` with Retry-After: added to its 503, or as its 503."""
    problem = {PROBLEM_JSON_TYPE: {"schema": spec.components.get_ref("schema", "Problem")}}
    for path, operations in spec._paths.items():  # apispec's operations (no public accessor)
        if path.startswith(never_shed):
            continue
        for operation in operations.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            responses = operation["responses"]
            existing = responses.get("503") or responses.get(503)
            if existing is None:
                responses["503"] = {
                    "description": OVERLOADED,
                    "content": problem,
                    "headers": {"Retry-After": RETRY_AFTER},
                }
            else:
                said = existing.get("description", "").rstrip(".")
                existing["description"] = f"{said}. {OVERLOADED}"
                existing.setdefault("headers", {}).setdefault("Retry-After", RETRY_AFTER)


def _state_in_400(view):
    """Say the view's tied-field rules in its documented 400s (decorators may
    document the 400 before or after the arguments that bring the rules)."""
    rules = getattr(view, "tied_rules", ())
    responses = getattr(view, "_apidoc", {}).get("response", {}).get("responses", {})
    if rules and 400 in responses:
        view._apidoc = copy.deepcopy(view._apidoc)  # the wrapped function's stays as it was
        for documented in view._apidoc["response"]["responses"][400]:
            documented["description"] = f"{PROBLEM_DETAILS}. {tied_statement(rules)}"
    return view


def tied_statement(rules) -> str:
    """How the document states rules that tie fields together (core.schemas.rules.TiedFields)."""
    said = "; ".join(rule.statement for rule in rules)
    return f"Also refused with a 400 (a rule JSON Schema cannot state): {said}."


def security_for(roles: tuple[str, ...]) -> list[dict[str, list]]:
    schemes = []
    if any(role in access.KEY_ROLES for role in roles):
        schemes.append({API_KEY: []})
    if access.ADMIN in roles:
        schemes.append({ADMIN_TOKEN: []})
    return schemes


class Blueprint(flask_smorest.Blueprint):
    # Read when views are decorated, so it must be set on the class.
    ARGUMENTS_PARSER = ProblemParser()

    def arguments(self, schema, **kwargs):
        """flask-smorest's, and the rules that tie the input's fields together
        (its schema's TIED), which JSON Schema cannot state: said in the
        operation's description, and in its 400's by `problems`."""
        decorate = super().arguments(schema, **kwargs)
        rules = getattr(schema, "TIED", ())

        def stated(view):
            view = decorate(view)
            if rules:
                view.tied_rules = rules
                view.__doc__ = f"{view.__doc__ or ''}\n\n{tied_statement(rules)}"
                _state_in_400(view)  # documented already, if `problems` came first
            return view

        return stated

    def problems(self, *statuses: int, described: dict[int, str] | None = None):
        """Document that an endpoint may answer these problem+json statuses, each
        as `described` says or as plain problem details (a 400 names the rules
        that tie the input's fields together, if any)."""

        def decorate(view):
            for status in statuses:
                view = self.alt_response(
                    status,
                    schema=ProblemSchema,
                    content_type="application/problem+json",
                    description=(described or {}).get(status, PROBLEM_DETAILS),
                )(view)
            return _state_in_400(view)

        return decorate

    def accepts_job(
        self,
        *problems: int,
        accepted: str | None = "Accepted: poll the job at `Location`.",
        done: tuple[int, str] | None = None,
        described: dict[int, str] | None = None,
    ):
        """Document an operation that enqueues a job: 202 with the job's link,
        `done` (status, description) with the finished job when `Prefer: wait`
        saw it end, and these problem statuses (`described` as in `problems`)."""

        def decorate(view):
            view = self.problems(*problems, described=described)(view)
            if done is not None:
                status, description = done
                view = self.alt_response(
                    status, schema=JobSchema, success=True, description=description
                )(view)
            return self.alt_response(
                202, schema=JobAcceptedSchema, success=True, description=accepted
            )(view)

        return decorate

    def requires(self, permission: str):
        """The caller must hold `permission` (see ingress.security.requires); documented
        with the security schemes and roles that grant it, and its 401 and 403."""
        roles = access.holders(permission)

        def decorate(view):
            view = requires(permission)(view)
            view = self.doc(security=security_for(roles), **{ROLES_EXTENSION: list(roles)})(view)
            return self.problems(401, 403)(view)

        return decorate

    def optional_credentials(self, view):
        """Anyone may call; credentials, if sent, must be valid (401 otherwise)."""
        view = requires(None)(view)
        view = self.doc(security=OPTIONAL_CREDENTIALS)(view)
        return self.problems(401)(view)


assets = flask.Blueprint("docs_assets", __name__)


@assets.route(SWAGGER_ASSETS + "<path:filename>")
def swagger_asset(filename):
    return flask.send_from_directory(swagger_ui_path, filename)


def rate_limited(description: str) -> dict:
    """A 429 of a budget of its own, as alt_response takes it: the problem and
    its Retry-After."""
    return {
        "schema": ProblemSchema,
        "content_type": "application/problem+json",
        "description": description,
        "headers": {
            "Retry-After": {
                "description": "Seconds until a call is allowed again.",
                "schema": {"type": "integer", "minimum": 1},
            }
        },
    }
