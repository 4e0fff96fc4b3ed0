"""Every error leaves the ingress as RFC 9457 application/problem+json."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, current_app, request
from flask_smorest import Api
from webargs.flaskparser import FlaskParser, abort
from werkzeug.exceptions import HTTPException

from core.errors import UNAVAILABLE_ERRORS, RadiantError, ServiceUnavailable, problem
from ingress.responses.common import ProblemSchema

log = logging.getLogger(__name__)
PROBLEM_JSON = "application/problem+json"
_SLUGS = {
    400: "bad-request",
    404: "not-found",
    405: "method-not-allowed",
    413: "payload-too-large",
    415: "unsupported-media-type",
    429: "too-many-requests",
}


def problem_response(body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    response = current_app.json.response(body)
    response.status_code = body["status"]
    response.mimetype = PROBLEM_JSON
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _flatten(messages: Any) -> dict[str, Any]:
    """webargs nests errors by location ({"json": {...}}); clients want fields."""
    if not isinstance(messages, dict):
        return {"_schema": messages}
    flat: dict[str, Any] = {}
    for location, errors in messages.items():
        if isinstance(errors, dict):
            flat.update(errors)
        else:
            flat.setdefault("_schema", []).extend(errors if isinstance(errors, list) else [errors])
        del location
    return flat


def http_problem(error: HTTPException) -> Response:
    data = getattr(error, "data", None) or {}
    errors = _flatten(data["messages"]) if "messages" in data else None
    status = error.code or 500
    if errors and status == 400:
        title, slug = "Validation failed", "validation-failed"
        detail = "The request has invalid fields; see errors."
    else:
        title, slug = error.name, _SLUGS.get(status, error.name.lower().replace(" ", "-"))
        detail = error.description or error.name
    headers = dict(data.get("headers") or {})
    if status == 405 and error.get_response().headers.get("Allow"):
        headers["Allow"] = error.get_response().headers["Allow"]
    body = problem(status, title, detail, slug=slug, instance=request.path, errors=errors)
    return problem_response(body, headers)


def radiant_problem(error: RadiantError) -> Response:
    return problem_response(error.to_problem(instance=request.path), error.headers)


def unavailable(error: Exception) -> Response:
    log.warning("backing service unavailable: %s", error)
    return radiant_problem(
        ServiceUnavailable(f"A backing service is unavailable: {type(error).__name__}.")
    )


def internal_problem(error: Exception) -> Response:
    log.exception("unhandled error")
    body = problem(
        500,
        "Internal error",
        "The server failed; the error was logged.",
        slug="internal-error",
        instance=request.path,
    )
    return problem_response(body)


class ProblemParser(FlaskParser):
    """webargs, answering 400 (not 422) for validation, and 400 for JSON too deep to
    parse. A query parameter the operation does not take is refused like an unknown
    body field (webargs would drop it): a typo such as `?stauts=` is a 400, not a
    silently unfiltered answer."""

    DEFAULT_VALIDATION_STATUS = 400
    DEFAULT_UNKNOWN_BY_LOCATION = {
        **FlaskParser.DEFAULT_UNKNOWN_BY_LOCATION,
        "query": None,  # None: the schema's own Meta.unknown (RAISE here)
        "querystring": None,
    }

    def _raw_load_json(self, req):
        try:
            return super()._raw_load_json(req)
        except RecursionError:
            abort(400, messages={"json": ["JSON nested too deeply."]})


class ProblemApi(Api):
    """flask-smorest's Api with problem+json errors, documented as such."""

    ERROR_SCHEMA = ProblemSchema

    def handle_http_exception(self, error):
        return http_problem(error)


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(RadiantError, radiant_problem)
    for error in UNAVAILABLE_ERRORS:
        app.register_error_handler(error, unavailable)
    app.register_error_handler(Exception, internal_problem)
