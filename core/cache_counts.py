"""Counts kept in the process and added to Redis in batches: counters
(INCRBY) and bounded sorted sets of members by count or by time last seen.

They are tallied here and added to Redis every FLUSH_INTERVAL_S by a daemon
thread (started by the first count, never at import): a cache hit is then one
round trip, with no write. A reader in another process sees them up to one
interval late; this process's own readers flush first.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter

import redis

from core.errors import REDIS_ERRORS
from core.flushing import PeriodicFlush

log = logging.getLogger(__name__)

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


class Counts:
    """This process's counts not yet in Redis, and the thread that adds them."""

    def __init__(self, client: redis.Redis):
        self.redis = client
        self._count_bounded = client.register_script(_COUNT_BOUNDED)
        self._touch_bounded = client.register_script(_TOUCH_BOUNDED)
        self._tally = _Tally()
        self._lock = threading.Lock()
        self._flusher = PeriodicFlush("cache-counts", self._write)

    def _counted(self) -> _Tally:
        """This process's tally, to add to under _lock; starts the flusher."""
        self._flusher.start()
        return self._tally

    def flush(self) -> None:
        """Add the counts tallied so far to Redis (one pipeline). Counts are
        stats: when Redis refuses them (down, OOM) they are logged and dropped."""
        self._flusher.flush()

    def increment(self, key: str) -> None:
        """Add one to the counter `key`."""
        with self._lock:
            self._counted().counters[key] += 1

    def count(self, sorted_set: str, member: str, *, capacity: int) -> None:
        """Count one occurrence of `member`, keeping at most `capacity` members."""
        with self._lock:
            members = self._counted().members
            members.setdefault((sorted_set, capacity), Counter())[member] += 1

    def touch(self, sorted_set: str, member: str, at: float, *, capacity: int) -> None:
        """Record that `member` was seen at `at` (epoch seconds), keeping the
        `capacity` members seen last."""
        with self._lock:
            touched = self._counted().touched.setdefault((sorted_set, capacity), {})
            touched[member] = max(at, touched.get(member, at))

    def _write(self) -> None:
        with self._lock:
            tally, self._tally = self._tally, _Tally()
        if not tally.counters and not tally.members and not tally.touched:
            return
        pipe = self.redis.pipeline(transaction=False)
        for key, n in tally.counters.items():
            pipe.incrby(key, n)
        for (sorted_set, capacity), members in tally.members.items():
            self._add(self._count_bounded, pipe, sorted_set, capacity, list(members.items()))
        for (sorted_set, capacity), times in tally.touched.items():
            items = [(member, repr(at)) for member, at in times.items()]
            self._add(self._touch_bounded, pipe, sorted_set, capacity, items)
        try:
            pipe.execute()
        except REDIS_ERRORS as exc:
            log.warning("cache counts skipped: %s", exc)

    @staticmethod
    def _add(script, pipe, sorted_set: str, capacity: int, items: list[tuple]) -> None:
        """Queue `script` on `pipe` for `items` (member, value), a batch at a time."""
        for i in range(0, len(items), _MEMBERS_PER_SCRIPT):
            args: list = [capacity]
            for member, value in items[i : i + _MEMBERS_PER_SCRIPT]:
                args += (member, value)
            script(keys=[sorted_set], args=args, client=pipe)
