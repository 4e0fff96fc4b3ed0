"""Customers and their API keys: created, listed, rotated and disabled by the
admin; looked up on every keyed request.

Only a key's SHA-256 is stored. Keys are 256 random bits, so a fast hash is
enough: there is nothing to brute-force that a slow one would protect.

Lookups are cached in Redis for CACHE_TTL_USERS (the spec's user data, 30 min),
as versioned entries (see core.cache). Revocation must win over that cache
even against a racing reader, so rotate and disable run in this order:
1. read the customer (version v);
2. fence the old key's cache entry at v + 1: its value is gone, and a reader
   still holding the version-v record can no longer put it back;
3. write the change as version v + 1, conditional on v.
If Redis is down at step 2 nothing has changed yet (503, try again); if the
write fails at step 3 the fence only costs the old key a few uncached lookups.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from pymongo.database import Database

from core import cache_keys
from core.access import CUSTOMER, KEY_ROLES, Principal
from core.cache import Cache
from core.errors import Conflict, CustomerDisabled, NotFound
from core.ids import API_KEY_PREFIX, new_api_key, new_customer_id

REVOKE_TRIES = 3


def hash_api_key(api_key: str) -> str:
    return hashlib.sha256(api_key.encode("utf-8", "surrogatepass")).hexdigest()


def _key_fields(api_key: str) -> dict[str, str]:
    # The first characters after the prefix, so an operator can tell keys apart.
    return {"key_hash": hash_api_key(api_key), "key_hint": api_key[: len(API_KEY_PREFIX) + 6]}


def public_customer(doc: dict[str, Any]) -> dict[str, Any]:
    return {
        "customer_id": doc["_id"],
        "name": doc["name"],
        "email": doc["email"],
        "role": doc["role"],
        "key_hint": doc["key_hint"],
        "active": doc.get("disabled_at") is None,
        "created_at": doc["created_at"],
        "key_rotated_at": doc["key_rotated_at"],
        "disabled_at": doc.get("disabled_at"),
    }


def issued(doc: dict[str, Any], api_key: str) -> dict[str, Any]:
    """What the admin sees once, when a key is made: the key itself."""
    return {**public_customer(doc), "api_key": api_key}


def create_customer(
    db: Database, *, name: str, email: str, role: str, now: datetime
) -> dict[str, Any]:
    """A new active customer with a fresh key; the answer is the only copy of the key."""
    if role not in KEY_ROLES:
        raise ValueError(f"role {role!r} is not one of {KEY_ROLES}")
    api_key = new_api_key()
    doc = {
        "_id": new_customer_id(),
        "name": name,
        "email": email,
        "role": role,
        **_key_fields(api_key),
        "version": 1,
        "created_at": now,
        "key_rotated_at": now,
        "disabled_at": None,
    }
    db.customers.insert_one(doc)
    return issued(doc, api_key)


def list_customers(db: Database, *, limit: int, cursor: str | None = None) -> dict[str, Any]:
    """By customer_id, keyset-paginated."""
    query = {"_id": {"$gt": cursor}} if cursor else {}
    docs = list(db.customers.find(query).sort("_id", 1).limit(limit + 1))
    next_cursor = docs[limit - 1]["_id"] if len(docs) > limit else None
    return {"items": [public_customer(d) for d in docs[:limit]], "next_cursor": next_cursor}


def _revoke(
    db: Database, cache: Cache, customer_id: str, change: dict[str, Any], ttl: int, *, allow
) -> dict[str, Any]:
    """Apply `change` to the customer so that its current key stops working at once."""
    for _ in range(REVOKE_TRIES):
        doc = db.customers.find_one({"_id": customer_id})
        if doc is None:
            raise NotFound(f"No customer {customer_id!r}.")
        if not allow(doc):
            return doc
        version = doc["version"] + 1
        cache.invalidate_versioned(cache_keys.api_key_key(doc["key_hash"]), version, ttl)
        written = db.customers.update_one(
            {"_id": customer_id, "version": doc["version"]},
            {"$set": {**change, "version": version}},
        )
        if written.modified_count == 1:
            return {**doc, **change, "version": version}
    raise Conflict(f"Customer {customer_id} kept changing; try again.")


def rotate_key(
    db: Database, cache: Cache, customer_id: str, *, now: datetime, ttl: int
) -> dict[str, Any]:
    """A new key for the customer; the old one fails from the next request on."""
    api_key = new_api_key()

    def allow(doc: dict[str, Any]) -> bool:
        if doc.get("disabled_at") is not None:
            raise Conflict(f"Customer {customer_id} is disabled; its key cannot be rotated.")
        return True

    change = {**_key_fields(api_key), "key_rotated_at": now}
    return issued(_revoke(db, cache, customer_id, change, ttl, allow=allow), api_key)


def disable_customer(
    db: Database, cache: Cache, customer_id: str, *, now: datetime, ttl: int
) -> dict[str, Any]:
    """Disable the customer (its bookings stay); idempotent."""
    doc = _revoke(
        db,
        cache,
        customer_id,
        {"disabled_at": now},
        ttl,
        allow=lambda doc: doc.get("disabled_at") is None,
    )
    return public_customer(doc)


def principal_of(cached: dict[str, Any]) -> Principal:
    """The principal of an API key's cache entry (as authenticate stores it)."""
    return Principal(role=cached["role"], customer_id=cached["customer_id"])


