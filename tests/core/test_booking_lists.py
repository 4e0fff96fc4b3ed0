"""Booking lists: every filter bounded by an index, cursors exact, the page cache
keyed so that varying `limit` cannot multiply reads. On the session's MongoDB
wire server, counting what it reads with its own explain."""

from __future__ import annotations

import itertools
from datetime import timedelta

import pytest
from pymongo import MongoClient, monitoring

from core import booking_lists, bookings, cache_keys, invalidation
from core.clock import utcnow
from core.db import DEFAULT_DATABASE
from core.ids import new_customer_id, new_job_id, new_ref_id
from core.lifecycle import BOOKED, CANCELLED, DELIVERED, DEPARTED, STATUSES
from tests.conftest import moved_booking, store_booking

# Airports no other test's bookings use, so that everyone's lists on them hold
# only this module's bookings.
ORIGINS = ("QLA", "QLB", "QLC")
DESTINATIONS = ("QLX", "QLY")
NOWHERE = "QLZ"  # no booking flies from or to it
MIGRATED = "QLW"  # the route of bookings stored before list keys


def stored(db, customer_id, count, *, newest, step, per_moment=1, seed=0, **fixed):
    """`count` bookings of `customer_id` stored at once (as a bulk import would),
    newest at `newest`, `per_moment` of them sharing each created_at (a group
    commit's), moments `step` apart; routes and statuses cycle unless `fixed`."""
    docs = []
    for i in range(count):
        moment = newest - step * (i // per_moment)
        data = {
            "origin": ORIGINS[(i + seed) % len(ORIGINS)],
            "destination": DESTINATIONS[(i + seed) % len(DESTINATIONS)],
            "pieces": 1,
            "weight_kg": 10.0,
            **{k: v for k, v in fixed.items() if k != "status"},
        }
        doc = bookings.booking_document(
            new_ref_id(), data, job_id=new_job_id(), now=moment, customer_id=customer_id
        )
        doc["status"] = fixed.get("status", STATUSES[(i + seed) % len(STATUSES)])
        docs.append(doc)
    db.bookings.insert_many(docs)
    return docs


class FindRecorder(monitoring.CommandListener):
    """The find commands a client sends to the bookings collection."""

    def __init__(self):
        self.finds = []

    def started(self, event):
        if event.command_name == "find" and event.command["find"] == "bookings":
            self.finds.append(event.command)

    def succeeded(self, event):
        pass

    def failed(self, event):
        pass


@pytest.fixture(scope="module")
def watched(settings):
    """(database, recorder): a client of the session's database whose find
    commands on bookings are recorded."""
    recorder = FindRecorder()
    client = MongoClient(settings.MONGODB_URI, tz_aware=True, event_listeners=[recorder])
    yield client.get_default_database(DEFAULT_DATABASE), recorder
    client.close()


def read_cost(db, finds):
    """What the server read for `finds`: (documents examined, the plans). Each
    find is explained as sent (executionStats runs it): on the embedded server
    totalDocsExamined counts every document its index range held, before the
    limit, so it is what the query really cost there."""
    examined, plans = 0, []
    for find in finds:
        query = {k: v for k, v in find.items() if k in ("find", "filter", "sort", "limit")}
        explained = db.command("explain", query, verbosity="executionStats")
        examined += explained["executionStats"]["totalDocsExamined"]
        plans.append(explained["queryPlanner"]["winningPlan"])
    return examined, plans


def stages(plan):
    """The stages of a winning plan, outermost first."""
    plan = plan.get("queryPlan", plan)  # mongod's slot-based engine wraps it
    while plan:
        yield plan
        plan = plan.get("inputStage")


def index_served(plan) -> bool:
    """The plan scans a list index and filters nothing the index did not."""
    found = list(stages(plan))
    scans = [s for s in found if s["stage"] == "IXSCAN"]
    return (
        len(scans) == 1
        and scans[0]["indexName"].startswith("list_keys_1_")
        and not any("filter" in s for s in found)
    )


def query_id(query: dict) -> str:
    return "&".join(f"{k}={v}" for k, v in query.items()) or "none"


def listed(db, limit, **filters):
    return booking_lists.list_bookings(db, limit=limit, **filters)


# -- what a request reads ----------------------------------------------------------


NO_MATCH = [
    {"origin": NOWHERE},
    {"destination": NOWHERE},
    {"status": CANCELLED},  # the customer has none cancelled
    {"status": BOOKED, "origin": ORIGINS[0], "destination": NOWHERE},
    {"status": DELIVERED, "origin": NOWHERE, "destination": DESTINATIONS[0]},
]


@pytest.fixture(scope="module")
def busy_customer(services):
    """A customer with 600 bookings over the last ten hours, none cancelled."""
    customer_id = new_customer_id()
    statuses = [s for s in STATUSES if s != CANCELLED]
    now = utcnow()
    docs = []
    for status in statuses:
        docs += stored(
            services.db, customer_id, 150, newest=now, step=timedelta(minutes=4), status=status
        )
    return customer_id, docs


@pytest.mark.parametrize("query", NO_MATCH, ids=query_id)
def test_a_filter_that_matches_nothing_reads_no_booking(watched, busy_customer, query):
    db, recorder = watched
    customer_id, _ = busy_customer
    # The customer's list, and everyone's where nobody's booking matches.
    for owner in (customer_id, None) if NOWHERE in query.values() else (customer_id,):
        recorder.finds.clear()
        page = listed(db, 50, customer_id=owner, **query)
        assert page == {"items": [], "next_cursor": None}
        examined, plans = read_cost(db, recorder.finds)
        assert examined == 0, (owner, query)
        assert all(index_served(plan) for plan in plans), plans


LIMIT = 20
MATCHING = [
    {},
    {"status": DELIVERED},
    {"origin": ORIGINS[0]},
    {"destination": DESTINATIONS[1]},
    {"origin": ORIGINS[2], "destination": DESTINATIONS[0]},
    {"status": DEPARTED, "origin": ORIGINS[1], "destination": DESTINATIONS[1]},
]


@pytest.mark.parametrize("query", MATCHING, ids=query_id)
def test_a_filtered_page_reads_about_its_limit(watched, busy_customer, query):
    db, recorder = watched
    customer_id, _ = busy_customer
    cursor = None
    for _page in range(3):  # the first page, and two from a cursor
        recorder.finds.clear()
        page = listed(db, LIMIT, customer_id=customer_id, cursor=cursor, **query)
        assert len(page["items"]) == LIMIT or page["next_cursor"] is None
        examined, plans = read_cost(db, recorder.finds)
        # The page and the one that says whether more follow, plus what the
        # last window held beyond them (it is sized to hold 1.5 times what is
        # still missing).
        assert len(page["items"]) <= examined <= 2 * (LIMIT + 1), (query, examined)
        assert all(index_served(plan) for plan in plans), plans
        cursor = page["next_cursor"]
        if cursor is None:
            break


# -- pages and cursors ---------------------------------------------------------------


FILTERS = [
    dict(zip(("status", "origin", "destination"), values, strict=True))
    for values in itertools.product((None, DELIVERED), (None, ORIGINS[0]), (None, DESTINATIONS[1]))
]


def expected(db, customer_id, status, origin, destination):
    """The list as a plain query over the stored fields sees it, newest first."""
    query = {"origin": {"$in": ORIGINS}}
    query.update({k: v for k, v in (("customer_id", customer_id), ("status", status)) if v})
    query.update({k: v for k, v in (("origin", origin), ("destination", destination)) if v})
    found = db.bookings.find(query, {"ref_id": 1, "created_at": 1})
    return [d["ref_id"] for d in sorted(found, key=lambda d: (d["created_at"], d["ref_id"]))][::-1]


def paged(read, limits):
    """Every ref_id a list shows, page after page (each page's limit from
    `limits`, cycling), and the number of pages."""
    seen, cursor = [], None
    for pages, limit in enumerate(itertools.cycle(limits), 1):
        page = read(limit=limit, cursor=cursor)
        seen += [b["ref_id"] for b in page["items"]]
        assert len(page["items"]) == limit or page["next_cursor"] is None
        cursor = page["next_cursor"]
        if cursor is None or pages > 500:
            return seen, pages


@pytest.fixture(scope="module")
def crowded(services):
    """Two customers' bookings, many sharing a created_at (as a group commit's
    do), spread over days, some in the last seconds."""
    customer_id, other = new_customer_id(), new_customer_id()
    now = utcnow()
    for owner, seed in ((customer_id, 0), (other, 1)):
        stored(services.db, owner, 90, newest=now, step=timedelta(hours=2), per_moment=6, seed=seed)
        stored(services.db, owner, 40, newest=now, step=timedelta(milliseconds=3), seed=seed)
    return customer_id, other


@pytest.mark.parametrize("query", FILTERS, ids=query_id)
def test_cursors_walk_every_list_newest_first_without_gaps_or_repeats(services, crowded, query):
    customer_id, other = crowded
    for owner in (customer_id, other, None):
        want = expected(services.db, owner, **query)

        def read(owner=owner, **page):
            return listed(services.db, customer_id=owner, **query, **page)

        if owner is None and not (query["origin"] or query["destination"]):
            # Everyone's bookings on every route: the whole session's. Only the
            # newest pages are this module's alone to compare.
            continue
        seen, _ = paged(read, (7, 3, 11))
        assert seen == want, (owner, query)


# -- the page cache ---------------------------------------------------------------------


def page_misses(cache) -> int:
    return cache.hit_stats()[cache_keys.BOOKING_PAGES]["misses"]


def test_varying_the_limit_reads_one_page_per_page_size(services):
    customer_id, now = new_customer_id(), utcnow()
    stored(services.db, customer_id, 250, newest=now, step=timedelta(seconds=10))
    read = booking_lists.read_booking_page
    before = page_misses(services.cache)
    pages = {
        limit: read(services.db, services.cache, 30, limit=limit, customer_id=customer_id)
        for limit in range(1, 201)
    }
    assert page_misses(services.cache) - before == len(booking_lists.PAGE_SIZES)
    newest_first = expected(services.db, customer_id, None, None, None)
    for limit, page in pages.items():
        assert [b["ref_id"] for b in page["items"]] == newest_first[:limit]
        following = listed(services.db, 1, customer_id=customer_id, cursor=page["next_cursor"])
        assert following["items"][0]["ref_id"] == newest_first[limit]


def test_a_cached_page_walks_on_with_another_limit(services, crowded):
    customer_id, _ = crowded

    def read(**page):
        return booking_lists.read_booking_page(
            services.db, services.cache, 30, customer_id=customer_id, **page
        )

    seen, _ = paged(read, (5, 64, 9, 2))
    assert seen == expected(services.db, customer_id, None, None, None)


def test_cached_pages_follow_creates_and_transitions(services):
    customer_id, now, ttl = new_customer_id(), utcnow(), 30
    stored(
        services.db,
        customer_id,
        5,
        newest=now - timedelta(seconds=1),
        step=timedelta(0),
        status=BOOKED,
    )

    def refs(**filters):
        page = booking_lists.read_booking_page(
            services.db, services.cache, ttl, limit=10, customer_id=customer_id, **filters
        )
        return [b["ref_id"] for b in page["items"]]

    booked, departed = refs(status=BOOKED), refs(status=DEPARTED)
    assert len(booked) == 5 and departed == [] and refs() == booked  # now cached
    new = store_booking(
        services.db,
        new_ref_id(),
        {"origin": ORIGINS[0], "destination": DESTINATIONS[0], "pieces": 1, "weight_kg": 1.0},
        job_id=new_job_id(),
        now=utcnow(),
        customer_id=customer_id,
    )
    invalidation.booking_written(services.cache, new, ttl)  # as the create job does
    assert refs(status=BOOKED) == [new["ref_id"], *booked]
    moved = moved_booking(services, booked[0], DEPARTED)
    invalidation.booking_written(services.cache, moved, ttl)  # as the transition job does
    assert refs(status=DEPARTED) == [booked[0]]
    assert refs(status=BOOKED) == [new["ref_id"], *booked[1:]]
    assert refs() == [new["ref_id"], *booked]


# -- list keys ---------------------------------------------------------------------------


def test_a_booking_is_in_its_owners_lists_and_everyones():
    owned = {"customer_id": "C1", "origin": "DEL", "destination": "BLR"}
    assert bookings.list_keys(owned) == sorted(
        f"{c}|{o}|{d}" for c in ("C1", "*") for o in ("DEL", "*") for d in ("BLR", "*")
    )
    unowned = {**owned, "customer_id": None}
    assert bookings.list_keys(unowned) == ["*|*|*", "*|*|BLR", "*|DEL|*", "*|DEL|BLR"]


def test_bookings_stored_before_list_keys_get_theirs(services):
    customer_id, now = new_customer_id(), utcnow()
    old = stored(services.db, customer_id, 3, newest=now, step=timedelta(seconds=1))
    old += stored(services.db, None, 1, newest=now, step=timedelta(0), origin=MIGRATED)
    refs = [d["ref_id"] for d in old]
    services.db.bookings.update_many({"ref_id": {"$in": refs}}, {"$unset": {"list_keys": ""}})
    assert listed(services.db, 10, customer_id=customer_id)["items"] == []
    services.db.migrations.delete_one({"_id": bookings.LIST_KEYS_MIGRATION})
    assert bookings.give_list_keys(services.db) >= 4
    for doc in services.db.bookings.find({"ref_id": {"$in": refs}}):
        assert sorted(doc["list_keys"]) == bookings.list_keys(doc)
    assert len(listed(services.db, 10, customer_id=customer_id)["items"]) == 3
    assert [b["ref_id"] for b in listed(services.db, 10, origin=MIGRATED)["items"]] == refs[3:]
    assert bookings.give_list_keys(services.db) == 0  # once per database
