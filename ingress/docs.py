"""OpenAPI helpers: a Blueprint that documents problem responses, and Swagger UI's
assets served from the installed package (the docs work offline)."""

from __future__ import annotations

import flask
import flask_smorest
from swagger_ui_bundle import swagger_ui_path

from core.schemas import ProblemSchema
from ingress.problems import ProblemParser

SWAGGER_ASSETS = "/api/docs/assets/"


class Blueprint(flask_smorest.Blueprint):
    # Read when views are decorated, so it must be set on the class.
    ARGUMENTS_PARSER = ProblemParser()

    def problems(self, *statuses: int):
        """Document that an endpoint may answer these problem+json statuses."""

        def decorate(view):
            for status in statuses:
                view = self.alt_response(
                    status,
                    schema=ProblemSchema,
                    content_type="application/problem+json",
                    description="Problem details (RFC 9457)",
                )(view)
            return view

        return decorate


assets = flask.Blueprint("docs_assets", __name__)


@assets.route(SWAGGER_ASSETS + "<path:filename>")
def swagger_asset(filename):
    return flask.send_from_directory(swagger_ui_path, filename)
