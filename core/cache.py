"""Redis caches: their key names, JSON values, hit/miss counters.

The cache is an accelerator, never the source of truth: when Redis cannot be
reached a read falls through to MongoDB and a write is skipped (and logged).

Two invalidation schemes keep stale data out without `KEYS` or `SCAN`:
- versioned entries (booking details): a writer leaves a tombstone holding the
  new version, and a reader's fill is refused when its version is older, so a
  slow reader can never put back what a writer just invalidated;
- generations (list pages): every key embeds a counter that a writer bumps, so
  all older pages become unreachable at once and expire on their own.

Key names are core.cache_keys's, value encodings core.cache_codec's, and the
hit/miss counters and popularity counts are tallied by core.cache_counts.
"""

from __future__ import annotations

import json
import logging
import zlib
from collections.abc import Callable
from typing import Any

import redis
from redis.client import NEVER_DECODE

from core.cache_codec import compressed, decode_generational, dumps, encode_answer, split_answer
from core.cache_counts import Counts
from core.cache_keys import (
    BOOKING_PAGES_GENERATION,
    CACHE_PREFIXES,
    KINDS,
    LOOKUPS,
    MISSES,
    stats_key,
)
from core.errors import REDIS_ERRORS

log = logging.getLogger(__name__)


def space_ttl(ttl: int, bookings_ttl: int) -> int:
    """The TTL of a cached answer that shows flights' booked and available space
    (flights, lists, routes): at most CACHE_TTL_BOOKINGS, the lag the API allows
    them. A reservation invalidates nothing (it is exact in MongoDB; the views
    of its flights just expire soon)."""
    return min(ttl, bookings_ttl)


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


class Cache:
    """JSON values in Redis, with hit/miss counters per kind."""

    def __init__(self, client: redis.Redis):
        self.redis = client
        self._set_if_not_older = client.register_script(_SET_IF_NOT_OLDER)
        self._drop_keeping_fences = client.register_script(_DROP_KEEPING_FENCES)
        self._counts = Counts(client)

    # -- counts, kept in the process and flushed (core.cache_counts) ---------------

    def flush_counts(self) -> None:
        """Add this process's counts so far to Redis (logged and dropped if refused)."""
        self._counts.flush()

    def _count(self, kind: str, counter: str) -> None:
        self._counts.increment(stats_key(kind, counter))

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
            stored = decode_generational(raw)
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
                self.redis.set(key, compressed(encoded), ex=ttl)
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
            except (ValueError, zlib.error):  # not in the answers' format
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
        self._counts.count(sorted_set, member, capacity=capacity)

    def touch(self, sorted_set: str, member: str, at: float, *, capacity: int) -> None:
        """Record that `member` was seen at `at` (epoch seconds), keeping the
        `capacity` members seen last (added to Redis with the next flush)."""
        self._counts.touch(sorted_set, member, at, capacity=capacity)

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
