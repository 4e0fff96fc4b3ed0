"""Redis caches: their key names, JSON values, hit/miss counters.

The cache is an accelerator, never the source of truth: when Redis cannot be
reached a read falls through to MongoDB and a write is skipped (and logged).

Two invalidation schemes keep stale data out without `KEYS` or `SCAN`:
- versioned entries (booking details): a writer leaves a tombstone holding the
  new version, and a reader's fill is refused when its version is older, so a
  slow reader can never put back what a writer just invalidated;
- generations (list pages): every key embeds a counter that a writer bumps, so
  all older pages become unreachable at once and expire on their own.

Hit/miss counters and popularity counts are tallied in the process and added
to Redis every FLUSH_INTERVAL_S by a daemon thread (started by the first
count, never at import): a cache hit is then one round trip, with no write. A
reader in another process sees them up to one interval late; this process's
own readers (hit_stats, top) flush first.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import threading
import zlib
from collections import Counter
from collections.abc import Callable
from datetime import date
from typing import Any

import redis
from redis.client import NEVER_DECODE

from core.clock import to_iso
from core.errors import REDIS_ERRORS
from core.flushing import PeriodicFlush

log = logging.getLogger(__name__)

# -- key names: every cache entry's, its generation's and its counters' --------


def booking_details_key(ref_id: str) -> str:
    return f"booking:details:{ref_id}"


BOOKING_PAGES_GENERATION = "bookings:page:generation"


def booking_page_key(generation: int, query: dict[str, Any]) -> str:
    digest = hashlib.blake2b(json.dumps(query, sort_keys=True).encode()).hexdigest()[:24]
    return f"bookings:page:{generation}:{digest}"


def api_key_key(key_hash: str) -> str:
    """A customer's API key lookup, by the key's hash (the key itself is never stored)."""
    return f"users:key:{key_hash}"


LOOKUPS, MISSES = "lookups", "misses"


def stats_key(kind: str, counter: str) -> str:
    return f"cache:stats:{kind}:{counter}"


# Cache kinds, for hit/miss counters.
BOOKING_DETAILS = "booking_details"
BOOKING_PAGES = "booking_pages"
ROUTES = "routes"
FLIGHTS = "flights"
USERS = "users"
KINDS = (BOOKING_DETAILS, BOOKING_PAGES, ROUTES, FLIGHTS, USERS)

# Generations for caches whose keys must keep the spec's names
# (routes:<origin>:<destination>:<date>, flights:...): the value records the
# generation it was computed under, and a bump (a flight import) makes every
# older value a miss at once.
ROUTES_GENERATION = "cache:generation:routes"
FLIGHTS_GENERATION = "cache:generation:flights"

# What `clear` may delete: cache entries only, never locks (booking:ref:,
# flight:, bulk:operation:), jobs, counters or rate limits. Versioned entries
# (booking details, API keys) keep their version as a tombstone, and the
# generations stay: both are fences, not data (see Cache.clear).
CACHE_PREFIXES = ("booking:details:", "bookings:page:", "routes:", "flights:", "users:")


def space_ttl(ttl: int, bookings_ttl: int) -> int:
    """The TTL of a cached answer that shows flights' booked and available space
    (flights, lists, routes): at most CACHE_TTL_BOOKINGS, the lag the API allows
    them. A reservation invalidates nothing (it is exact in MongoDB; the views
    of its flights just expire soon)."""
    return min(ttl, bookings_ttl)


def flight_key(flight_id: str) -> str:
    return f"flights:{flight_id}"


def flight_list_key(origin: str, destination: str, day: str) -> str:
    return f"flights:{origin}:{destination}:{day}"


def route_key(
    origin: str,
    destination: str,
    day: date,
    weight_g: int | None = None,
    volume_cm3: int | None = None,
) -> str:
    """A route search's answer; one with a cargo weight (grams) or volume (cm3)
    has a key of its own."""
    key = f"routes:{origin}:{destination}:{day.isoformat()}"
    if weight_g is not None:
        key += f":{weight_g}g"
    if volume_cm3 is not None:
        key += f":{volume_cm3}cm3"
    return key


# -- values ---------------------------------------------------------------------


def json_default(value: Any) -> Any:
    """Dates and datetimes as the API writes them (ISO 8601, UTC, `Z`)."""
    if hasattr(value, "isoformat"):
        return to_iso(value)
    raise TypeError(f"cannot cache {type(value).__name__}")


def dumps(value: Any) -> str:
    return json.dumps(value, default=json_default, separators=(",", ":"))


# Generational values (flight lists) and answers (route results, ~60 KB of
# JSON each) are stored zlib-compressed above this size: 11x smaller (measured
# 60 KB -> 5.5 KB) for 0.15 ms, so warming a whole network fits in a few MB of
# Redis. Generational values in base64, because the client decodes every reply
# as text; answers are read as bytes.
COMPRESS_ABOVE = 4096
COMPRESSED = "z:"


def _compressed(encoded: str) -> str:
    if len(encoded) < COMPRESS_ABOVE:
        return encoded
    return COMPRESSED + base64.b64encode(zlib.compress(encoded.encode(), 1)).decode()


def _decode_generational(raw: str) -> dict[str, Any]:
    if raw.startswith(COMPRESSED):
        raw = zlib.decompress(base64.b64decode(raw[len(COMPRESSED) :])).decode()
    return json.loads(raw)


# Answers (route search): an HTTP body stored as bytes, served as stored.
#   <generation>|<codec>|<meta>\n<body>
# The plain header lets a hit check the generation without touching the body;
# codec "z" is zlib (every answer above COMPRESS_ABOVE), "" plain; meta is the
# caller's (a route answer's cut points). Read and written as bytes (never
# decoded as text), so no base64 either.
ZLIB = b"z"


def encode_answer(generation: int, body: bytes, meta: bytes = b"") -> bytes:
    codec = b""
    if len(body) >= COMPRESS_ABOVE:
        codec, body = ZLIB, zlib.compress(body, 1)
    return b"%d|%s|%s\n%s" % (generation, codec, meta, body)


def split_answer(stored: bytes) -> tuple[int, bytes, bytes]:
    """(generation, meta, body) of a stored answer; ValueError or zlib.error if
    `stored` is not one."""
    head, _, body = stored.partition(b"\n")
    generation, codec, meta = head.split(b"|", 2)
    return int(generation), meta, zlib.decompress(body) if codec == ZLIB else body


# Sets KEYS[1] to "<version>|<payload>" unless it holds a newer version.
# An empty payload is a tombstone: it reads as a miss but fences older fills.
_SET_IF_NOT_OLDER = """
local current = redis.call('GET', KEYS[1])
if current then
  local stored = tonumber(string.match(current, '^(%d+)|'))
  if stored and stored > tonumber(ARGV[1]) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. ARGV[2], 'EX', tonumber(ARGV[3]))
