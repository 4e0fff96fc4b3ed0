"""/api/jobs: what became of accepted work."""

from __future__ import annotations

from flask.views import MethodView

from core import access, queued_jobs
from core.errors import NotFound
from ingress.context import prefer_wait, services
from ingress.docs import Blueprint
from ingress.responses.jobs import JobSchema
from ingress.security import MINUTE, current_principal, rate_limit
from ingress.submit import job_response

blp = Blueprint("jobs", __name__, url_prefix="/api/jobs", description="Asynchronous jobs")


@blp.route("/<job_id:job_id>")
class Job(MethodView):
    @rate_limit("RATE_LIMIT_JOBS", MINUTE, scope="jobs")
    @blp.requires(access.JOBS)
    @blp.alt_response(
        200,
        schema=JobSchema,
        success=True,
        description="The job; while it is unfinished, `Retry-After`: 1 s for a young"
        " job, then half its age, up to 10 s.",
    )
    @blp.problems(404)
    def get(self, job_id):
        """A job you submitted (operators, the admin: any job). Honors `Prefer: wait=N`."""
        svc = services()
        job = queued_jobs.find_job(svc.db, svc.redis, job_id)
        if job is None or not access.may_read_job(current_principal(), job):
            raise NotFound(f"No job {job_id!r} (unknown, or expired).")
        return job_response(job, wait=prefer_wait(), accepted=False)
