"""/api/bookings: create and transition (through the queue), read, list."""

from __future__ import annotations

from flask.views import MethodView

from core import access, booking_lists, bookings, creating, jobs, queues
from core import awb as waybills
from core.errors import BookingNotMade, NotFound
from core.ids import new_ref_id
from core.lifecycle import ACTIONS, CANCELLED, InvalidTransition, next_status
from core.schemas.bookings import (
    BookingCreateSchema,
    BookingListQuerySchema,
    CancelSchema,
    MilestoneSchema,
    TransitionSchema,
)
from ingress.context import services
from ingress.docs import Blueprint, link, links, rate_limited
from ingress.responses.bookings import BookingDetailSchema, BookingPageSchema
from ingress.responses.jobs import JobAcceptedSchema
from ingress.security import MINUTE, current_principal, rate_limit
from ingress.submit import job_response, retried_after_acceptance, submit_job

blp = Blueprint("bookings", __name__, url_prefix="/api/bookings", description="Cargo bookings")

JOB_LINK = link("/api/jobs/{job_id}", "get", job_id="$response.body#/job_id")
BOOKING_LINKS = {
    "job": JOB_LINK,
    "booking": link("/api/bookings/{ref_id}", "get", ref_id="$response.body#/ref_id"),
    "awb": link("/api/awb/{awb}", "get", awb="$response.body#/awb"),
    **{
        action: link(f"/api/bookings/{{ref_id}}/{action}", "post", ref_id="$response.body#/ref_id")
        for action in (*ACTIONS, "milestones")
    },
}

# A list read past its budget (RATE_LIMIT_LISTS per minute per caller).
RATE_LIMITED = rate_limited("Too many list reads (`RATE_LIMIT_LISTS` per minute per caller).")
# A transition or milestone past their one budget (RATE_LIMIT_UPDATES).
UPDATES_LIMITED = rate_limited(
    "Too many status updates (`RATE_LIMIT_UPDATES` per minute per caller)."
)

# A ref_id with no booking; its create job's failure to whoever may read that job.
NO_BOOKING = (
    "No such booking. To whoever may read its create job (its submitter, operators, the"
    " admin), a problem of type `booking-not-made` if that job failed, with its `job_id`"
    " and why."
)
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
        202 names the booking's `ref_id` and its air waybill number, `awb`: the
        request's, or one RadiantGo issues. An `awb` another booking holds is a
        409 `awb-taken` (here, or the job's, if one was stored meanwhile). The
        worker reserves `weight_kg`, and the volume of `dimensions` if given,
        on every leg of `flight_ids`, or on none: a leg short of room fails the
        job with a 409 `flight-full` problem naming the flight and the measure
        that ran out, `short_of` (the answer itself, with `Prefer: wait`)."""
        ref_id = new_ref_id()
        return submit_job(
            queues.CREATE_BOOKINGS,
            data,
            booking_links(ref_id),
            ref_id=ref_id,
            awb=waybills.issue_at_the_door(services().awb_stock, data),
            customer_id=current_principal().customer_id,
        )

    @rate_limit("RATE_LIMIT_LISTS", MINUTE, scope="lists")
    @blp.requires(access.LIST)
    @blp.arguments(BookingListQuerySchema(), location="query", as_kwargs=True)
    @blp.alt_response(200, schema=BookingPageSchema, success=True)
    @blp.problems(400)
    @blp.alt_response(429, **RATE_LIMITED)
    def get(self, limit, **filters):
        """List bookings, newest first, by cursor: a customer's own, or (operators,
        admin) all. Every filter is served by an index: a page reads about
        `limit` bookings, and a filter that matches nothing reads none."""
        svc = services()
        return booking_lists.read_booking_page(
            svc.db,
            svc.cache,
            svc.settings.CACHE_TTL_BOOKING_PAGES,
            limit=limit,
            customer_id=access.restricted_to(current_principal()),
            **filters,
        )


# GET /api/bookings/<ref_id>'s answers (and GET /api/awb/<awb>'s).
TRACKED = {
    "schema": BookingDetailSchema,
    "success": True,
    "description": "The owner, operators and the admin get every field. Anyone else gets"
    " the tracking view: "
    + ", ".join(bookings.TRACKING_FIELDS)
    + ", and each event's "
    + ", ".join(bookings.TRACKING_EVENT_FIELDS)
    + ".",
}
BEING_CREATED = {
    "schema": JobAcceptedSchema,
    "description": "Not stored yet: its create job is queued or running (to whoever may"
    " read that job: its submitter, operators, the admin). The create's own answer,"
    " `Location` its job.",
}


@blp.route("/<ref_id:ref_id>")
class Booking(MethodView):
    @blp.optional_credentials
    @blp.alt_response(200, **TRACKED)
    @blp.alt_response(202, **BEING_CREATED)
    @blp.problems(404, described={404: NO_BOOKING})
    def get(self, ref_id):
        """Track a booking: its status and timeline (oldest event first)."""
        return track(ref_id)


def track(ref_id: str):
    """Booking `ref_id` as the caller may see it, or its create's answer while it is not stored."""
    svc = services()
    details = bookings.read_booking_details(
        svc.db, svc.cache, ref_id, svc.settings.CACHE_TTL_BOOKINGS
    )
    if details is None:
        return being_created(ref_id)
    return booking_view(details)


