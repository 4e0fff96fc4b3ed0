"""/api/flights and /api/routes: the schedule, and the search over it."""

from __future__ import annotations

from flask import Response
from flask.views import MethodView

from core import cache as caches
from core import flights, routes
from core.errors import NotFound
from core.schemas import (
    FlightListQuerySchema,
    FlightListSchema,
    FlightOutSchema,
    RouteQuerySchema,
    RouteSearchSchema,
)
from ingress.context import services
from ingress.docs import Blueprint, link, links

blp = Blueprint("flights", __name__, url_prefix="/api", description="Flights and route search")


def flights_ttl(settings) -> int:
    return caches.space_ttl(settings.CACHE_TTL_FLIGHTS, settings.CACHE_TTL_BOOKINGS)


@blp.route("/flights/<flight_id>")
class Flight(MethodView):
    @blp.optional_credentials
    @blp.alt_response(200, schema=FlightOutSchema, success=True)
    @blp.problems(404)
    def get(self, flight_id):
        """One flight, by `<flight_number>-<YYYYMMDD>` (UTC departure date)."""
        svc = services()
        flight = svc.cache.through(
            caches.flight_key(flight_id),
            caches.FLIGHTS,
            caches.FLIGHTS_GENERATION,
            flights_ttl(svc.settings),
            lambda: flights.get_flight(svc.db, flight_id),
        )
        if flight is None:
            raise NotFound(f"No flight {flight_id!r}.")
        return flight


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
    def get(self, origin, destination, date, limit):
        """Flights on a route departing on one UTC day, in departure order."""
        svc = services()
        items = svc.cache.through(
            caches.flight_list_key(origin, destination, date.isoformat()),
            caches.FLIGHTS,
            caches.FLIGHTS_GENERATION,
            flights_ttl(svc.settings),
            lambda: flights.flights_on(svc.db, origin, destination, date),
        )
        return {"items": items[:limit], "count": len(items)}


@blp.route("/routes")
class Routes(MethodView):
    @blp.optional_credentials
    @blp.arguments(RouteQuerySchema(), location="query", as_kwargs=True)
    @blp.alt_response(200, schema=RouteSearchSchema, success=True)
    @blp.problems(400)
    def get(self, origin, destination, date, limit, weight_kg=None):
        """Direct and one-transit options leaving on a UTC day, by arrival time;
        with `weight_kg`, only those with room for it on every leg."""
        svc = services()
        answer = routes.cached_search(
            svc.db,
            svc.cache,
            origin=origin,
            destination=destination,
            day=date,
            min_connection_minutes=svc.settings.MIN_CONNECTION_MINUTES,
            ttl=caches.space_ttl(svc.settings.CACHE_TTL_ROUTES, svc.settings.CACHE_TTL_BOOKINGS),
            limit=limit,
            weight_kg=weight_kg,
        )
        return Response(answer, mimetype="application/json")  # JSON already, as cached
