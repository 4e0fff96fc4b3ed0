"""Booking lists: a page of a list's bookings, newest first, from MongoDB or
from the page cache. Which lists a booking is in is part of its document
(core.bookings.list_keys), and so are the page cursors, which webhook
deliveries page by too.
"""

from __future__ import annotations

import bisect
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import DESCENDING
from pymongo.database import Database

from core import cache_keys
from core.bookings import PUBLIC_FIELDS, decode_cursor, encode_cursor, list_key, public_booking
from core.cache import Cache
from core.clock import EARLIEST

# Pages are read newest first in windows of created_at. The embedded server
# materializes every document a query's index range holds before it sorts and
# limits, so one query over the whole history would read all of it; a window
# holds about what the page still needs. The first is FIRST_WINDOW wide; an
# empty one makes the next WINDOW_GROWTH times wider, and once bookings were
# found the next is sized from their density to hold what the page still needs
# (a WINDOW_MARGIN more), growing WINDOW_GROWTH times at most. A filter that
# matches nothing thus costs one empty index probe per window back to the
# calendar's start (11 from today), and reads no booking. What a window cannot
# bound: bookings that share one created_at (a bulk import's, up to 1000) are read
# together, and so are those the first window after a long empty stretch
# holds. On mongod, whose index scan stops at the limit, a window costs a
# round trip and nothing more.
# (No index hint: a hinted find scans the whole index there.)
FIRST_WINDOW = timedelta(seconds=1)
CLOCK_SKEW = timedelta(minutes=5)  # between the hosts that stamp created_at
SMALLEST_WINDOW = timedelta(milliseconds=1)  # created_at's resolution
WINDOW_GROWTH = 8
WINDOW_MARGIN = 1.25
NEWEST_SORT = [("created_at", DESCENDING), ("ref_id", DESCENDING)]
LISTED_FIELDS = {"_id": 0, **dict.fromkeys((*PUBLIC_FIELDS, "volume_cm3"), 1)}
LIST_LIMIT_DEFAULT, LIST_LIMIT_MAX = 50, 200  # items per page
# The pages read and cached (page_size): the 1-2-5 series up to the largest limit.
PAGE_SIZES = (1, 2, 5, 10, 20, LIST_LIMIT_DEFAULT, 100, LIST_LIMIT_MAX)


def list_filter(
    customer_id: str | None = None,
    status: str | None = None,
    origin: str | None = None,
    destination: str | None = None,
) -> dict[str, Any]:
    """The query of a list: an equality on a list index's prefix."""
    query: dict[str, Any] = {"list_keys": list_key(customer_id, origin, destination)}
    if status is not None:
        query["status"] = status
    return query


def next_window(width: timedelta, span: timedelta, found: int, needed: int) -> timedelta:
    """The window after one `width` wide, once the `span` read back from the
    newest held `found` bookings and `needed` more are wanted."""
    if not found:
        return width * WINDOW_GROWTH
    fitting = span * (needed / found * WINDOW_MARGIN)
    return max(SMALLEST_WINDOW, min(fitting, width * WINDOW_GROWTH))


def newest_bookings(
    db: Database, query: dict[str, Any], want: int, *, cursor: str | None, now: datetime
) -> list[dict[str, Any]]:
    """Up to `want` bookings matching `query`, newest first, after `cursor`
    (None: from the newest), keyset-paginated on (created_at, ref_id)."""

    def fetch(condition: dict[str, Any]) -> list[dict[str, Any]]:
        found = db.bookings.find({**query, **condition}, LISTED_FIELDS).sort(NEWEST_SORT)
        return list(found.limit(want - len(docs)))

    docs: list[dict[str, Any]] = []
    if cursor:
        newest, ref_id = decode_cursor(cursor)
        docs += fetch({"created_at": newest, "ref_id": {"$lt": ref_id}})
        upper = newest
    else:
        # The first window also holds what a host whose clock runs ahead stamped.
        newest, upper = now, now + CLOCK_SKEW
    width = FIRST_WINDOW
    while len(docs) < want and upper > EARLIEST:
        lower = max(min(upper, newest) - width, EARLIEST)
        docs += fetch({"created_at": {"$gte": lower, "$lt": upper}})
        width = next_window(width, newest - lower, len(docs), want - len(docs))
        upper = lower
    return docs


def with_awb(
    db: Database, awb: str, query: dict[str, Any], *, cursor: str | None
) -> list[dict[str, Any]]:
    """The booking holding `awb` (an equality on its unique index: at most
    one), if it is in the list `query` names (list_filter) and after `cursor`."""
    doc = db.bookings.find_one({"awb": awb}, {**LISTED_FIELDS, "list_keys": 1})
    if doc is None or query["list_keys"] not in doc.get("list_keys", ()):
        return []
    if query.get("status", doc["status"]) != doc["status"]:
        return []
    if cursor and (doc["created_at"], doc["ref_id"]) >= decode_cursor(cursor):
        return []
    return [doc]


def list_page(
    db: Database,
    *,
    size: int,
    cursor: str | None = None,
    now: datetime | None = None,
    awb: str | None = None,
    **filters: str | None,
) -> dict[str, Any]:
    """Up to `size` bookings of the list `filters` name (list_filter), or the
    one of them holding `awb`, newest first, after `cursor`: {"items",
    "cursors" (each item's), "more" (whether more follow)}. Stable while
    bookings are inserted: a page boundary is a value, not an offset."""
    query = list_filter(**filters)
    if awb is not None:
        docs = with_awb(db, awb, query, cursor=cursor)
    else:
        docs = newest_bookings(db, query, size + 1, cursor=cursor, now=now or datetime.now(UTC))
    shown = docs[:size]
    return {
        "items": [public_booking(d) for d in shown],
        "cursors": [encode_cursor(d) for d in shown],
        "more": len(docs) > size,
    }


def first_of(page: dict[str, Any], limit: int) -> dict[str, Any]:
    """{"items", "next_cursor"}: the first `limit` items of a list_page."""
    more = page["more"] or len(page["items"]) > limit
    return {
        "items": page["items"][:limit],
        "next_cursor": page["cursors"][limit - 1] if more else None,
    }


def list_bookings(db: Database, *, limit: int, **filters: Any) -> dict[str, Any]:
    """A page of `limit` bookings: list_page's filters, cursor and now."""
    return first_of(list_page(db, size=limit, **filters), limit)


def page_size(limit: int) -> int:
    """The page read and cached for a `limit` (at most LIST_LIMIT_MAX): the
    smallest of PAGE_SIZES that holds it. Every limit shares one of their
    cached pages, so varying it cannot multiply the reads; the default limit
    reads exactly its page, any other at most 2.4 times its own."""
    return PAGE_SIZES[bisect.bisect_left(PAGE_SIZES, limit)]


def read_booking_page(
    db: Database, cache: Cache, ttl: int, *, limit: int, **filters: Any
) -> dict[str, Any]:
    """list_bookings through the page cache (its generation in the key, bumped
    by every booking write: core.invalidation)."""
    size = page_size(limit)
    generation = cache.generation(cache_keys.BOOKING_PAGES_GENERATION)
    key = cache_keys.booking_page_key(generation, {"size": size, **filters})
    page = cache.get(key, cache_keys.BOOKING_PAGES)
    if page is None:
        page = list_page(db, size=size, **filters)
        cache.set(key, page, ttl)
    return first_of(page, limit)
