"""Load shedding at the door: past what the machine can serve, answer at once
(503 `overloaded`, Retry-After) instead of letting requests wait in line.

Two signals, both kept per ingress process and both free of any round trip:

- QueueDelayGate, CoDel as Facebook runs it in front of its servers ("Fail at
  Scale", ACM Queue 2015): how long a request waited before a thread took it.
  While some request of the last `interval` waited less than `target`, the line
  is only a burst and a request is shed past `interval` of waiting; once none
  has, the line is standing and a request is shed past `target`. A standing
  line is what makes every answer slow, and shedding its head costs a fraction
  of serving it, so the line empties.
- GradientLimit, Netflix concurrency-limits' Gradient2 (what Envoy's adaptive
  concurrency filter also does): a limit on requests in flight that follows the
  latency the app measures. While the short-term latency stays within
  `tolerance` of the long-term one the limit grows by about its square root;
  when it rises past, the limit falls by the ratio (at most by half per
  update, smoothed). A request past the limit is shed.

- BacklogGate, for writes: the work queues' backlog in seconds of the
  workers' recent drain rate (by Little's law, how long a job accepted now
  would wait for a worker). On a machine whose workers share the cores with
  the ingress, accepting faster than the workers finish only grows the queues
  and takes CPU from the workers. Past `target_s` a share of the writes is
  shed, growing with the excess (all of them at twice the target): all or
  nothing on a sample a second apart would swing between the two. It is
  sampled off the request path (ingress.overload), so the check is a float.

OverloadGuard joins them with the in-flight count: `admit()` before any work
(authentication, parsing, a backing service), `done()` after the answer.
Everything here is plain arithmetic under one lock, driven by the caller's
clock, so tests feed it latencies and times directly.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

QUEUE_WAIT, IN_FLIGHT, BACKLOG = "queue-wait", "in-flight", "backlog"  # why a request was shed


class QueueDelayGate:
    """CoDel's decision on one request, from how long it waited (seconds)."""

    def __init__(self, target_s: float, interval_s: float):
        self.target_s = target_s
        self.interval_s = interval_s
        self._short_wait_at: float | None = None  # last time a request waited < target

    def admit(self, waited_s: float, now: float) -> bool:
        if waited_s < self.target_s:
            self._short_wait_at = now
            return True
        standing = self._short_wait_at is None or now - self._short_wait_at > self.interval_s
        return waited_s < (self.target_s if standing else self.interval_s)


class GradientLimit:
    """Gradient2: the in-flight limit from the ratio of long-term to short-term
    latency. `long_window` samples make the long-term average (its baseline),
    `short_window` the short-term one (one request is too noisy a signal)."""

    def __init__(
        self,
        *,
        initial: int,
        min_limit: int,
        max_limit: int,
        tolerance: float = 1.5,
        smoothing: float = 0.2,
        long_window: int = 600,
        short_window: int = 10,
    ):
        self.limit = float(initial)
        self.min_limit, self.max_limit = min_limit, max_limit
        self.tolerance, self.smoothing = tolerance, smoothing
        self.long_window, self.short_window = long_window, short_window
        self.long_rtt: float | None = None
        self.short_rtt: float | None = None
        self._samples = 0

    def update(self, rtt_s: float, in_flight: int) -> float:
        """One finished request's latency, with the requests in flight when it
        started (itself included); returns the new limit."""
        self._samples += 1
        if self.long_rtt is None or self.short_rtt is None:
            self.long_rtt = self.short_rtt = rtt_s
            return self.limit
        warming = min(self._samples, self.long_window)  # a plain mean until the window fills
        self.long_rtt += (rtt_s - self.long_rtt) / warming
        self.short_rtt += (rtt_s - self.short_rtt) / min(self._samples, self.short_window)
        if self.long_rtt / self.short_rtt > 2:
            # Latency fell well below the baseline (a load gone): let it follow.
            self.long_rtt *= 0.95
        if in_flight < self.limit / 2 and self.short_rtt <= self.tolerance * self.long_rtt:
            return self.limit  # not using the limit: no evidence to raise it on
        gradient = max(0.5, min(1.0, self.tolerance * self.long_rtt / self.short_rtt))
        wanted = self.limit * gradient + math.sqrt(self.limit)
        limit = self.limit * (1 - self.smoothing) + wanted * self.smoothing
        self.limit = max(float(self.min_limit), min(float(self.max_limit), limit))
        return self.limit


class BacklogGate:
    """Writes are shed while the work queues hold more than `target_s` of the
    workers' work: the share (backlog - target) / target of them. A queue
    nobody drains (no worker yet, or all down) is left to its bound (503
    queue-full): its backlog in seconds is unknown, and jobs accepted then
    wait, kept, for a worker."""

    def __init__(self, target_s: float):
        self.target_s = target_s
        self.backlog_s = 0.0

    def observe(self, depths: dict[str, int], rates: dict[str, float]) -> float:
        """The queues' ready messages and drain rates (per second) -> the largest
        backlog in seconds, kept for admit()."""
        self.backlog_s = max(
            (depth / rates[q] for q, depth in depths.items() if rates.get(q, 0) > 0),
            default=0.0,
        )
        return self.backlog_s

    @property
    def shed_share(self) -> float:
        return min(1.0, max(0.0, (self.backlog_s - self.target_s) / self.target_s))

    def admit(self, draw: float) -> bool:
        """`draw`: uniform in [0, 1) (random.random()), which writes are shed."""
        return draw >= self.shed_share


@dataclass(frozen=True)
class Admission:
    """An admitted request: when it started and how many were in flight then."""

    started: float
    in_flight: int


class OverloadGuard:
    """Per ingress process: admit or shed each request, cheaply and at once."""

    def __init__(
        self, gate: QueueDelayGate, limit: GradientLimit, backlog: BacklogGate | None = None
    ):
        self.gate, self.limit, self.backlog = gate, limit, backlog
        self.in_flight = 0
        self._lock = threading.Lock()

    def admit(
        self, now: float, waited_s: float | None, *, write: bool = False, draw: float = 1.0
    ) -> Admission | str:
        """An Admission, or why the request is shed (BACKLOG, QUEUE_WAIT, IN_FLIGHT).
        `waited_s` is None where the server does not say how long it waited;
        a `write` adds work to the queues, and is shed by the backlog as
        BacklogGate.admit(draw) says."""
        if write and self.backlog is not None and not self.backlog.admit(draw):
            return BACKLOG
        with self._lock:
            if waited_s is not None and not self.gate.admit(waited_s, now):
                return QUEUE_WAIT
            if self.in_flight >= int(self.limit.limit):
                return IN_FLIGHT
            self.in_flight += 1
            return Admission(now, self.in_flight)

    def done(self, admission: Admission, now: float) -> None:
        with self._lock:
            self.in_flight -= 1
            self.limit.update(now - admission.started, admission.in_flight)
