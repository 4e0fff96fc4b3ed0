"""/api/bookings: create and transition (through the queue), read, list."""

from __future__ import annotations

from flask.views import MethodView

from core import bookings, jobs, queues
from core.errors import NotFound
from core.ids import is_ref_id, new_ref_id
from core.lifecycle import ACTIONS, CANCELLED, check_transition
from core.schemas import (
    BookingCreateSchema,
    BookingDetailSchema,
    BookingListQuerySchema,
    BookingPageSchema,
    CancelSchema,
    JobAcceptedSchema,
    JobSchema,
    TransitionSchema,
)
from ingress.context import services
from ingress.docs import Blueprint
from ingress.submit import submit_job

blp = Blueprint("bookings", __name__, url_prefix="/api/bookings", description="Cargo bookings")


def booking_links(ref_id: str) -> dict[str, str]:
    return {"booking": f"/api/bookings/{ref_id}"}


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
        return submit_job(queues.CREATE_BOOKING, data, booking_links(ref_id), ref_id=ref_id)

    @blp.arguments(BookingListQuerySchema, location="query", as_kwargs=True)
    @blp.alt_response(200, schema=BookingPageSchema, success=True)
    @blp.problems(400)
    def get(self, limit, **filters):
        """List bookings, newest first, by cursor."""
        svc = services()
        return bookings.read_booking_page(
            svc.db, svc.cache, svc.settings.CACHE_TTL_BOOKING_PAGES, limit=limit, **filters
        )


@blp.route("/<ref_id>")
class Booking(MethodView):
    @blp.alt_response(200, schema=BookingDetailSchema, success=True)
    @blp.problems(404)
    def get(self, ref_id):
        """A booking with its timeline (oldest event first)."""
        svc = services()
        details = is_ref_id(ref_id) and bookings.read_booking_details(
            svc.db, svc.cache, ref_id, svc.settings.CACHE_TTL_BOOKINGS
        )
        if not details:
            raise NotFound(f"No booking {ref_id!r}.")
        return details


def submit_transition(ref_id: str, action: str, data: dict):
    """Refuse what is already impossible, else enqueue the transition job."""
    svc = services()
    target = ACTIONS[action]
    status = bookings.booking_status(svc.db, svc.cache, ref_id) if is_ref_id(ref_id) else None
    if status is not None:
        check_transition(status, target)
    elif not (is_ref_id(ref_id) and jobs.pending_create(svc.db, ref_id)):
        # Unknown: answered here, so random ref_ids never reach the queue.
        raise NotFound(f"No booking {ref_id!r}.")
    return submit_job(
        queues.TRANSITION_BOOKING, data, booking_links(ref_id), ref_id=ref_id, target=target
    )


def _transition_view(action: str, schema):
    target = ACTIONS[action]

    @blp.arguments(schema)
    @blp.alt_response(
        202,
        schema=JobAcceptedSchema,
        success=True,
        description="Accepted: poll the job at `Location`.",
    )
    @blp.alt_response(
        200, schema=JobSchema, success=True, description="Done (with `Prefer: wait=N`)."
    )
    @blp.problems(400, 404, 409, 413, 415, 422, 503)
    def view(data, ref_id):
        return submit_transition(ref_id, action, data)

    view.__name__ = f"{action}_booking"
    view.__doc__ = f"Move a booking to {target} (a job, run under the booking's lock)."
    blp.route(f"/<ref_id>/{action}", methods=["POST"])(view)


for _action in ACTIONS:
    _transition_view(_action, CancelSchema if ACTIONS[_action] == CANCELLED else TransitionSchema)