return 1
"""

# Drops the cache entries KEYS; returns how many held data. A versioned entry
# ("<version>|<payload>") becomes its tombstone ("<version>|"), its TTL kept: a
# reader still holding an older version can no more put it back than before
# the clear (a rotated API key's lookup, above all). Anything else is deleted.
_DROP_KEEPING_FENCES = """
local dropped = 0
for _, key in ipairs(KEYS) do
  local value = redis.pcall('GET', key)
  if type(value) == 'string' then
    local version = string.match(value, '^(%d+)|')
    if not version then
      redis.call('UNLINK', key)
      dropped = dropped + 1
    elseif #value > #version + 1 then
      redis.call('SET', key, version .. '|', 'KEEPTTL')
      dropped = dropped + 1
    end
  elseif value then  -- not a string: no entry of ours
    redis.call('UNLINK', key)
    dropped = dropped + 1
  end
end
return dropped
"""

# Adds ARGV[2k] occurrences of member ARGV[2k-1] (k = 1, 2, ...) to the sorted
# set KEYS[1], which never holds more than ARGV[1] members: a member not yet
# counted, when the set is full, replaces the lowest and inherits its count
# plus its own (the weighted "space-saving" algorithm of Metwally et al.).
# Trimming by rank instead would evict each newcomer at once; this way every
# member counted more than total/capacity times is kept, with an overestimate
# of at most the count it inherited.
_COUNT_BOUNDED = """
local capacity = tonumber(ARGV[1])
for i = 2, #ARGV, 2 do
  local member, n = ARGV[i], tonumber(ARGV[i + 1])
  if redis.call('ZSCORE', KEYS[1], member) then
    redis.call('ZINCRBY', KEYS[1], n, member)
  else
    local inherited = 0
    if redis.call('ZCARD', KEYS[1]) >= capacity then
      -- keep the capacity - 1 highest (a set over capacity shrinks back too)
      inherited = tonumber(redis.call('ZRANGE', KEYS[1], -capacity, -capacity, 'WITHSCORES')[2])
      redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -capacity)
    end
    redis.call('ZADD', KEYS[1], inherited + n, member)
  end
