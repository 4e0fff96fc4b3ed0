"""/api/bookings: create (through the queue), read, list."""

from __future__ import annotations

from flask.views import MethodView

from core import bookings, cache, queues
from core.errors import NotFound
from core.ids import is_ref_id, new_ref_id
from core.schemas import (
    BookingCreateSchema,
    BookingDetailSchema,
    BookingListQuerySchema,
    BookingPageSchema,
    JobAcceptedSchema,
    JobSchema,
)
from ingress.context import services
from ingress.docs import Blueprint
from ingress.submit import submit_job

blp = Blueprint("bookings", __name__, url_prefix="/api/bookings", description="Cargo bookings")


@blp.route("")
class Bookings(MethodView):
    @blp.arguments(BookingCreateSchema)
    @blp.alt_response(
        202,
        schema=JobAcceptedSchema,
        success=True,
        description="Accepted: poll the job at `Location`.",
    )
    @blp.alt_response(
        201,
        schema=JobSchema,
        success=True,
        description="Created (with `Prefer: wait=N`): `Location` is the booking.",
    )
    @blp.problems(400, 413, 415, 422, 503)
    def post(self, data):
        """Book cargo: enqueue a booking-creation job."""
        ref_id = new_ref_id()
        return submit_job(
            queues.CREATE_BOOKING, data, {"booking": f"/api/bookings/{ref_id}"}, ref_id=ref_id
        )

    @blp.arguments(BookingListQuerySchema, location="query", as_kwargs=True)
    @blp.alt_response(200, schema=BookingPageSchema, success=True)
    @blp.problems(400)
    def get(self, limit, **filters):
        """List bookings, newest first, by cursor."""
        svc = services()
        query = {"limit": limit, **filters}
        key = cache.booking_page_key(svc.cache.generation(cache.BOOKING_PAGES_GENERATION), query)
        page = svc.cache.get(key, cache.BOOKING_PAGES)
        if page is None:
            page = bookings.list_bookings(svc.db, limit=limit, **filters)
            svc.cache.set(key, page, svc.settings.CACHE_TTL_BOOKING_PAGES)
        return page


@blp.route("/<ref_id>")
class Booking(MethodView):
    @blp.alt_response(200, schema=BookingDetailSchema, success=True)
    @blp.problems(404)
    def get(self, ref_id):
        """A booking with its timeline (oldest event first)."""
        if not is_ref_id(ref_id):
            raise NotFound(f"No booking {ref_id!r}.")
        svc = services()
        key = cache.booking_details_key(ref_id)
        details = svc.cache.get(key, cache.BOOKING_DETAILS)
        if details is None:
            details = bookings.get_booking_details(svc.db, ref_id)
            if details is None:
                raise NotFound(f"No booking {ref_id!r}.")
            if bookings.timeline_is_complete(details):
                svc.cache.set_versioned(
                    key, details["version"], details, svc.settings.CACHE_TTL_BOOKINGS
                )
        return details
