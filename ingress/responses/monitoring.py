"""The answers of the health check and the admin's figures: the caches,
locks, the ledger's audit, webhook deliveries, scaling advice."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from core.locks import LATENCY_SAMPLES, LOCK_KINDS, LOCK_PREFIXES
from core.metrics import SAMPLES, WEBHOOK_BACKLOG_SCAN
from core.monitoring import TOP_WEBHOOK_ENDPOINTS


class CacheKindStatsSchema(Schema):
    hits = fields.Integer()
    misses = fields.Integer()
    hit_rate = fields.Float(allow_none=True)


class CacheStatsSchema(Schema):
    kinds = fields.Dict(keys=fields.String(), values=fields.Nested(CacheKindStatsSchema))
    keys = fields.Dict(keys=fields.String(), values=fields.Integer())


class CacheClearedSchema(Schema):
    deleted = fields.Integer()


class HeldLockSchema(Schema):
    key = fields.String(
        metadata={
            "example": "flight:RG001-20261201",
            "description": "Its prefix says what it guards: "
            + ", ".join(f"{prefix}..." for prefix in LOCK_PREFIXES),
        }
    )
    ttl_ms = fields.Integer()


class HeldLocksSchema(Schema):
    locks = fields.List(fields.Nested(HeldLockSchema))
    count = fields.Integer()


class ServiceHealthSchema(Schema):
    """One service's probe (core.health). Services of several nodes (a RabbitMQ
    cluster, the lock masters) probe each node and count those that answered."""

    status = fields.String(
        required=True,
        validate=validate.OneOf(("healthy", "degraded", "unhealthy")),
        metadata={
            "description": "degraded: a service of several nodes with some of them down"
            " (RabbitMQ: at least one answers; the lock masters: a majority answers)"
        },
    )
    latency_ms = fields.Float(
        required=True,
        allow_none=True,
        metadata={
            "description": "The probe's round trip; of several nodes, the slowest answering"
            " one's. Null when none answered."
        },
    )
    nodes_up = fields.Integer(
        validate=validate.Range(min=0),
        metadata={"description": "Services of several nodes only: the nodes that answered"},
    )
    nodes = fields.Integer(
        validate=validate.Range(min=2),
        metadata={"description": "Services of several nodes only: the nodes probed"},
    )


class HealthMetricsSchema(Schema):
    totalRequests = fields.Integer()
    cacheHitRate = fields.String(allow_none=True, metadata={"example": "87.3%"})
    averageResponseTime = fields.Float()
    requestsPerSecond = fields.String(metadata={"example": "12.5"})


class HealthSchema(Schema):
    status = fields.String(validate=validate.OneOf(("healthy", "degraded", "unhealthy")))
    services = fields.Dict(
        keys=fields.String(),
        values=fields.Nested(ServiceHealthSchema),
        metadata={
            "description": "mongodb, redis, rabbitmq and workers; locks (the lock masters)"
            " when LOCK_REDIS_URLS is set"
        },
    )
    metrics = fields.Nested(HealthMetricsSchema)


class RecommendationSchema(Schema):
    type = fields.String(metadata={"example": "scale_up"})
    component = fields.String(metadata={"example": "backend"})
    reason = fields.String()
    priority = fields.String(metadata={"example": "HIGH"})


class LockAcquireMsSchema(Schema):
    p50 = fields.Float(allow_none=True)
    p95 = fields.Float(allow_none=True)
    max = fields.Float(allow_none=True)


class LockFiguresSchema(Schema):
    acquired = fields.Integer(metadata={"description": "Locks acquired"})
    failed = fields.Integer(
        metadata={"description": "Acquisitions given up: the lock stayed taken through every try"}
    )
    errors = fields.Integer(metadata={"description": "Tries that found Redis unreachable"})
    attempts = fields.Integer(metadata={"description": "Tries, acquired or failed"})
    average_attempts = fields.Float(
        metadata={"description": "Tries per acquisition or failure: above 1 is contention"}
    )
    acquire_ms = fields.Nested(
        LockAcquireMsSchema,
        metadata={
            "description": f"First try -> acquired, over the last {LATENCY_SAMPLES:,} acquisitions"
        },
    )
    held = fields.Integer(metadata={"description": "Locks held now"})


# One property per lock kind (core.locks.LOCK_KINDS), so the document names them all.
LockKindsSchema = Schema.from_dict(
    {kind: fields.Nested(LockFiguresSchema) for kind in LOCK_KINDS}, name="LockKindsSchema"
)


class LockPerformanceSchema(LockFiguresSchema):
    by_kind = fields.Nested(
        LockKindsSchema,
        metadata={
            "description": "The same figures per kind of lock (its key's prefix): booking"
            " locks (transitions), flight locks (cargo space), bulk and singleton locks;"
            " the figures above are every lock's together"
        },
    )


class LedgerFiguresSchema(Schema):
    checked_at = fields.String(
        metadata={"description": "When the last audit ran (beat's, or `make ledger`)"}
    )
    flights_checked = fields.Integer(metadata={"description": "Flights that carry anything"})
    flights_unbalanced = fields.Integer(
        metadata={"description": "Flights whose books do not balance: `make ledger` names them"}
    )
    drift_kg = fields.Float(
        metadata={"description": "Booked weight that no reservation accounts for, summed"}
    )
    drift_m3 = fields.Float(
        metadata={"description": "Booked volume that no reservation accounts for, summed"}
    )
    orphans = fields.Integer(metadata={"description": "Reservations no live booking holds"})
    unreserved = fields.Integer(metadata={"description": "Live bookings missing a reservation"})


class WebhookCountsSchema(Schema):
    delivered = fields.Integer(metadata={"description": "Deliveries that got a 2xx"})
    failed = fields.Integer(
        metadata={
            "description": "Deliveries given up: the retry schedule spent, or the endpoint"
            " disabled or deleted"
        }
    )
    attempts = fields.Integer(metadata={"description": "Attempts made"})
    failed_attempts = fields.Integer(
        metadata={"description": "Attempts without a 2xx (an error, a timeout, any other status)"}
    )
    backlog = fields.Integer(metadata={"description": "Deliveries pending"})
    due = fields.Integer(
        metadata={"description": "Of the pending, those due now (the rest wait for a retry)"}
    )
    in_flight = fields.Integer(metadata={"description": "Attempts under way now"})


class WebhookEndpointFiguresSchema(WebhookCountsSchema):
    endpoint_id = fields.String()


class WebhookLagSchema(Schema):
    p50 = fields.Float(allow_none=True)
    p95 = fields.Float(allow_none=True)
    p99 = fields.Float(allow_none=True)


class WebhookFiguresSchema(WebhookCountsSchema):
    backlog_capped = fields.Boolean(
        metadata={
            "description": f"The backlog was counted up to {WEBHOOK_BACKLOG_SCAN:,}"
            " pending deliveries: there are at least that many"
        }
    )
    disabled_endpoints = fields.Integer(metadata={"description": "Endpoints disabled"})
    lag_ms = fields.Nested(
        WebhookLagSchema,
        metadata={
            "description": f"An event's commit -> its 2xx, over the last {SAMPLES:,}"
            " deliveries (retries included)"
        },
    )
    backlog_growing = fields.Boolean(
        metadata={
            "description": "The backlog rose in each of the last samples (beat's, as the"
            " queue depths)"
        }
    )
    growth_per_s = fields.Float(allow_none=True)
    growing_for_s = fields.Float(allow_none=True)
    history = fields.List(
        fields.Integer(), metadata={"description": "The backlog's latest samples, newest first"}
    )
    endpoints = fields.List(
        fields.Nested(WebhookEndpointFiguresSchema),
        metadata={
            "description": f"The {TOP_WEBHOOK_ENDPOINTS} endpoints with the largest"
            " backlog, largest first"
        },
    )


class PerformanceSchema(Schema):
    requests = fields.Dict()
    customers = fields.Dict(
        metadata={"description": "customer_id -> {requests, errors}, the busiest first"}
    )
    tasks = fields.Dict()
    cache = fields.Dict()
    locks = fields.Nested(LockPerformanceSchema)
    queues = fields.Dict()
    memory = fields.Dict()
    processes = fields.Dict(
        metadata={"description": "restarts: make run's processes restarted by supervisord, by name"}
    )
    ledger = fields.Nested(
        LedgerFiguresSchema,
        allow_none=True,
        metadata={"description": "The last audit of every flight's cargo space (null: none yet)"},
    )
    webhooks = fields.Nested(
        WebhookFiguresSchema,
        metadata={
            "description": "Webhook deliveries in total and per endpoint: counts since"
            " Redis was last emptied, the backlog as MongoDB has it now"
        },
    )
    scalingRecommendations = fields.List(fields.Nested(RecommendationSchema))
