"""The answer of GET /api/routes: built as bytes, cached, and counted.

A search is cached as the HTTP answer itself (limit = KEPT_OPTIONS, all that
is kept) and a hit is served as those bytes, never decoded. A smaller limit
cuts the lists at byte offsets recorded when the answer was encoded, its
"cuts": "<end of direct option 1>,<end of 2>,...;<end of transit option 1>,...".

Each client's search is counted, by route, for the warmer (core.warming): the
most searched routes and those searched lately are the ones it keeps cached.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from datetime import date
from typing import Any

from pymongo.database import Database

from core import cache as caches
from core import cache_codec, cache_keys
from core.cache import Cache
from core.measures import cubic_centimetres, grams
from core.routes import KEPT_OPTIONS, search_routes
from core.settings import Settings

SEARCHES = "stats:route_searches"  # sorted set "A-B" -> searches (not a cache key)
# Routes counted at most: any pair of valid codes can be searched, so the set is
# bounded (Cache.count's space-saving replacement). 50x the default
# WARM_TOP_ROUTES (20): a route searched more than 1/1000 of all searches is
# always kept, so the few the warmer reads are the truly popular ones, while a
# flood of one-off pairs only churns the tail.
SEARCHES_KEPT = 1000
# Sorted set "A-B" -> when it was last searched (epoch seconds): the warmer's
# "searched lately". Bounded the same way, by the latest.
SEARCHED_AT = "stats:route_searched_at"

_encoder = json.JSONEncoder(default=cache_codec.json_default, separators=(",", ":"))


def route_answer(
    origin: str, destination: str, day: date, result: dict[str, Any]
) -> tuple[bytes, bytes]:
    """(cuts, body): the JSON body of GET /api/routes for `result`, as Flask
    would encode it (compact, key order kept, a final newline)."""
    encode = _encoder.encode
    parts = [
        f'{{"origin":{encode(origin)},"destination":{encode(destination)},'
        f'"date":{encode(day.isoformat())},"direct":['
    ]
    cuts = []
    for name, next_name in (("direct", "one_transit"), ("one_transit", "counts")):
        at, ends = sum(map(len, parts)), []
        for i, option in enumerate(result[name]):
            encoded = encode(option)
            parts.append("," + encoded if i else encoded)
            at += len(parts[-1])
            ends.append(str(at))
        cuts.append(",".join(ends))
        parts.append(f'],"{next_name}":' + ("[" if next_name == "one_transit" else ""))
    parts.append(encode(result["counts"]) + "}\n")
    # ensure_ascii (the encoder's default, as Flask's): one character is one byte
    return ";".join(cuts).encode(), "".join(parts).encode()


def cut_answer(cuts: bytes, body: bytes, limit: int) -> bytes:
    """The answer with at most `limit` options per list."""
    if limit >= KEPT_OPTIONS:
        return body
    pieces, at = [], 0
    for ends in cuts.split(b";"):
        if ends.count(b",") >= limit:  # more than `limit` options
            ends = ends.split(b",")
            pieces.append(body[at : int(ends[limit - 1])])
            at = int(ends[-1])
    pieces.append(body[at:])
    return b"".join(pieces)


def cached_search(
    db: Database,
    cache: Cache,
    *,
    origin: str,
    destination: str,
    day: date,
    min_connection_minutes: int,
    ttl: int,
    limit: int = KEPT_OPTIONS,
    weight_kg: float | None = None,
    volume_m3: float | None = None,
    count_search: bool = True,
) -> bytes:
    """The route search's JSON answer, from the cache or searched and stored
    under the generation current before the search.

    A search with `weight_kg` or `volume_m3` is cached under a key of its own
    (the weight in grams, the volume in cm3): filtering the plain answer
    instead could not be exact, as it holds only the KEPT_OPTIONS best
    options and `counts` of them all, where a weight needs the best options
    and the counts among those with room. A hit is then served as stored
    bytes alike, and a cached answer is never older than `ttl`, whatever its
    weight and volume.
    """
    if count_search:
        route = f"{origin}-{destination}"
        cache.count(SEARCHES, route, capacity=SEARCHES_KEPT)
        cache.touch(SEARCHED_AT, route, time.time(), capacity=SEARCHES_KEPT)
    weight_g = None if weight_kg is None else grams(weight_kg)
    volume_cm3 = None if volume_m3 is None else cubic_centimetres(volume_m3)
    key = cache_keys.route_key(origin, destination, day, weight_g, volume_cm3)
    found, generation = cache.get_answer(key, cache_keys.ROUTES, cache_keys.ROUTES_GENERATION)
    if found is None:
        result = search_routes(
            db,
            origin=origin,
            destination=destination,
            day=day,
            min_connection_minutes=min_connection_minutes,
            weight_g=weight_g,
            volume_cm3=volume_cm3,
        )
        found = route_answer(origin, destination, day, result)
        cache.set_answers({key: found}, ttl, generation)
    return cut_answer(*found, limit)


def search_ttl(settings: Settings) -> int:
    """How long a route search's answer stays cached (core.cache.space_ttl)."""
    return caches.space_ttl(settings.CACHE_TTL_ROUTES, settings.CACHE_TTL_BOOKINGS)


def answer_search(
    db: Database,
    cache: Cache,
    settings: Settings,
    *,
    origin: str,
    destination: str,
    day: date,
    limit: int,
    weight_kg: float | None = None,
    volume_m3: float | None = None,
) -> bytes:
    """A client's route search: cached_search with the settings' minimum
    connection and answer TTL."""
    return cached_search(
        db,
        cache,
        origin=origin,
        destination=destination,
        day=day,
        min_connection_minutes=settings.MIN_CONNECTION_MINUTES,
        ttl=search_ttl(settings),
        limit=limit,
        weight_kg=weight_kg,
        volume_m3=volume_m3,
    )


# -- popularity: what the warmer keeps cached -----------------------------------


def popular_routes(cache: Cache, configured: str, top: int) -> list[tuple[str, str]]:
    """POPULAR_ROUTES from settings, then the most searched routes."""
    pairs = [p.strip().upper() for p in configured.split(",") if p.strip()]
    pairs += cache.top(SEARCHES, top)
    return _routes(pairs)


def searched_lately(cache: Cache, since: float, n: int) -> list[tuple[str, str]]:
    """The `n` routes searched last, those searched at `since` (epoch s) or later."""
    return _routes(cache.seen_since(SEARCHED_AT, since, n))


def _routes(pairs: Iterable[str]) -> list[tuple[str, str]]:
    seen: dict[tuple[str, str], None] = {}
    for pair in pairs:
        origin, _, destination = pair.partition("-")
        if len(origin) == 3 and len(destination) == 3 and origin != destination:
            seen[(origin, destination)] = None
    return list(seen)
