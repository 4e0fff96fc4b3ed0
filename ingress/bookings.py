"""/api/bookings: create and transition (through the queue), read, list."""

from __future__ import annotations

from flask.views import MethodView

from core import access, bookings, queues
from core.errors import NotFound
from core.ids import new_ref_id
from core.lifecycle import ACTIONS, CANCELLED, check_transition
from core.schemas import (
    BookingCreateSchema,
    BookingDetailSchema,
    BookingListQuerySchema,
    BookingPageSchema,
    CancelSchema,
    TransitionSchema,
)
from ingress.context import services
from ingress.docs import Blueprint, link, links
from ingress.security import MINUTE, current_principal, rate_limit
from ingress.submit import submit_job

blp = Blueprint("bookings", __name__, url_prefix="/api/bookings", description="Cargo bookings")

JOB_LINK = link("/api/jobs/{job_id}", "get", job_id="$response.body#/job_id")
BOOKING_LINKS = {
    "job": JOB_LINK,
    "booking": link("/api/bookings/{ref_id}", "get", ref_id="$response.body#/ref_id"),
    **{
        action: link(f"/api/bookings/{{ref_id}}/{action}", "post", ref_id="$response.body#/ref_id")
        for action in ACTIONS
    },
}

# What a job's submitter gets when `Prefer: wait=N` saw the job end.
CREATED = (201, "Created (with `Prefer: wait=N`): `Location` is the booking.")
DONE = (200, "Done (with `Prefer: wait=N`).")


def booking_links(ref_id: str) -> dict[str, str]:
    return {"booking": f"/api/bookings/{ref_id}"}


@blp.route("")
class Bookings(MethodView):
    @rate_limit("RATE_LIMIT_BOOKINGS", MINUTE, scope="bookings")
    @blp.requires(access.BOOK)
    @links(202, **BOOKING_LINKS)
    @blp.arguments(BookingCreateSchema())  # an instance: webargs builds a class's per request
    @blp.accepts_job(400, 409, 413, 415, 422, 503, done=CREATED)
    def post(self, data):
        """Book cargo (a customer's key): enqueue a booking-creation job. The
        worker reserves `weight_kg` on every leg of `flight_ids`, or on none:
        a leg short of room fails the job with a 409 `flight-full` problem
        naming the flight (the answer itself, with `Prefer: wait`)."""
        ref_id = new_ref_id()
        customer_id = current_principal().customer_id
        return submit_job(
            queues.CREATE_BOOKING,
            data,
            booking_links(ref_id),
            ref_id=ref_id,
            customer_id=customer_id,
        )

    @blp.requires(access.LIST)
    @blp.arguments(BookingListQuerySchema(), location="query", as_kwargs=True)
    @blp.alt_response(200, schema=BookingPageSchema, success=True)
    @blp.problems(400)
    def get(self, limit, **filters):
        """List bookings, newest first, by cursor: a customer's own, or (operators, admin) all."""
        svc = services()
        return bookings.read_booking_page(
            svc.db,
            svc.cache,
            svc.settings.CACHE_TTL_BOOKING_PAGES,
            limit=limit,
            customer_id=access.restricted_to(current_principal()),
            **filters,
        )


@blp.route("/<ref_id:ref_id>")
class Booking(MethodView):
    @blp.optional_credentials
    @blp.alt_response(
        200,
        schema=BookingDetailSchema,
        success=True,
        description="The owner, operators and the admin get every field. Anyone else gets"
        " the tracking view: "
        + ", ".join(bookings.TRACKING_FIELDS)
        + ", and each event's "
        + ", ".join(bookings.TRACKING_EVENT_FIELDS)
        + ".",
    )
    @blp.problems(404)
    def get(self, ref_id):
        """Track a booking: its status and timeline (oldest event first)."""
        svc = services()
        details = bookings.read_booking_details(
            svc.db, svc.cache, ref_id, svc.settings.CACHE_TTL_BOOKINGS
        )
        if details is None:
            raise NotFound(f"No booking {ref_id!r}.")
        if access.sees_in_full(current_principal(), details):
            return details
        return bookings.tracking_view(details)


def submit_transition(ref_id: str, action: str, data: dict):
    """Refuse what is already impossible (or not the caller's), else enqueue the job."""
    svc = services()
    principal = current_principal()
    target = ACTIONS[action]
    # Unknown ref_ids are answered here, so they never reach the queue. A
    # booking still being created is known by its pending job (no status yet).
    known = bookings.booking_summary(svc.db, svc.cache, svc.redis, ref_id)
    access.check_owner(principal, known, ref_id)
    if "status" in known:
        check_transition(known["status"], target)
    return submit_job(
        queues.TRANSITION_BOOKING,
        data,
        booking_links(ref_id),
        ref_id=ref_id,
        target=target,
        owner=access.restricted_to(principal),
    )


def _transition_view(action: str, schema):
    target = ACTIONS[action]

    # Every transition counts in one budget, "updates".
    @rate_limit("RATE_LIMIT_UPDATES", MINUTE, scope="updates")
    @blp.requires(access.CANCEL if target == CANCELLED else access.HANDLE)
    @links(202, job=JOB_LINK)
    @blp.arguments(schema)
    @blp.accepts_job(400, 404, 409, 413, 415, 422, 503, done=DONE)
    def view(data, ref_id):
        return submit_transition(ref_id, action, data)

    view.__name__ = view.__qualname__ = f"{action}_booking"
    who = "its owner, an operator or the admin" if target == CANCELLED else "an operator"
    view.__doc__ = f"Move a booking to {target} ({who}): a job, run under the booking's lock."
    blp.route(f"/<ref_id:ref_id>/{action}", methods=["POST"])(view)


for _action in ACTIONS:
    _transition_view(
        _action, CancelSchema() if ACTIONS[_action] == CANCELLED else TransitionSchema()
    )
