"""Rate limits: sliding-window counters in Redis, one script call per check.

A budget allows `limit` hits per `window_s` seconds to each caller. Two
counters per caller and budget (this window's and the last one's, the last
weighted by how much of it still overlaps the sliding window) make the state
O(1) whatever the traffic, and each expires after two windows. The script
decides and counts at once, and answers what the RateLimit-* headers say, so
a request pays one round trip for its limit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import redis

# Windows are aligned to the clock, so a caller's hits straddle a boundary at any
# moment: the last window's share is rounded up, never letting a burst at the
# boundary through one hit early.
# KEYS: the last window's counter, this window's. ARGV: limit, window (ms),
# elapsed in this window (ms), amount (0: only ask). Returns {allowed, count
# after, ms until a hit would be allowed again (0 if allowed)}.
_SLIDING_WINDOW = """
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local elapsed = tonumber(ARGV[3])
local amount = tonumber(ARGV[4])
local previous = tonumber(redis.call('GET', KEYS[1]) or '0')
local current = tonumber(redis.call('GET', KEYS[2]) or '0')
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
  redis.call('INCRBY', KEYS[2], amount)
  redis.call('PEXPIRE', KEYS[2], window * 2)
end
return {1, count + amount, 0}
"""


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

    def check(self, budget: Budget, caller: str, now: float, *, count: bool = True) -> Verdict:
        """Whether `caller` may go on under `budget`, counting the hit if so
        (with count=False, only asks: whether one more hit would be allowed)."""
        window_ms = budget.window_s * 1000
        now_ms = int(now * 1000)
        index, elapsed = divmod(now_ms, window_ms)
        base = f"{self.prefix}:{budget.scope}:{budget.limit}/{budget.window_s}:{caller}"
        allowed, used, wait_ms = self._script(
            keys=[f"{base}:{index - 1}", f"{base}:{index}"],
            args=[budget.limit, window_ms, elapsed, 1 if count else 0],
        )
        return Verdict(
            allowed=bool(allowed),
            limit=budget.limit,
            remaining=max(0, budget.limit - int(used)),
            reset_s=math.ceil((window_ms - elapsed) / 1000),
            retry_after_s=max(1, math.ceil(int(wait_ms) / 1000)) if not allowed else 0,
        )
