"""Rate limits: sliding-window counters in Redis, one script call per check.

A budget allows `limit` hits per `window_s` seconds to each caller. Two
counters per caller and budget (this window's and the last one's, the last
weighted by how much of it still overlaps the sliding window) make the state
O(1) whatever the traffic, and each expires after two windows. The script
decides and counts at once, and answers what the RateLimit-* headers say, so
a request pays one round trip for its limit.

A caller known by an API key can also have its key's cache entry read by the
same script (`check_cached_key`): authentication and limit in one round trip.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import redis

# Windows are aligned to the clock, so a caller's hits straddle a boundary at any
# moment: the last window's share is rounded up, never letting a burst at the
# boundary through one hit early.
# slide(the last window's counter, this window's) with ARGV: limit, window (ms),
# elapsed in this window (ms), amount (0: only ask). Returns {allowed, count
# after, ms until a hit would be allowed again (0 if allowed)}.
_SLIDE = """
local function slide(previous_key, current_key)
  local limit = tonumber(ARGV[1])
  local window = tonumber(ARGV[2])
  local elapsed = tonumber(ARGV[3])
  local amount = tonumber(ARGV[4])
  local previous = tonumber(redis.call('GET', previous_key) or '0')
  local current = tonumber(redis.call('GET', current_key) or '0')
  local weight = (window - elapsed) / window
  local count = math.ceil(previous * weight) + current
  if count + math.max(amount, 1) > limit then
    local wait = window - elapsed
    if current < limit and previous > 0 then
      -- until the last window's share has decayed enough to admit one more
      local share = (limit - current - 1) / previous
      wait = math.min(wait, math.max(1, math.ceil((1 - share) * window - elapsed)))
    end
    return {0, count, wait}
  end
  if amount > 0 then
    redis.call('INCRBY', current_key, amount)
    redis.call('PEXPIRE', current_key, window * 2)
  end
  return {1, count + amount, 0}
end
"""

# KEYS: the last window's counter, this window's.
_SLIDING_WINDOW = _SLIDE + "return slide(KEYS[1], KEYS[2])"

# KEYS: an API key's cache entry (core.cache: "<version>|<json>", a tombstone
# "<version>|"), then the two counters. A missing entry or a tombstone answers
# nil and counts nothing: the caller is not known yet, and its hit is counted
# once it is (or per IP if it never is). Else the verdict, plus the entry's JSON.
_CACHED_KEY_WINDOW = (
    _SLIDE
    + """
local entry = redis.call('GET', KEYS[1])
if not entry then return nil end
local payload = string.match(entry, '^%d+|(.*)$') or entry
if payload == '' then return nil end
local verdict = slide(KEYS[2], KEYS[3])
verdict[4] = payload
return verdict
"""
)


@dataclass(frozen=True)
class Budget:
    """`limit` hits per `window_s` seconds for each caller, under `scope`
    (endpoints sharing a scope share the budget)."""

    scope: str
    limit: int
    window_s: int


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    limit: int
    remaining: int
    reset_s: int  # until the current window ends
    retry_after_s: int  # 0 when allowed


class RateLimiter:
    def __init__(self, client: redis.Redis, prefix: str = "ratelimit"):
        self.redis = client
        self.prefix = prefix
        self._script = client.register_script(_SLIDING_WINDOW)
        self._cached_key_script = client.register_script(_CACHED_KEY_WINDOW)

    def check(self, budget: Budget, caller: str, now: float, *, count: bool = True) -> Verdict:
        """Whether `caller` may go on under `budget`, counting the hit if so
        (with count=False, only asks: whether one more hit would be allowed)."""
        keys, args = self._window(budget, caller, now, count)
        return _verdict(budget, args, self._script(keys=keys, args=args))

    def check_cached_key(
        self, budget: Budget, cache_key: str, caller: str, now: float, *, count: bool = True
    ) -> tuple[Verdict, str] | None:
        """check(), in the same round trip as reading an API key's cache entry
        `cache_key`: (verdict, the entry's JSON), or None when the entry is
        missing or a tombstone (then nothing was counted).

        All three keys are declared, so the script would also run on Redis
        Cluster if they shared a hash tag (they do not need to today)."""
        keys, args = self._window(budget, caller, now, count)
        answer = self._cached_key_script(keys=[cache_key, *keys], args=args)
        if answer is None:
            return None
        return _verdict(budget, args, answer[:3]), answer[3]

    def _window(
        self, budget: Budget, caller: str, now: float, count: bool
    ) -> tuple[list[str], list[int]]:
        """The caller's two counters under `budget`, and the scripts' ARGV."""
        window_ms = budget.window_s * 1000
        index, elapsed = divmod(int(now * 1000), window_ms)
        base = f"{self.prefix}:{budget.scope}:{budget.limit}/{budget.window_s}:{caller}"
        keys = [f"{base}:{index - 1}", f"{base}:{index}"]
        return keys, [budget.limit, window_ms, elapsed, 1 if count else 0]


def _verdict(budget: Budget, args: list[int], answer: list) -> Verdict:
    _limit, window_ms, elapsed, _amount = args
    allowed, used, wait_ms = answer
    return Verdict(
        allowed=bool(allowed),
        limit=budget.limit,
        remaining=max(0, budget.limit - int(used)),
        reset_s=math.ceil((window_ms - elapsed) / 1000),
        retry_after_s=max(1, math.ceil(int(wait_ms) / 1000)) if not allowed else 0,
    )
