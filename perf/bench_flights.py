"""Flight import and route search: bulk import against the floor of a bare
insert_many of the same documents, and route search latency uncached and cached,
on one isolated stack in one run.

    python -m perf.bench_flights                       # 100000 flights, 200 searches
    python -m perf.bench_flights --count 20000 --searches 100 --json out/flights.json

1. generate --count raw flights (tools.flights.generate_schedule, seed 42, from
   today UTC); validation and document building for the floors is not timed.
2. floors: insert_many of the stored documents in BULK_CHUNK_SIZE batches into
   `flights_raw` (only the _id index) and `flights_raw_indexed` (the same
   indexes as `flights`).
3. product path: core.flights.import_flights of the raw items into `flights`
   (validation included), then a re-import of the first 2000 (the replace path).
4. route search: --searches distinct random (origin, destination, day) triples
   (random.Random(7)); search_routes uncached, then cached_search twice per
   triple (a miss that fills, then the timed hit).
5. --breakdown N times the two route queries and the in-memory join
   separately for N of the triples, with the documents each query returns;
   --cprofile shows cProfile's view of the slowest search.
6. --profile DIR: where the CPU of the uncached searches goes (perf.profiling:
   CPU per process group, py-spy's stacks of SecantusDB and of this process,
   which runs search_routes), py-spy's files in DIR.
"""

from __future__ import annotations

import cProfile
import io
import json
import pstats
import random
import statistics
import time
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from core import cache_codec, cache_keys, route_answers, routes
from core.db import INDEXES, ensure_indexes
from core.flights import chunks, day_bounds, flight_document, import_flights
from core.schemas.flights import FlightSchema
from core.settings import Settings
from perf.harness import (
    command_line,
    fmt,
    isolated_stack,
    ms_since,
    percentiles,
    publish,
    route_counts,
)
from perf.profiling import describe, maybe_profiled
from tools.flights import generate_schedule

REIMPORT = 2000
DEFAULT_CAPACITY_KG = Settings.DEFAULT_FLIGHT_CAPACITY_KG
SEED = 42
SEARCH_SEED = 7
IMPORT_GOAL = 0.7
UNCACHED_P95_GOAL_MS = 50.0
CACHED_P95_GOAL_MS = 5.0


def timed_insert(collection, docs: list[dict[str, Any]], chunk_size: int) -> float:
    """docs/s of insert_many in chunks of `chunk_size`."""
    start = time.perf_counter()
    for chunk in chunks(docs, chunk_size):
        collection.insert_many(chunk, ordered=False)
    return len(docs) / (time.perf_counter() - start)


def pick_triples(
    flights: list[dict[str, Any]], n: int, seed: int = SEARCH_SEED
) -> list[tuple[str, str, date]]:
    """`n` distinct (origin, destination, day) triples over the schedule's airports and days."""
    airports = sorted({f["origin"] for f in flights} | {f["destination"] for f in flights})
    days = sorted({f["departure_ts"].date() for f in flights})
    rng = random.Random(seed)
    picked: dict[tuple[str, str, date], None] = {}
    possible = len(airports) * (len(airports) - 1) * len(days)
    for _ in range(n * 50):  # bounded: distinct triples, never an endless draw
        if len(picked) >= min(n, possible):
            break
        origin = rng.choice(airports)
        destination = rng.choice([a for a in airports if a != origin])
        picked[(origin, destination, rng.choice(days))] = None
    return list(picked)


def breakdown(db, triples: list[tuple[str, str, date]], min_connection: int) -> dict[str, Any]:
    """The two queries of core.routes.search_routes timed one by one, then its join."""
    times: dict[str, list[float]] = defaultdict(list)
    docs: dict[str, list[int]] = defaultdict(list)
    connection = timedelta(minutes=min_connection)
    for origin, destination, day in triples:
        start_day, end_day = day_bounds(datetime(day.year, day.month, day.day, tzinfo=UTC))
        queries = {
            "departures": {"origin": origin, "departure_ts": {"$gte": start_day, "$lt": end_day}},
            "second_legs": {
                "destination": destination,
                "departure_ts": {"$gte": start_day, "$lt": end_day + timedelta(days=1)},
            },
        }
        fetched = {}
        for name, query in queries.items():
            t = time.perf_counter()
            fetched[name] = list(db.flights.find(query))
            times[name].append(ms_since(t))
            docs[name].append(len(fetched[name]))
        t = time.perf_counter()
        result = routes.join_legs(
            origin,
            destination,
            day,
            connection,
            direct=fetched["departures"],
            firsts=fetched["departures"],
            seconds=fetched["second_legs"],
        )
        times["join"].append(ms_since(t))
        docs["options"].append(result["counts"]["direct"] + result["counts"]["one_transit"])
        t = time.perf_counter()  # what cached_search adds on a miss: JSON encode and decode
        json.loads(cache_codec.dumps({"g": 0, "v": result}))
        times["json_roundtrip"].append(ms_since(t))
    return {
        "searches": len(triples),
        "ms": {name: percentiles(values) for name, values in times.items()},
        "mean_ms": {name: round(statistics.fmean(v), 2) for name, v in times.items()},
        "docs_mean": {name: round(statistics.fmean(v), 1) for name, v in docs.items()},
        "docs_max": {name: max(v) for name, v in docs.items()},
    }


