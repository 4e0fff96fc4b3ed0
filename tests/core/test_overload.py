"""core.overload: the queue-wait gate, the gradient limit and the guard, fed
waits, latencies and times directly (no clock, no server)."""

from __future__ import annotations

import pytest

from core.overload import (
    BACKLOG,
    IN_FLIGHT,
    QUEUE_WAIT,
    Admission,
    BacklogGate,
    GradientLimit,
    OverloadGuard,
    QueueDelayGate,
)

MS = 0.001


def test_a_burst_may_wait_up_to_the_interval():
    gate = QueueDelayGate(target_s=10 * MS, interval_s=100 * MS)
    assert gate.admit(2 * MS, now=0.0)  # a short wait: no line
    assert gate.admit(60 * MS, now=0.05)  # a burst within the interval: waits are tolerated
    assert not gate.admit(120 * MS, now=0.06)  # but never past the interval


def test_a_standing_line_is_shed_past_the_target():
    gate = QueueDelayGate(target_s=10 * MS, interval_s=100 * MS)
    assert gate.admit(2 * MS, now=0.0)
    assert gate.admit(30 * MS, now=0.09)
    # No request waited less than the target for longer than the interval.
    assert not gate.admit(30 * MS, now=0.11)
    assert gate.admit(9 * MS, now=0.12)  # the line is gone: a short wait ends it
    assert gate.admit(30 * MS, now=0.13)


def test_waits_from_the_start_are_a_standing_line():
    gate = QueueDelayGate(target_s=10 * MS, interval_s=100 * MS)
    assert not gate.admit(20 * MS, now=0.0)  # never a short wait seen


def steady(limit: GradientLimit, rtt_s: float, n: int, in_flight=None) -> float:
    for _ in range(n):
        limit.update(rtt_s, in_flight if in_flight is not None else int(limit.limit))
    return limit.limit


def test_the_limit_grows_while_latency_holds_and_the_limit_is_used():
    limit = GradientLimit(initial=4, min_limit=2, max_limit=32)
    assert steady(limit, 5 * MS, 200) == 32  # up to its bound, not past it


def test_the_limit_does_not_grow_when_unused():
    limit = GradientLimit(initial=8, min_limit=2, max_limit=32)
    assert steady(limit, 5 * MS, 200, in_flight=2) == 8  # 2 in flight never tested 8


def test_the_limit_falls_when_latency_rises_past_the_tolerance_and_recovers():
    limit = GradientLimit(initial=16, min_limit=2, max_limit=32, tolerance=1.5)
    steady(limit, 5 * MS, 600)
    assert limit.limit == 32
    low = steady(limit, 50 * MS, 40)  # ten times the baseline: a line inside the app
    assert low < 8
    assert steady(limit, 50 * MS, 400) >= 2  # never under its floor
    assert steady(limit, 5 * MS, 400) == 32  # the load gone, the limit climbs back


def test_latency_within_the_tolerance_does_not_lower_the_limit():
    limit = GradientLimit(initial=16, min_limit=2, max_limit=32, tolerance=2.0)
    steady(limit, 5 * MS, 600)
    assert steady(limit, 9 * MS, 100) == 32


def guard(limit=2, target=10 * MS):
    return OverloadGuard(
        QueueDelayGate(target, 100 * MS),
        GradientLimit(initial=limit, min_limit=1, max_limit=limit),
    )


def test_the_guard_sheds_past_the_in_flight_limit_and_admits_again_after_done():
    g = guard(limit=2)
    first, second = g.admit(0.0, None), g.admit(0.0, None)
    assert isinstance(first, Admission) and isinstance(second, Admission)
    assert second.in_flight == 2
    assert g.admit(0.0, None) == IN_FLIGHT
    g.done(first, 0.005)
    assert isinstance(g.admit(0.006, None), Admission)
    assert g.in_flight == 2


def test_the_guard_sheds_a_request_that_waited_in_a_standing_line():
    g = guard(limit=8)
    assert isinstance(g.admit(0.0, 1 * MS), Admission)
    assert g.admit(0.5, 50 * MS) == QUEUE_WAIT  # no short wait in the last interval
    assert g.in_flight == 1  # a shed request holds nothing


@pytest.mark.parametrize("waited", [None, 0.0])
def test_without_a_wait_only_the_limit_decides(waited):
    g = guard(limit=1)
    assert isinstance(g.admit(0.0, waited), Admission)
    assert g.admit(0.0, waited) == IN_FLIGHT


def test_the_backlog_is_the_largest_queue_in_seconds_of_its_drain_rate():
    gate = BacklogGate(target_s=5.0)
    assert gate.observe({"bookings": 100, "status": 900}, {"bookings": 50.0, "status": 100.0}) == 9
    assert gate.observe({"bookings": 100, "status": 0}, {"bookings": 50.0, "status": 100.0}) == 2
    assert gate.admit(0.0)


@pytest.mark.parametrize(
    ("backlog_s", "shed_share"),
    [(4.0, 0.0), (5.0, 0.0), (6.0, 0.2), (7.5, 0.5), (10.0, 1.0), (60.0, 1.0)],
)
def test_past_the_target_a_share_of_writes_grows_with_the_excess(backlog_s, shed_share):
    gate = BacklogGate(target_s=5.0)
    gate.observe({"status": int(backlog_s * 100)}, {"status": 100.0})
    assert gate.shed_share == pytest.approx(shed_share)
    draws = [i / 100 for i in range(100)]
    assert sum(not gate.admit(d) for d in draws) == round(shed_share * 100)


def test_a_queue_nobody_drains_is_left_to_its_bound():
    gate = BacklogGate(target_s=5.0)
    assert gate.observe({"bookings": 10_000}, {"bookings": 0.0}) == 0.0  # no worker yet
    assert gate.admit(0.0)
    assert gate.observe({}, {}) == 0.0  # not sampled: open


def test_the_guard_sheds_writes_not_reads_while_the_workers_are_behind():
    g = OverloadGuard(
        QueueDelayGate(10 * MS, 100 * MS),
        GradientLimit(initial=8, min_limit=1, max_limit=8),
        BacklogGate(target_s=5.0),
    )
    g.backlog.observe({"status": 1000}, {"status": 100.0})  # 10 s behind: every write
    assert g.admit(0.0, None, write=True, draw=0.99) == BACKLOG
    assert isinstance(g.admit(0.0, None, write=False, draw=0.0), Admission)
    g.backlog.observe({"status": 100}, {"status": 100.0})
    assert isinstance(g.admit(0.0, None, write=True, draw=0.0), Admission)
