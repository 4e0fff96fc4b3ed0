"""/api/awb: tracking by air waybill number, as /api/bookings/<ref_id> tracks."""

from __future__ import annotations

from flask.views import MethodView

from core import awb as waybills
from core.errors import NotFound
from ingress.bookings import BEING_CREATED, NO_BOOKING, TRACKED, track
from ingress.context import services
from ingress.docs import Blueprint

blp = Blueprint(
    "awb", __name__, url_prefix="/api/awb", description="Tracking by air waybill number"
)


@blp.route("/<awb:awb>")
class Waybill(MethodView):
    @blp.optional_credentials
    @blp.alt_response(200, **TRACKED)
    @blp.alt_response(202, **BEING_CREATED)
    @blp.problems(404, described={404: NO_BOOKING})
    def get(self, awb):
        """Track a booking by its air waybill number (the hyphen may be left
        out): exactly as GET /api/bookings/{ref_id} tracks it."""
        svc = services()
        ref_id = waybills.ref_id_of(svc.db, svc.redis, awb)
        if ref_id is None:
            raise NotFound(f"No booking has air waybill number {awb}.")
        return track(ref_id)