def profile_one(db, triple: tuple[str, str, date], min_connection: int, top: int = 20) -> str:
    origin, destination, day = triple
    profiler = cProfile.Profile()
    profiler.enable()
    routes.search_routes(
        db, origin=origin, destination=destination, day=day, min_connection_minutes=min_connection
    )
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(top)
    return out.getvalue()


def run(
    count: int,
    searches: int,
    *,
    breakdown_n: int = 0,
    cprofile: bool = False,
    profile_dir: Path | None = None,
) -> dict[str, Any]:
    today = datetime.now(UTC).date()
    raw_items = list(generate_schedule(count, start_date=today, seed=SEED))
    schema = FlightSchema()
    docs = [flight_document(schema.load(item), DEFAULT_CAPACITY_KG) for item in raw_items]
    unique = list({d["_id"]: d for d in docs}.values())  # insert_many refuses a duplicate _id

    with isolated_stack() as stack:
        db, cache, settings = stack.services.db, stack.services.cache, stack.settings
        size = settings.BULK_CHUNK_SIZE
        ensure_indexes(db)
        db.flights.delete_many({})

        raw_rate = timed_insert(db.flights_raw, unique, size)
        db.flights_raw_indexed.drop()
        db.flights_raw_indexed.create_indexes(INDEXES["flights"])
        indexed_rate = timed_insert(db.flights_raw_indexed, unique, size)

        def store(items):
            return import_flights(
                db,
                stack.services.locks,
                items,
                chunk_size=size,
                default_capacity_kg=DEFAULT_CAPACITY_KG,
                total=len(items),
            )

        start = time.perf_counter()
        imported = store(raw_items)
        import_rate = len(raw_items) / (time.perf_counter() - start)
        stored = db.flights.count_documents({})

        again = raw_items[:REIMPORT]
        start = time.perf_counter()
        reimported = store(again)
        reimport_rate = len(again) / (time.perf_counter() - start)
        stored_after = db.flights.count_documents({})

        triples = pick_triples(unique, searches)
        min_conn, ttl = settings.MIN_CONNECTION_MINUTES, settings.CACHE_TTL_ROUTES
        o, d, day = triples[0]  # one untimed search: connection pool and server warm
        routes.search_routes(db, origin=o, destination=d, day=day, min_connection_minutes=min_conn)

        uncached, direct_counts, transit_counts = [], [], []
        for o, d, day in triples:
            t = time.perf_counter()
            result = routes.search_routes(
                db, origin=o, destination=d, day=day, min_connection_minutes=min_conn
            )
            uncached.append(ms_since(t))
            direct_counts.append(result["counts"]["direct"])
            transit_counts.append(result["counts"]["one_transit"])
        # Profiled on a second pass of the same searches: the figures above are
        # the profiler's cost free.
        with maybe_profiled(
            profile_dir,
            "route_search_uncached",
            stack,
            items=len(triples),
            sampled=("SecantusDB",),  # the worker and the ingress take no part
            sample_client=True,  # search_routes runs here
        ) as profile:
            for o, d, day in triples if profile_dir else ():
                routes.search_routes(
                    db, origin=o, destination=d, day=day, min_connection_minutes=min_conn
                )

        redis = cache.redis
        redis.incr(cache_keys.ROUTES_GENERATION)  # every earlier entry now reads as a miss
        redis.delete(*(cache_keys.route_key(o, d, day) for o, d, day in triples))
        before = route_counts(cache)
        fills, hits = [], []
        for o, d, day in triples:
            kwargs = {"origin": o, "destination": d, "day": day}
            kwargs.update(min_connection_minutes=min_conn, ttl=ttl)
            t = time.perf_counter()
            route_answers.cached_search(db, cache, **kwargs)
            fills.append(ms_since(t))
            t = time.perf_counter()
            route_answers.cached_search(db, cache, **kwargs)
            hits.append(ms_since(t))
        after = route_counts(cache)

        extra: dict[str, Any] = {}
        if breakdown_n > 0:
            slowest = sorted(range(len(triples)), key=lambda i: uncached[i], reverse=True)
            chosen = [triples[i] for i in slowest[:breakdown_n]]
            extra["breakdown_slowest"] = breakdown(db, chosen, min_conn)
            extra["breakdown_sample"] = breakdown(db, triples[:breakdown_n], min_conn)
        if cprofile:
            worst = max(range(len(triples)), key=lambda i: uncached[i])
            extra["cprofile_triple"] = [str(x) for x in triples[worst]]
            extra["cprofile"] = profile_one(db, triples[worst], min_conn)
        if profile_dir:
            extra["profile"] = {"route_search_uncached": profile}

    return {
        "count": len(raw_items),
        "unique_flight_ids": len(unique),
        "chunk_size": size,
        "airports": len({f["origin"] for f in unique} | {f["destination"] for f in unique}),
        "days": len({f["departure_ts"].date() for f in unique}),
        "raw_insert_per_s": round(raw_rate, 1),
        "raw_indexed_insert_per_s": round(indexed_rate, 1),
        "import_per_s": round(import_rate, 1),
        "import_vs_raw": round(import_rate / raw_rate, 3),
        "import_vs_raw_indexed": round(import_rate / indexed_rate, 3),
        "import_result": {k: imported[k] for k in ("total", "succeeded", "failed")},
        "stored": stored,
        "reimport_items": len(again),
        "reimport_per_s": round(reimport_rate, 1),
        "reimport_result": {k: reimported[k] for k in ("total", "succeeded", "failed")},
        "stored_after_reimport": stored_after,
        "searches": len(triples),
        "uncached_ms": percentiles(uncached),
        "cached_fill_ms": percentiles(fills),
        "cached_hit_ms": percentiles(hits),
        "cache_hits": after[0] - before[0],
        "cache_misses": after[1] - before[1],
        "avg_direct": round(statistics.fmean(direct_counts), 2),
        "avg_one_transit": round(statistics.fmean(transit_counts), 2),
        "searches_without_options": sum(
            1 for a, b in zip(direct_counts, transit_counts, strict=True) if a + b == 0
        ),
        **extra,
    }


