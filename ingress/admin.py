"""/api/admin: operators' views and bulk work. (Authentication is one decorator here.)"""

from __future__ import annotations

import time

from flask.views import MethodView

from core import locks, queues
from core.errors import PayloadTooLarge
from core.schemas import (
    BulkBookingsSchema,
    BulkStatusSchema,
    CacheClearedSchema,
    CacheStatsSchema,
    FlightImportSchema,
    HeldLocksSchema,
    JobAcceptedSchema,
    PerformanceSchema,
)
from ingress.context import services
from ingress.docs import Blueprint
from ingress.monitoring import current_figures
from ingress.security import require_admin
from ingress.submit import submit_job

blp = Blueprint("admin", __name__, url_prefix="/api/admin", description="Operations")
blp.before_request(require_admin)  # every /api/admin endpoint: Bearer ADMIN_TOKEN


def check_bulk_size(items: list, limit: int, what: str) -> None:
    if len(items) > limit:
        raise PayloadTooLarge(f"At most {limit} {what} per request; got {len(items)}.")


@blp.route("/locks")
class Locks(MethodView):
    @blp.alt_response(200, schema=HeldLocksSchema, success=True)
    @blp.problems(503)
    def get(self):
        """Lock keys held now, with their remaining TTL in ms."""
        held = locks.held_locks(services().redis)
        return {"locks": held, "count": len(held)}


@blp.route("/flights/bulk")
class FlightImport(MethodView):
    @blp.arguments(FlightImportSchema)
    @blp.alt_response(
        202,
        schema=JobAcceptedSchema,
        success=True,
        description="Accepted: the job shows progress, then per-item results.",
    )
    @blp.problems(400, 413, 415, 422, 503)
    def post(self, data):
        """Import up to BULK_FLIGHT_LIMIT flights (an upsert per flight_id), in chunks."""
        check_bulk_size(data["flights"], services().settings.BULK_FLIGHT_LIMIT, "flights")
        return submit_job(queues.IMPORT_FLIGHTS, data, {}, bulk=True, accepted_at=int(time.time()))


@blp.route("/bookings/bulk")
class BookingImport(MethodView):
    @blp.arguments(BulkBookingsSchema)
    @blp.alt_response(
        202,
        schema=JobAcceptedSchema,
        success=True,
        description="Accepted: the job shows progress, then per-item results.",
    )
    @blp.problems(400, 413, 415, 422, 429, 503)
    def post(self, data):
        """Create up to BULK_BOOKING_LIMIT bookings, each valid or not on its own."""
        check_bulk_size(data["bookings"], services().settings.BULK_BOOKING_LIMIT, "bookings")
        return submit_job(queues.BULK_CREATE_BOOKINGS, data, {}, bulk=True)


@blp.route("/bookings/status/bulk")
class StatusImport(MethodView):
    @blp.arguments(BulkStatusSchema)
    @blp.alt_response(
        202,
        schema=JobAcceptedSchema,
        success=True,
        description="Accepted: the job shows progress, then per-item results.",
    )
    @blp.problems(400, 413, 415, 422, 429, 503)
    def post(self, data):
        """Apply up to BULK_UPDATE_LIMIT status updates in order, each on its own."""
        check_bulk_size(data["updates"], services().settings.BULK_UPDATE_LIMIT, "updates")
        return submit_job(queues.BULK_UPDATE_STATUS, data, {}, bulk=True)


@blp.route("/performance")
class Performance(MethodView):
    @blp.alt_response(200, schema=PerformanceSchema, success=True)
    @blp.problems(401, 403, 429, 503)
    def get(self):
        """Throughput, latency, errors, tasks, caches, locks, queues, and scaling advice."""
        return current_figures()


@blp.route("/cache/warm")
class CacheWarm(MethodView):
    @blp.alt_response(202, schema=JobAcceptedSchema, success=True)
    @blp.problems(503)
    def post(self):
        """Warm today's and tomorrow's route results for the popular routes, now."""
        return submit_job(queues.WARM_CACHE, {}, {})


@blp.route("/cache/stats")
class CacheStats(MethodView):
    @blp.alt_response(200, schema=CacheStatsSchema, success=True)
    @blp.problems(503)
    def get(self):
        """Hits, misses and hit rate per cache, and key counts."""
        return services().cache.stats()


@blp.route("/cache/clear")
class CacheClear(MethodView):
    @blp.alt_response(200, schema=CacheClearedSchema, success=True)
    @blp.problems(503)
    def delete(self):
        """Drop cache entries only: never locks, jobs or rate-limit counters."""
        return {"deleted": services().cache.clear()}
