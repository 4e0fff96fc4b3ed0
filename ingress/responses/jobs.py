"""The answers about jobs: a 202's acceptance and a job's document."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from core import awb
from ingress.responses.common import LinksSchema, ProblemSchema, UtcDateTime

JOB_STATES = ("queued", "running", "succeeded", "failed")


class JobAcceptedSchema(Schema):
    job_id = fields.String(required=True)
    state = fields.String(required=True, validate=validate.OneOf(JOB_STATES))
    ref_id = fields.String()
    awb = fields.String(
        metadata={
            "pattern": awb.CANONICAL_PATTERN,
            "description": "A create's air waybill number: the request's, or one RadiantGo"
            " issued. Absent when it was accepted while MongoDB was out and its stock of"
            " serials dry: its worker issues it as it stores the booking",
        }
    )
    links = fields.Nested(LinksSchema, required=True)


class ProgressSchema(Schema):
    total = fields.Integer()
    done = fields.Integer()
    failed = fields.Integer()


class JobSchema(Schema):
    job_id = fields.String()
    type = fields.String(metadata={"example": "booking.create"})
    state = fields.String(validate=validate.OneOf(JOB_STATES))
    created_at = UtcDateTime()
    started_at = UtcDateTime(allow_none=True)
    finished_at = UtcDateTime(allow_none=True)
    result = fields.Dict(allow_none=True)
    error = fields.Nested(ProblemSchema, allow_none=True)
    links = fields.Nested(LinksSchema)
    progress = fields.Nested(
        ProgressSchema, metadata={"description": "Bulk jobs: items so far, while running"}
    )
