"""/api/admin: operators' views. (Authentication is one decorator on this blueprint.)"""

from __future__ import annotations

from flask.views import MethodView

from core import locks
from core.schemas import HeldLocksSchema
from ingress.context import services
from ingress.docs import Blueprint

blp = Blueprint("admin", __name__, url_prefix="/api/admin", description="Operations")


@blp.route("/locks")
class Locks(MethodView):
    @blp.alt_response(200, schema=HeldLocksSchema, success=True)
    @blp.problems(503)
    def get(self):
        """Lock keys held now, with their remaining TTL in ms."""
        held = locks.held_locks(services().redis)
        return {"locks": held, "count": len(held)}