def _breakdown_lines(title: str, b: dict[str, Any]) -> list[str]:
    lines = [f"  query breakdown, {title} ({b['searches']} searches):"]
    for name, p in b["ms"].items():
        key = "options" if name == "join" else name
        docs, most = b["docs_mean"].get(key), b["docs_max"].get(key)
        lines.append(
            f"    {name:<16} mean {b['mean_ms'][name]:.1f} ms  {fmt(p)}"
            + (f"   docs mean {docs} max {most}" if docs is not None else "")
        )
    return lines


def report(r: dict[str, Any]) -> str:
    def goal(ok: bool) -> str:
        return "met" if ok else "MISSED"

    uncached_p95 = r["uncached_ms"]["p95"]
    cached_p95 = r["cached_hit_ms"]["p95"]
    lines = [
        f"flight import and route search ({r['count']} flights, {r['unique_flight_ids']} "
        f"distinct ids, chunks of {r['chunk_size']}, SecantusDB)",
        f"  raw insert_many, _id only          {r['raw_insert_per_s']:.0f} docs/s",
        f"  raw insert_many, flights' indexes  {r['raw_indexed_insert_per_s']:.0f} docs/s",
        f"  import_flights                     {r['import_per_s']:.0f} items/s"
        f"  ({r['import_result']['succeeded']} stored, {r['import_result']['failed']} failed,"
        f" {r['stored']} in collection)",
        f"    vs bare floor        {r['import_vs_raw']:.2f}x  (goal >= {IMPORT_GOAL}x: "
        f"{goal(r['import_vs_raw'] >= IMPORT_GOAL)})",
        f"    vs same-index floor  {r['import_vs_raw_indexed']:.2f}x",
        f"  re-import of {r['reimport_items']} (replaces)   {r['reimport_per_s']:.0f} items/s"
        f"  ({r['stored_after_reimport']} in collection after)",
        f"  route search, {r['searches']} distinct triples over {r['airports']} airports"
        f" and {r['days']} days:",
        f"    uncached     {fmt(r['uncached_ms'])}   (goal p95 < {UNCACHED_P95_GOAL_MS:.0f} ms:"
        f" {goal(uncached_p95 is not None and uncached_p95 < UNCACHED_P95_GOAL_MS)})",
        f"    cached fill  {fmt(r['cached_fill_ms'])}",
        f"    cached hit   {fmt(r['cached_hit_ms'])}   (goal p95 < {CACHED_P95_GOAL_MS:.0f} ms:"
        f" {goal(cached_p95 is not None and cached_p95 < CACHED_P95_GOAL_MS)})",
        f"    cache counters: {r['cache_hits']} hits, {r['cache_misses']} misses",
        f"    options per search: direct {r['avg_direct']:.2f}, one-transit "
        f"{r['avg_one_transit']:.2f} on average; {r['searches_without_options']} with none",
    ]
    if "breakdown_slowest" in r:
        lines += _breakdown_lines("slowest triples", r["breakdown_slowest"])
        lines += _breakdown_lines("first triples", r["breakdown_sample"])
    if "cprofile" in r:
        lines += [f"  cProfile of the slowest search {r['cprofile_triple']}:", r["cprofile"]]
    return "\n".join(lines)


def main() -> None:
    parser = command_line(__doc__)
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--searches", type=int, default=200)
    parser.add_argument("--breakdown", type=int, default=0, metavar="N")
    parser.add_argument("--cprofile", action="store_true", help="cProfile the slowest search")
    parser.add_argument(
        "--profile", type=Path, metavar="DIR", help="profile the uncached searches; files here"
    )
    args = parser.parse_args()
    results = run(
        args.count,
        args.searches,
        breakdown_n=args.breakdown,
        cprofile=args.cprofile,
        profile_dir=args.profile,
    )
    publish(report, results, args.json)
    if args.profile:
        print(describe(results["profile"]))


if __name__ == "__main__":
    main()