end
return 1
"""
_MEMBERS_PER_SCRIPT = 500  # one EVALSHA's ARGV stays small

# Sets the score of member ARGV[2k-1] to ARGV[2k] (a time) unless it holds a
# later one, then keeps the ARGV[1] latest members of the sorted set KEYS[1].
_TOUCH_BOUNDED = """
local capacity = tonumber(ARGV[1])
for i = 2, #ARGV, 2 do
  redis.call('ZADD', KEYS[1], 'GT', ARGV[i + 1], ARGV[i])
end
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -capacity - 1)
return 1
"""


class _Tally:
    """Counts not yet added to Redis: counters (INCRBY) and bounded sorted sets."""

    def __init__(self) -> None:
        self.counters: Counter[str] = Counter()
        self.members: dict[tuple[str, int], Counter[str]] = {}
        self.touched: dict[tuple[str, int], dict[str, float]] = {}


class Cache:
    """JSON values in Redis, with hit/miss counters per kind."""

    def __init__(self, client: redis.Redis):
        self.redis = client
        self._set_if_not_older = client.register_script(_SET_IF_NOT_OLDER)
        self._count_bounded = client.register_script(_COUNT_BOUNDED)
        self._touch_bounded = client.register_script(_TOUCH_BOUNDED)
        self._drop_keeping_fences = client.register_script(_DROP_KEEPING_FENCES)
        self._tally = _Tally()
        self._tally_lock = threading.Lock()
        self._flusher = PeriodicFlush("cache-counts", self._write_counts)

    # -- counts, kept here and flushed ------------------------------------------

    def _counted(self) -> _Tally:
        """This process's tally, to add to under _tally_lock; starts the flusher."""
        self._flusher.start()
        return self._tally

    def flush_counts(self) -> None:
        """Add the counts tallied so far to Redis (one pipeline). Counts are
        stats: when Redis refuses them (down, OOM) they are logged and dropped."""
        self._flusher.flush()

    def _write_counts(self) -> None:
        with self._tally_lock:
            tally, self._tally = self._tally, _Tally()
        if not tally.counters and not tally.members and not tally.touched:
            return
        pipe = self.redis.pipeline(transaction=False)
        for key, n in tally.counters.items():
            pipe.incrby(key, n)
        for (sorted_set, capacity), members in tally.members.items():
            items = list(members.items())
            for i in range(0, len(items), _MEMBERS_PER_SCRIPT):
                args = [capacity]
                for member, n in items[i : i + _MEMBERS_PER_SCRIPT]:
                    args += (member, n)
                self._count_bounded(keys=[sorted_set], args=args, client=pipe)
        for (sorted_set, capacity), times in tally.touched.items():
            items = list(times.items())
            for i in range(0, len(items), _MEMBERS_PER_SCRIPT):
                args = [capacity]
                for member, at in items[i : i + _MEMBERS_PER_SCRIPT]:
                    args += (member, repr(at))
                self._touch_bounded(keys=[sorted_set], args=args, client=pipe)
        try:
            pipe.execute()
        except REDIS_ERRORS as exc:
            log.warning("cache counts skipped: %s", exc)

    def _count(self, kind: str, counter: str) -> None:
        with self._tally_lock:
            self._counted().counters[stats_key(kind, counter)] += 1

    # Counted as lookups and misses in this process: a hit is one round trip.
    def _read(self, kind: str, *keys: str) -> list[Any]:
        values = self.redis.mget(*keys)
        self._count(kind, LOOKUPS)
        return values

    def _count_miss(self, kind: str) -> None:
        self._count(kind, MISSES)

    def count_hit(self, kind: str) -> None:
        """Count a hit read by a script of another module (core.ratelimit reads
        API keys' entries with the rate limit)."""
        self._count(kind, LOOKUPS)

    def get(self, key: str, kind: str) -> Any | None:
        try:
            (raw,) = self._read(kind, key)
        except REDIS_ERRORS as exc:
            log.warning("cache read skipped: %s", exc)
            return None
        if raw is not None and "|" in raw[:24] and raw.split("|", 1)[0].isdigit():
            raw = raw.split("|", 1)[1] or None  # versioned entry or tombstone
        if raw is None:
            self._count_miss(kind)
            return None
        return json.loads(raw)

    def set(self, key: str, value: Any, ttl: int) -> None:
        try:
            self.redis.set(key, dumps(value), ex=ttl)
        except REDIS_ERRORS as exc:
            log.warning("cache write skipped: %s", exc)

    def set_versioned(self, key: str, version: int, value: Any, ttl: int) -> bool:
        """Fill `key` unless a writer already recorded a newer version."""
        try:
            return bool(self._set_if_not_older(keys=[key], args=[version, dumps(value), ttl]))
        except REDIS_ERRORS as exc:
            log.warning("cache write skipped: %s", exc)
            return False

    def invalidate_versioned(self, key: str, version: int, ttl: int) -> None:
        """Drop `key`'s value and fence out fills older than `version`."""
        self._set_if_not_older(keys=[key], args=[version, "", ttl])

    # -- generational entries (routes, flights) --------------------------------

    def get_generational(self, key: str, kind: str, generation_key: str) -> tuple[Any | None, int]:
        """(value, current generation): value is None unless stored under the current one."""
        try:
            current, raw = self._read(kind, generation_key, key)
        except REDIS_ERRORS as exc:
            log.warning("cache read skipped: %s", exc)
            return None, -1
        generation = int(current or 0)
        value = None
        if raw is not None:
            stored = _decode_generational(raw)
            if stored.get("g") == generation:
                value = stored["v"]
        if value is None:
            self._count_miss(kind)
        return value, generation

    def set_generational(self, key: str, value: Any, ttl: int, generation: int) -> Any:
        """Store `value` as computed under `generation`; returns it as JSON would.

        A value computed before a bump carries the old generation and reads as
        a miss: an import racing a search cannot leave stale results behind.
        """
        encoded = dumps({"g": generation, "v": value})
        if generation >= 0:
            try:
                self.redis.set(key, _compressed(encoded), ex=ttl)
            except REDIS_ERRORS as exc:
                log.warning("cache write skipped: %s", exc)
        return json.loads(encoded)["v"]

    # -- answers (bytes served as stored) ------------------------------------------

    def get_answer(
        self, key: str, kind: str, generation_key: str
    ) -> tuple[tuple[bytes, bytes] | None, int]:
        """((meta, body) or None, current generation): one MGET, read as bytes;
        None unless the answer was stored under the current generation."""
        try:
            current, stored = self.redis.execute_command(
                "MGET", generation_key, key, **{NEVER_DECODE: []}
            )
        except REDIS_ERRORS as exc:
            log.warning("cache read skipped: %s", exc)
            return None, -1
        self._count(kind, LOOKUPS)
        generation = int(current or 0)
        if stored is not None:
            try:
                stored_generation, meta, body = split_answer(stored)
            except (ValueError, zlib.error):  # not an answer: written before answers were
                stored_generation = -1
            if stored_generation == generation:
                return (meta, body), generation
        self._count(kind, MISSES)
        return None, generation

    def set_answers(
        self, answers: dict[str, tuple[bytes, bytes]], ttl: int, generation: int
    ) -> None:
        """Store (meta, body) answers as computed under `generation`, in pipelined
        batches. One computed before a bump carries the old generation and reads
        as a miss: an import racing a search cannot leave stale results behind."""
        if generation < 0:
            return
        items = list(answers.items())
        try:
            for i in range(0, len(items), 200):
                pipe = self.redis.pipeline(transaction=False)
                for key, (meta, body) in items[i : i + 200]:
                    pipe.set(key, encode_answer(generation, body, meta), ex=ttl)
                pipe.execute()
        except REDIS_ERRORS as exc:
            log.warning("cache writes skipped: %s", exc)

    def through(
        self, key: str, kind: str, generation_key: str, ttl: int, compute: Callable[[], Any]
    ) -> Any:
        """The cached value of `key`, or compute() stored under the current generation.

        None (nothing found) is returned and never cached."""
        value, generation = self.get_generational(key, kind, generation_key)
        if value is None:
            computed = compute()
            value = (
                None if computed is None else self.set_generational(key, computed, ttl, generation)
            )
        return value

    # -- counters -------------------------------------------------------------------

    def count(self, sorted_set: str, member: str, *, capacity: int) -> None:
        """Count one occurrence of `member`, keeping at most `capacity` members
        (added to Redis with the next flush)."""
        with self._tally_lock:
            members = self._counted().members
            members.setdefault((sorted_set, capacity), Counter())[member] += 1

    def touch(self, sorted_set: str, member: str, at: float, *, capacity: int) -> None:
        """Record that `member` was seen at `at` (epoch seconds), keeping the
        `capacity` members seen last (added to Redis with the next flush)."""
        with self._tally_lock:
            touched = self._counted().touched.setdefault((sorted_set, capacity), {})
            touched[member] = max(at, touched.get(member, at))

    def seen_since(self, sorted_set: str, since: float, n: int) -> list[str]:
        """The `n` members seen last, those seen at `since` or later (touch)."""
        if n <= 0:
            return []
        self.flush_counts()
        try:
            return self.redis.zrevrangebyscore(sorted_set, "+inf", since, start=0, num=n)
        except REDIS_ERRORS as exc:
            log.warning("counter read skipped: %s", exc)
            return []

    def top(self, sorted_set: str, n: int) -> list[str]:
        if n <= 0:
            return []
        self.flush_counts()
        try:
            return self.redis.zrevrange(sorted_set, 0, n - 1)
        except REDIS_ERRORS as exc:
            log.warning("counter read skipped: %s", exc)
            return []

    # -- operators ------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Hits, misses and hit rate per kind, and key counts per cache prefix (SCAN)."""
        keys = {
            prefix.rstrip(":"): sum(1 for _ in self.redis.scan_iter(match=prefix + "*", count=1000))
            for prefix in CACHE_PREFIXES
        }
        return {"kinds": self.hit_stats(), "keys": keys}

    def hit_stats(self) -> dict[str, dict[str, Any]]:
        """Hits, misses and hit rate per cache kind (one round trip, after this
        process's flush)."""
        self.flush_counts()
        values = self.redis.mget([stats_key(kind, c) for kind in KINDS for c in (LOOKUPS, MISSES)])
        kinds = {}
        for i, kind in enumerate(KINDS):
            lookups, misses = int(values[2 * i] or 0), int(values[2 * i + 1] or 0)
            hits = max(lookups - misses, 0)  # a miss in flight is counted a moment later
            rate = round(hits / (hits + misses), 4) if hits + misses else None
            kinds[kind] = {"hits": hits, "misses": misses, "hit_rate": rate}
        return kinds

    def clear(self) -> int:
        """Drop every cache entry (SCAN, in batches); returns how many held data.

        The fences stay: a versioned entry is left as the tombstone of its
        version (a key rotated or a customer disabled stays refused, even to a
        lookup racing the clear), and the list pages' generation is kept."""
        dropped = 0
        for prefix in CACHE_PREFIXES:
            batch = []
            for key in self.redis.scan_iter(match=prefix + "*", count=1000):
                if key != BOOKING_PAGES_GENERATION:
                    batch.append(key)
                if len(batch) == 500:
                    dropped += self._drop_keeping_fences(keys=batch)
                    batch = []
            if batch:
                dropped += self._drop_keeping_fences(keys=batch)
        return dropped

    def generations(self, *names: str) -> tuple[int, ...] | None:
        """The current value of each generation (one MGET); None if Redis failed."""
        try:
            return tuple(int(value or 0) for value in self.redis.mget(names))
        except REDIS_ERRORS as exc:
            log.warning("cache generations unknown: %s", exc)
            return None

    # -- records of what cached entries were computed from (a hash) --------------------

    def records(self, name: str, keys: list[str]) -> dict[str, str | None]:
        """The record of each of `keys` in hash `name` (None: no record)."""
        if not keys:
            return {}
        try:
            return dict(zip(keys, self.redis.hmget(name, keys), strict=True))
        except REDIS_ERRORS as exc:
            log.warning("cache records unread: %s", exc)
            return dict.fromkeys(keys)

    def set_records(self, name: str, records: dict[str, str]) -> None:
        """Hash `name` holds `records` and nothing else (written only if it differs
        in size or in a record: a warm that found everything current writes nothing)."""
        try:
            if not records:
                self.redis.delete(name)
                return
            if self.redis.hlen(name) == len(records) and self.redis.hmget(
                name, list(records)
            ) == list(records.values()):
                return
            pipe = self.redis.pipeline(transaction=True)
            pipe.delete(name)
            if records:
                pipe.hset(name, mapping=records)
            pipe.execute()
        except REDIS_ERRORS as exc:
            log.warning("cache records not written: %s", exc)

    def extend(self, keys: list[str], ttl: int) -> list[str]:
        """Give each of `keys` still in Redis `ttl` seconds again; those it had."""
        found = []
        try:
            for i in range(0, len(keys), 500):
                batch = keys[i : i + 500]
                pipe = self.redis.pipeline(transaction=False)
                for key in batch:
                    pipe.expire(key, ttl)
                found += [key for key, had in zip(batch, pipe.execute(), strict=True) if had]
        except REDIS_ERRORS as exc:
            log.warning("cache TTLs not extended: %s", exc)
        return found

    def generation(self, name: str) -> int:
        try:
            return int(self.redis.get(name) or 0)
        except REDIS_ERRORS as exc:
            log.warning("cache generation unknown: %s", exc)
            return -1

    def bump_generation(self, name: str) -> None:
        self.redis.incr(name)