def booking_view(details: dict):
    """The booking in full to its owner, operators and the admin; else its tracking view."""
    if access.sees_in_full(current_principal(), details):
        return details
    return bookings.tracking_view(details)


def being_created(ref_id: str):
    """A reference whose booking is not stored, to whoever may read its create
    job: 202 while that job runs (the create's own answer), and the 404 of
    not_found once it failed. To anyone else, or with no such job: 404."""
    job = readable_create_job(ref_id)
    if job is None or job["state"] == jobs.FAILED:
        raise not_found(ref_id, job)
    if job["state"] == jobs.SUCCEEDED:  # stored since the first read
        details = bookings.get_booking_details(services().db, ref_id)
        if details is None:
            raise not_found(ref_id, None)
        return booking_view(details)
    return job_response(job, wait=0, accepted=True)


def readable_create_job(ref_id: str) -> dict | None:
    """The job creating booking `ref_id`, if the caller may read it (core.creating);
    never looked up for a caller who reads no jobs (public tracking)."""
    principal = current_principal()
    if access.JOBS not in principal.permissions:
        return None
    svc = services()
    job = creating.create_job(svc.db, svc.redis, ref_id)
    return job if job is not None and access.may_read_job(principal, job) else None


def not_found(ref_id: str, job: dict | None) -> NotFound:
    """No booking `ref_id`: with its failed create `job` (one the caller may
    read), a `booking-not-made` problem that names the job and says why."""
    if job is None or job["state"] != jobs.FAILED:
        return NotFound(f"No booking {ref_id!r}.")
    why = job["error"].get("detail") or job["error"].get("title")
    return BookingNotMade(
        f"Booking {ref_id} was not made: {why}", job_id=job["_id"], links=job["links"]
    )


def submit_transition(
    ref_id: str, data: dict, *, target: str | None = None, milestone: str | None = None
):
    """Refuse what is already impossible (or not the caller's), else enqueue the
    job: a move to `target`, or `milestone` recorded (a transition that keeps
    the status, core.transitions)."""
    svc = services()
    principal = current_principal()
    # Unknown ref_ids are answered here, so they never reach the queue. A
    # booking still being created is known by its pending job (no status yet).
    known = bookings.booking_summary(svc.db, svc.cache, svc.redis, ref_id)
    if known is None:
        raise not_found(ref_id, readable_create_job(ref_id))
    access.check_owner(principal, known, ref_id)
    if "status" in known:
        try:
            next_status(known["status"], target, milestone)
        except InvalidTransition:
            # A client's retry of a transition that was accepted, and has run
            # since, is answered its job (its first answer may have been lost).
            if not retried_after_acceptance(data):
                raise
    step = {"milestone": milestone} if milestone is not None else {"target": target}
    return submit_job(
        queues.TRANSITION_BOOKINGS,
        data,
        booking_links(ref_id),
        ref_id=ref_id,
        owner=access.restricted_to(principal),
        **step,
    )


def _transition_view(action: str, schema):
    target = ACTIONS[action]

    # Every transition counts in one budget, "updates".
    @rate_limit("RATE_LIMIT_UPDATES", MINUTE, scope="updates")
    @blp.requires(access.CANCEL if target == CANCELLED else access.HANDLE)
    @links(202, job=JOB_LINK)
    @blp.alt_response(429, **UPDATES_LIMITED)
    @blp.arguments(schema, required=False)  # every field is optional: so is the body
    @blp.accepts_job(400, 404, 409, 413, 415, 422, 503, done=DONE, described={404: NO_BOOKING})
    def view(data, ref_id):
        return submit_transition(ref_id, data, target=target)

    view.__name__ = view.__qualname__ = f"{action}_booking"
    who = "its owner, an operator or the admin" if target == CANCELLED else "an operator"
    view.__doc__ = f"Move a booking to {target} ({who}): a job, run under the booking's lock."
    blp.route(f"/<ref_id:ref_id>/{action}", methods=["POST"])(view)


for _action in ACTIONS:
    _transition_view(
        _action, CancelSchema() if ACTIONS[_action] == CANCELLED else TransitionSchema()
    )


# A milestone counts in the transitions' budget, "updates".
@blp.route("/<ref_id:ref_id>/milestones", methods=["POST"])
@rate_limit("RATE_LIMIT_UPDATES", MINUTE, scope="updates")
@blp.requires(access.HANDLE)
@links(202, job=JOB_LINK)
@blp.alt_response(429, **UPDATES_LIMITED)
@blp.arguments(MilestoneSchema())
@blp.accepts_job(400, 404, 409, 413, 415, 422, 503, done=DONE, described={404: NO_BOOKING})
def record_milestone(data, ref_id):
    """Record an IATA milestone (an operator): a job, run under the booking's lock.

    A milestone keeps the booking's status and joins its timeline with its
    `code`, `location` and `occurred_at` (`at`). RCS and MAN are recorded while
    the booking is BOOKED, RCF and NFD while it is ARRIVED; out of that order, a
    409 problem of type `milestone-out-of-order` (here, or as the job's failure)."""
    return submit_transition(ref_id, data, milestone=data["code"])
