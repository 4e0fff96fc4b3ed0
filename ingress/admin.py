"""/api/admin: customers and their keys, operators' views, bulk work.

Every endpoint takes the admin token; the bulk status one an operator's key too.
"""

from __future__ import annotations

import time

from flask.views import MethodView

from core import access, bulk, customers, queues
from core.clock import utcnow
from core.schemas.bookings import BulkBookingsSchema, BulkStatusSchema
from core.schemas.customers import CustomerCreateSchema, CustomerListQuerySchema
from core.schemas.flights import FlightImportSchema
from ingress.context import services
from ingress.docs import Blueprint
from ingress.monitoring import current_figures
from ingress.responses.customers import CustomerKeySchema, CustomerPageSchema, CustomerSchema
from ingress.responses.monitoring import (
    CacheClearedSchema,
    CacheStatsSchema,
    HeldLocksSchema,
    PerformanceSchema,
)
from ingress.security import ADMIN_WINDOW, BULK_WINDOW, rate_limit
from ingress.submit import submit_job

blp = Blueprint("admin", __name__, url_prefix="/api/admin", description="Operations")
BULK_ACCEPTED = "Accepted: the job shows progress, then per-item results."


def admin_view(permission: str = access.ADMINISTER, *, bulk: bool = False):
    """Who may call (`permission`) and the budgets spent: every admin view the
    admin budget (tests/ingress/test_security.py checks none is left out), bulk
    work the bulk budget too."""

    def decorate(view):
        view = blp.requires(permission)(view)
        if bulk:
            view = rate_limit("RATE_LIMIT_BULK", BULK_WINDOW, scope="bulk")(view)
        return rate_limit("RATE_LIMIT_ADMIN", ADMIN_WINDOW, scope="admin")(view)

    return decorate


administer = admin_view()


def issues_key(description: str, *problems: int):
    """Document an answer of 201 with a customer's new API key, shown this once."""

    def decorate(view):
        view = blp.problems(*problems)(view)
        return blp.alt_response(
            201, schema=CustomerKeySchema, success=True, description=description
        )(view)

    return decorate


@blp.route("/locks")
class Locks(MethodView):
    @administer
    @blp.alt_response(200, schema=HeldLocksSchema, success=True)
    @blp.problems(503)
    def get(self):
        """Lock keys held now, with their remaining TTL in ms."""
        held = services().locks.held()
        return {"locks": held, "count": len(held)}


@blp.route("/flights/bulk")
class FlightImport(MethodView):
    @admin_view(bulk=True)
    @blp.arguments(FlightImportSchema)
    @blp.accepts_job(400, 413, 415, 422, 503, accepted=BULK_ACCEPTED)
    def post(self, data):
        """Import up to BULK_FLIGHT_LIMIT flights (an upsert per flight_id), in chunks."""
        bulk.check_size(data["flights"], services().settings.BULK_FLIGHT_LIMIT, "flights")
        return submit_job(queues.IMPORT_FLIGHTS, data, {}, bulk=True, accepted_at=int(time.time()))


@blp.route("/bookings/bulk")
class BookingImport(MethodView):
    @admin_view(bulk=True)
    @blp.arguments(BulkBookingsSchema)
    @blp.accepts_job(400, 404, 413, 415, 422, 429, 503, accepted=BULK_ACCEPTED)
    def post(self, data):
        """Create up to BULK_BOOKING_LIMIT bookings, each valid or not on its own,
        owned by `customer_id` if given."""
        svc = services()
        bulk.check_size(data["bookings"], svc.settings.BULK_BOOKING_LIMIT, "bookings")
        if data.get("customer_id") is not None:
            customers.check_owner_exists(svc.db, data["customer_id"])
        return submit_job(queues.IMPORT_BOOKINGS, data, {}, bulk=True)


@blp.route("/bookings/status/bulk")
class StatusUpdates(MethodView):
    @admin_view(access.BULK_STATUS, bulk=True)
    @blp.arguments(BulkStatusSchema)
    @blp.accepts_job(400, 413, 415, 422, 429, 503, accepted=BULK_ACCEPTED)
    def post(self, data):
        """Apply up to BULK_UPDATE_LIMIT status updates in order, each on its own."""
        bulk.check_size(data["updates"], services().settings.BULK_UPDATE_LIMIT, "updates")
        return submit_job(queues.UPDATE_STATUSES, data, {}, bulk=True)


@blp.route("/performance")
class Performance(MethodView):
    @administer
    @blp.alt_response(200, schema=PerformanceSchema, success=True)
    @blp.problems(429, 503)
    def get(self):
        """Throughput, latency, errors, tasks, caches, locks by kind, queues, webhooks, advice."""
        return current_figures()


@blp.route("/cache/warm")
class CacheWarm(MethodView):
    @administer
    @blp.accepts_job(503, accepted=None)
    def post(self):
        """Warm today's and tomorrow's route results for the popular routes, now.

        While a warm job is queued or running, that job is the answer."""
        interval = services().settings.CACHE_WARM_INTERVAL
        return submit_job(queues.WARM_CACHE, {}, {}, coalesce_for=interval)


@blp.route("/cache/stats")
class CacheStats(MethodView):
    @administer
    @blp.alt_response(200, schema=CacheStatsSchema, success=True)
    @blp.problems(503)
    def get(self):
        """Hits, misses and hit rate per cache, and key counts."""
        return services().cache.stats()


@blp.route("/cache/clear")
class CacheClear(MethodView):
    @administer
    @blp.alt_response(200, schema=CacheClearedSchema, success=True)
    @blp.problems(503)
    def delete(self):
        """Drop cache entries only: never locks, jobs or rate-limit counters."""
        return {"deleted": services().cache.clear()}


@blp.route("/customers")
class Customers(MethodView):
    @administer
    @blp.arguments(CustomerCreateSchema)
    @issues_key("Created: `api_key` is shown this once (only its hash is kept).", 400, 415, 503)
    def post(self, data):
        """Create a customer or an operator, with its first API key."""
        issued = customers.create_customer(services().db, now=utcnow(), **data)
        return issued, 201

    @administer
    @blp.arguments(CustomerListQuerySchema, location="query", as_kwargs=True)
    @blp.alt_response(200, schema=CustomerPageSchema, success=True)
    @blp.problems(400, 503)
    def get(self, limit, cursor=None):
        """Customers and operators by customer_id, with `next_cursor` while more follow."""
        return customers.list_customers(services().db, limit=limit, cursor=cursor)


@blp.route("/customers/<customer_id:customer_id>")
class Customer(MethodView):
    @administer
    @blp.alt_response(200, schema=CustomerSchema, success=True)
    @blp.problems(404, 503)
    def delete(self, customer_id):
        """Disable a customer: its key stops working at once; its bookings stay."""
        svc = services()
        return customers.disable_customer(
            svc.db, svc.cache, customer_id, now=utcnow(), ttl=svc.settings.CACHE_TTL_USERS
        )


@blp.route("/customers/<customer_id:customer_id>/keys")
class CustomerKeys(MethodView):
    @administer
    @issues_key("The new key, shown this once; the old one fails from now on.", 404, 409, 503)
    def post(self, customer_id):
        """Rotate a customer's API key."""
        svc = services()
        issued = customers.rotate_key(
            svc.db, svc.cache, customer_id, now=utcnow(), ttl=svc.settings.CACHE_TTL_USERS
        )
        return issued, 201
