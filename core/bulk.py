"""Bulk bookings and bulk status updates: each item on its own, in chunks.

One bad item never sinks a batch: it is reported by index with its problem.
Every item is applied exactly once however often the job runs (a redelivery,
a worker killed mid-batch): item i of job J writes as the sub-job `J#i`, so a
booking's ref_id, its events and its applied transitions are all keyed on it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import redis
from marshmallow import ValidationError
from pymongo.database import Database

from core import group_commit, transitions
from core.awb import SerialStock
from core.errors import PayloadTooLarge, RadiantError, ValidationFailed
from core.flights import chunks
from core.ids import ref_id_from
from core.locks import LockManager
from core.schemas.bookings import BookingCreateSchema, BulkStatusItemSchema

_create_schema = BookingCreateSchema()
_status_schema = BulkStatusItemSchema()

Progress = Callable[[dict[str, int]], None]
Changed = Callable[[dict[str, Any]], None]


def check_size(items: Sequence[Any], limit: int, what: str) -> None:
    """A bulk request holds at most `limit` items (BULK_*_LIMIT): 413 past it."""
    if len(items) > limit:
        raise PayloadTooLarge(f"At most {limit} {what} per request; got {len(items)}.")


def item_job_id(job_id: str, index: int) -> str:
    return f"{job_id}#{index}"


def parent_job_id(job_id: str) -> str:
    """The job that item job `job_id` (see item_job_id) belongs to; any other job's own id."""
    return job_id.partition("#")[0]


def item_ref_id(job_id: str, index: int) -> str:
    """The same ref_id for item `index` of job `job_id` on every run (RG + 9 base-36)."""
    number = int.from_bytes(hashlib.sha256(item_job_id(job_id, index).encode()).digest()[:8])
    return ref_id_from(number)


def _load(schema, item: Any) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise ValidationFailed(
            "An item must be a JSON object.", errors={"_schema": ["Not an object."]}
        )
    try:
        return schema.load(item)
    except ValidationError as exc:
        raise ValidationFailed(
            "The item has invalid fields; see errors.", errors=exc.messages
        ) from None


def _progress(on_progress: Progress | None, total: int, done: int, failed: int) -> None:
    if on_progress is not None:
        on_progress({"total": total, "done": done, "failed": failed})


def _result(items: list[dict[str, Any]]) -> dict[str, Any]:
    failed = sum(1 for item in items if "problem" in item)
    return {
        "total": len(items),
        "succeeded": len(items) - failed,
        "failed": failed,
        "items": sorted(items, key=lambda item: item["index"]),
    }


def import_bookings(
    db: Database,
    locks: LockManager,
    raw_items: Sequence[Any],
    *,
    job_id: str,
    now: datetime,
    chunk_size: int,
    min_connection_minutes: int,
    awbs: SerialStock,
    customer_id: str | None = None,
    on_progress: Progress | None = None,
) -> dict[str, Any]:
    """Create a booking per valid item, owned by `customer_id`: each chunk as
    one group of creates (core.group_commit.create_bookings: one insert per
    collection, each booking holding its cargo space; a full flight fails its
    item, 409). Each item's AWB is its own (checked as a single create's) or
    one of `awbs`; a redelivery's new one is never stored for an item stored
    before (the booking, found by its ref_id, keeps its own)."""
    results: list[dict[str, Any]] = []
    done = 0
    for chunk in chunks(enumerate(raw_items), chunk_size):
        items, indexes = [], []
        for index, raw in chunk:
            try:
                item = _create_item(job_id, index, raw, customer_id)
                item["awb"] = awbs.awb_for(item["request"])
            except RadiantError as exc:
                results.append({"index": index, "problem": exc.to_problem()})
                continue
            items.append(item)
            indexes.append(index)
        created = group_commit.create_bookings(
            db, locks, items, now=now, min_connection_minutes=min_connection_minutes
        )
        for index, outcome in zip(indexes, created, strict=True):
            if isinstance(outcome, RadiantError):
                results.append({"index": index, "problem": outcome.to_problem()})
            else:
                results.append(
                    {
                        "index": index,
                        "ref_id": outcome["ref_id"],
                        "awb": outcome.get("awb"),
                        "status": outcome["status"],
                    }
                )
        done += len(chunk)
        _progress(on_progress, len(raw_items), done, sum("problem" in r for r in results))
    return _result(results)


def _create_item(job_id: str, index: int, raw: Any, customer_id: str | None) -> dict[str, Any]:
    """Item `index` as a queued create (core.group_commit); ValidationFailed if invalid."""
    return {
        "job_id": item_job_id(job_id, index),
        "ref_id": item_ref_id(job_id, index),
        "request": _load(_create_schema, raw),
        "customer_id": customer_id,
    }


def abandon_import(
    db: Database, locks: LockManager, raw_items: Sequence[Any], *, job_id: str
) -> None:
    """The bulk create job `job_id` ends failed: give back the space its items
    took without storing their bookings (core.group_commit.abandon_creates)."""
    items = []
    for index, raw in enumerate(raw_items):
        try:
            items.append(_create_item(job_id, index, raw, None))
        except RadiantError:
            continue  # never valid, never reserved
    group_commit.abandon_creates(db, locks, items)


def update_statuses(
    db: Database,
    locks: LockManager,
    raw_items: Sequence[Any],
    *,
    job_id: str,
    clock: Callable[[], datetime],
    queued_records: redis.Redis,
    chunk_size: int,
    on_changed: Changed,
    on_progress: Progress | None = None,
    submitter: str | None = None,
) -> dict[str, Any]:
    """Apply each update in order, through the same lock, machine and fence as
    a single transition: two updates to one booking apply in batch order. Once
    `submitter` is disabled, the items still to apply fail (403)."""
    results: list[dict[str, Any]] = []
    done = 0
    for chunk in chunks(enumerate(raw_items), chunk_size):
        for index, raw in chunk:
            ref_id = raw.get("ref_id") if isinstance(raw, dict) else None
            try:
                item = _load(_status_schema, raw)
                booking = transitions.transition_booking(
                    db,
                    locks,
                    ref_id=item["ref_id"],
                    target=item["newStatus"],
                    job_id=item_job_id(job_id, index),
                    data=item.get("eventData") or {},
                    clock=clock,
                    queued_records=queued_records,
                    submitter=submitter,
                )
            except RadiantError as exc:
                if exc.transient and exc.status >= 500:
                    raise  # a backing service is down: retry the job; applied items stay applied
                results.append({"index": index, "ref_id": ref_id, "problem": exc.to_problem()})
                continue
            on_changed(booking)
            results.append({"index": index, "ref_id": item["ref_id"], "status": booking["status"]})
        done += len(chunk)
        _progress(on_progress, len(raw_items), done, sum("problem" in r for r in results))
    return _result(results)