def authenticate(db: Database, cache: Cache, api_key: str, ttl: int) -> Principal | None:
    """The principal an API key stands for; None if it is unknown, rotated or disabled."""
    if not api_key.startswith(API_KEY_PREFIX):
        return None
    key_hash = hash_api_key(api_key)
    cache_key = cache_keys.api_key_key(key_hash)
    cached = cache.get(cache_key, cache_keys.USERS)
    if cached is None:
        doc = db.customers.find_one(
            {"key_hash": key_hash}, {"role": 1, "version": 1, "disabled_at": 1}
        )
        if doc is None or doc.get("disabled_at") is not None:
            return None
        cached = {"role": doc["role"], "customer_id": doc["_id"]}
        cache.set_versioned(cache_key, doc["version"], cached, ttl)
    return principal_of(cached)


def key_is_active(db: Database, api_key: str) -> bool:
    """True while `api_key` is a current key of an active customer (read from MongoDB)."""
    doc = db.customers.find_one({"key_hash": hash_api_key(api_key)}, {"disabled_at": 1})
    return doc is not None and doc.get("disabled_at") is None


def disabled_among(db: Database, customer_ids: list[str | None]) -> set[str]:
    """Those of `customer_ids` that are disabled (one read; None stands for no customer)."""
    ids = sorted({cid for cid in customer_ids if cid is not None})
    if not ids:
        return set()
    found = db.customers.find({"_id": {"$in": ids}, "disabled_at": {"$ne": None}}, {"_id": 1})
    return {doc["_id"] for doc in found}


def check_active(db: Database, customer_id: str | None) -> None:
    """CustomerDisabled if `customer_id` (a job's submitter) was disabled since."""
    if customer_id in disabled_among(db, [customer_id]):
        raise CustomerDisabled(disabled_detail(customer_id))


def disabled_detail(customer_id: str) -> str:
    return f"Customer {customer_id} was disabled after this job was accepted; it did not run."


def check_owner_exists(db: Database, customer_id: str) -> None:
    """Bookings can belong to an active customer only (not an operator): 404,
    as for any resource named that does not exist (or is no customer's)."""
    doc = db.customers.find_one({"_id": customer_id}, {"role": 1, "disabled_at": 1})
    if doc is None or doc["role"] != CUSTOMER or doc.get("disabled_at") is not None:
        raise NotFound(f"No active customer {customer_id!r} to own these bookings.")
