"""/api/flights and /api/routes: the schedule, and the search over it."""

from __future__ import annotations

from flask import Response
from flask.views import MethodView

from core import flights, route_answers
from core.schemas.flights import FlightListQuerySchema, RouteQuerySchema
from ingress.context import services
from ingress.docs import Blueprint, link, links
from ingress.responses.flights import FlightListSchema, FlightOutSchema, RouteSearchSchema
from ingress.security import MINUTE, rate_limit

blp = Blueprint("flights", __name__, url_prefix="/api", description="Flights and route search")


@blp.route("/flights/<flight_id:flight_id>")
class Flight(MethodView):
    @blp.optional_credentials
    @blp.alt_response(200, schema=FlightOutSchema, success=True)
    @blp.problems(404)
    def get(self, flight_id):
        """One flight, by `<flight_number>-<YYYYMMDD>` (UTC departure date)."""
        svc = services()
        return flights.read_flight(svc.db, svc.cache, svc.settings, flight_id)


@blp.route("/flights")
class Flights(MethodView):
    @blp.optional_credentials
    @links(
        200,
        first=link(
            "/api/flights/{flight_id}", "get", flight_id="$response.body#/items/0/flight_id"
        ),
    )
    @blp.arguments(FlightListQuerySchema(), location="query", as_kwargs=True)
    @blp.alt_response(200, schema=FlightListSchema, success=True)
    @blp.problems(400)
    def get(self, date, **route):
        """Flights on a route departing on one UTC day, in departure order."""
        svc = services()
        return flights.read_flights_on(svc.db, svc.cache, svc.settings, day=date, **route)


@blp.route("/routes")
class Routes(MethodView):
    @rate_limit("RATE_LIMIT_ROUTES", MINUTE, scope="routes")
    @blp.optional_credentials
    @blp.arguments(RouteQuerySchema(), location="query", as_kwargs=True)
    @blp.alt_response(200, schema=RouteSearchSchema, success=True)
    @blp.problems(400)
    def get(self, date, **query):
        """Direct and one-transit options leaving on a UTC day, by arrival time;
        with `weight_kg` or `volume_m3`, only those with room for them on
        every leg."""
        svc = services()
        answer = route_answers.answer_search(svc.db, svc.cache, svc.settings, day=date, **query)
        return Response(answer, mimetype="application/json")  # JSON already, as cached
