"""MongoDB connection and the collections' indexes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel, MongoClient
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import BulkWriteError

from core.settings import Settings

# MongoDB's error code for a unique index refusing an insert (a redelivery's
# write, mostly: every write here is keyed so that a rerun collides).
DUPLICATE_KEY = 11000


def insert_many_new(collection: Collection, docs: Sequence[dict[str, Any]]) -> list[int]:
    """Insert `docs` in one unordered bulk write; returns the indexes (into
    `docs`) of those a unique index refused, stored already. Any other write
    error is raised: only duplicates are expected."""
    if not docs:
        return []
    try:
        collection.insert_many(docs, ordered=False)
    except BulkWriteError as exc:
        errors = exc.details.get("writeErrors", [])
        if any(e.get("code") != DUPLICATE_KEY for e in errors):
            raise
        return sorted(e["index"] for e in errors)
    return []


DEFAULT_DATABASE = "radiantgo"


def connect_mongo(settings: Settings) -> MongoClient:
    """One client (one pool) per process; call after fork, never at import."""
    return MongoClient(
        settings.MONGODB_URI,
        tz_aware=True,
        maxPoolSize=settings.DB_POOL_SIZE,
        minPoolSize=settings.DB_POOL_MIN,
        maxIdleTimeMS=settings.DB_MAX_IDLE_MS,
        serverSelectionTimeoutMS=settings.DB_TIMEOUT_MS,
        connectTimeoutMS=settings.DB_TIMEOUT_MS,
        appname="radiantgo",
    )


def database(client: MongoClient) -> Database:
    return client.get_default_database(DEFAULT_DATABASE)


INDEXES: dict[str, list[IndexModel]] = {
    "bookings": [
        IndexModel([("ref_id", ASCENDING)], unique=True),
        # Air waybill numbers (core.awb): one booking each. Sparse, not
        # partial, for bookings stored before AWBs (the embedded server uses no
        # partial index for a find); a booking without one has no `awb` field.
        IndexModel([("awb", ASCENDING)], unique=True, sparse=True),
        # The lists (core.booking_lists.list_filter): a list key, then the status
        # when the list filters on it, then the cursor's order. Every filter
        # is an equality on the prefix, so a page reads only what it shows and
        # a filter that matches nothing reads nothing, on the embedded server
        # (whose planner takes an index whose leading fields are exactly the
        # query's equalities, then one range) and on mongod alike.
        IndexModel([("list_keys", ASCENDING), ("created_at", DESCENDING), ("ref_id", DESCENDING)]),
        IndexModel(
            [
                ("list_keys", ASCENDING),
                ("status", ASCENDING),
                ("created_at", DESCENDING),
                ("ref_id", DESCENDING),
            ]
        ),
    ],
    "booking_events": [
        IndexModel([("booking_id", ASCENDING), ("at_ts", DESCENDING)]),
        # The outboxes of webhooks (core.notifications): events, finished jobs
        # and test events not dispatched yet.
        IndexModel([("dispatched", ASCENDING)]),
    ],
    "webhook_events": [IndexModel([("dispatched", ASCENDING)])],
    # A flight's `_id` is its flight_id (number + UTC date): unique by construction.
    # Two indexes only: each one more costs imports dearly on the embedded
    # server (20,000 flights: 5,906/s with these two, 4,591/s with origin +
    # destination + departure as well, 2,613/s with flight_number too; measured).
    # Direct flights and flight lists are read through the first and filtered
    # on destination in code (at most a day of one airport's departures).
    "flights": [
        IndexModel([("origin", ASCENDING), ("departure_ts", ASCENDING)]),
        IndexModel([("destination", ASCENDING), ("departure_ts", ASCENDING)]),
    ],
    "jobs": [
        # Records expire JOB_TTL_DAYS after creation (expire_at is set per record).
        IndexModel([("expire_at", ASCENDING)], expireAfterSeconds=0),
        # The jobs about one booking (a pending create, for transitions). Not a
        # partial index: the embedded server never uses those for a find.
        IndexModel([("ref_id", ASCENDING), ("created_at", ASCENDING)]),
        IndexModel([("dispatched", ASCENDING)]),
    ],
    # API keys are looked up by their hash (the key itself is never stored).
    "customers": [
        IndexModel([("key_hash", ASCENDING)], unique=True),
    ],
    # Webhooks (core.webhook_endpoints): an owner's endpoints, listed by id;
    # an endpoint's deliveries, newest first; the deliveries due (core.delivery_slots.due).
    "webhook_endpoints": [
        IndexModel([("owner", ASCENDING), ("_id", ASCENDING)]),
    ],
    "webhook_deliveries": [
        IndexModel([("endpoint_id", ASCENDING), ("created_at", DESCENDING), ("_id", DESCENDING)]),
        IndexModel([("state", ASCENDING), ("next_at", ASCENDING)]),
    ],
    # Claims on Idempotency-Keys (`_id` is the key), gone after IDEMPOTENCY_TTL_HOURS.
    "idempotency_keys": [
        IndexModel([("expire_at", ASCENDING)], expireAfterSeconds=0),
    ],
}


# Indexes earlier versions created that nothing reads any more: dropped at
# start, since every index slows every insert.
OBSOLETE_INDEXES: dict[str, tuple[str, ...]] = {
    "flights": ("origin_1_destination_1_departure_ts_1", "flight_number_1"),
    # The lists' before list keys: each read a customer's or a route's
    # bookings and filtered the rest in code.
    "bookings": (
        # The spec's status + updated_at: no query of ours reads it, and each
        # index costs every booking write (a status change re-keys it).
        "status_1_updated_at_-1",
        "origin_1_destination_1_created_at_-1",
        "created_at_-1_ref_id_-1",
        "status_1_created_at_-1_ref_id_-1",
        "customer_id_1_created_at_-1_ref_id_-1",
    ),
}


def ensure_indexes(db: Database) -> None:
    """Create every index and drop obsolete ones; a no-op when done (safe at each start)."""
    for name, models in INDEXES.items():
        db[name].create_indexes(models)
    for name, obsolete in OBSOLETE_INDEXES.items():
        present = set(db[name].index_information())
        for index in present.intersection(obsolete):
            db[name].drop_index(index)
