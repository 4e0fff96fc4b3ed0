"""The goals a `make perf` run is judged against, as data, and the one function
that judges them.

Each Goal reads a view of summary.json (VIEWS: the figures one benchmark or
Locust scenario recorded, with what the goal derives from them) and holds
Checks against the spec's targets and against our own: a figure's path in the
view, a comparison, a threshold and a unit. evaluate() turns a goal into the
report's row: the figure, the targets (written from the checks, so the text
cannot drift from what is judged), what was measured, the verdicts and the
ratio plotted in goals.png.
"""

from __future__ import annotations

import operator
import statistics
import string
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from perf.locust_stats import (
    CLIENT_CREATE,
    CLIENT_DEPART,
    CREATE,
    DEPART,
    E2E_CREATE,
    E2E_DEPART,
    http_failures,
    job_failures,
    offered,
    route_hit_rate,
    scenario,
    stat,
)
from perf.markdown import amount, ms, per_s

COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">=": operator.ge,
    ">": operator.gt,
    "==": operator.eq,
}


@dataclass(frozen=True)
class Check:
    """figure <compare> threshold; a str threshold is itself a path in the view
    (a benchmark that records its own goal)."""

    path: str
    compare: str
    threshold: float | str
    unit: str = "ms"


@dataclass(frozen=True)
class Goal:
    name: str  # the plot's label, and what "Where the time goes" refers to
    view: str  # a key of VIEWS
    figure: str  # templates over the view: {path}, {path!m} in ms, {path!f} a rate
    measured: str
    spec: tuple[Check, ...] = ()
    ours: tuple[Check, ...] = ()
    absent: str | None = None  # a "not run" row under this figure; None: no row


# -- reading a view ------------------------------------------------------------------


def figure(view: dict[str, Any], path: str) -> Any:
    """The value at a dotted path in the view, None where any step is missing."""
    value: Any = view
    for step in path.split("."):
        value = value.get(step) if isinstance(value, dict) else None
    return value


class _Template(string.Formatter):
    """str.format over a view: dotted paths; None as "-"; !m milliseconds, !f a rate."""

    def get_field(self, field_name, args, kwargs):
        return figure(kwargs, field_name), field_name

    def convert_field(self, value, conversion):
        if conversion == "m":
            return ms(value)
        if conversion == "f":
            return per_s(value)
        return super().convert_field(value, conversion)

    def format_field(self, value, format_spec):
        return "-" if value is None else super().format_field(value, format_spec)


def fill(template: str, view: dict[str, Any]) -> str:
    return _Template().format(template, **view)


# -- judging ---------------------------------------------------------------------------


def _limit(check: Check, view: dict[str, Any]) -> Any:
    return figure(view, check.threshold) if isinstance(check.threshold, str) else check.threshold


def _quantity(x: float, unit: str) -> str:
    return f"{x:.2f}" if not unit else f"{amount(x)} {unit}"


def verdict(check: Check, view: dict[str, Any]) -> str:
    """'met', 'not measured', or by how much it was missed."""
    value, limit = figure(view, check.path), _limit(check, view)
    if value is None or limit is None:
        return "not measured"
    if COMPARE[check.compare](value, limit):
        return "met"
    if check.compare == "==":
        return f"missed: {value} {check.unit}"
    if check.compare in ("<", "<="):
        word = "limit" if check.compare == "<" else "target"
        over = f"{amount(value / limit)}x the {word}" if limit else "over 0"
        return f"missed by {_quantity(value - limit, check.unit)} ({over})"
    return f"missed by {_quantity(limit - value, check.unit)} ({value / limit:.0%} of it)"


def ratio(check: Check, view: dict[str, Any]) -> float | None:
    """measured / threshold, below 1 meeting it (a floor inverted: threshold / measured)."""
    value, limit = figure(view, check.path), _limit(check, view)
    if value is None or limit is None or check.compare == "==":
        return None
    if check.compare in ("<", "<="):
        return value / limit if limit else None
    return limit / value if value else None


def describe(checks: tuple[Check, ...], view: dict[str, Any] | None = None) -> str:
    """The target column: "< 20 ms, 0 HTTP errors"; "-" for none."""
    return ", ".join(_target(c, view) for c in checks) or "-"


def _target(check: Check, view: dict[str, Any] | None) -> str:
    if check.compare == "==":
        return f"0 {check.unit}"
    limit = _limit(check, view) if view is not None else check.threshold
    if isinstance(limit, str | None):
        return f"{check.compare} its own goal"
    return f"{check.compare} {limit:g} {check.unit}".strip()


def both(*verdicts: str) -> str:
    missed = [v for v in verdicts if v != "met"]
    return "met" if not missed else "; ".join(missed)


def not_run(goal: Goal) -> dict[str, Any]:
    return {
        "name": goal.name,
        "figure": goal.absent,
        "spec": describe(goal.spec),
        "goal": describe(goal.ours),
        "measured": "not run",
        "vs_spec": "not measured",
        "vs_goal": "not measured",
        "ratio": None,
    }


def evaluate(goal: Goal, summary: dict) -> dict[str, Any] | None:
    """The goal's row in the report; None for a goal whose benchmark did not run
    and that has no "not run" row."""
    view = VIEWS[goal.view](summary)
    if view is None:
        return None if goal.absent is None else not_run(goal)
    ratios = [r for c in goal.ours if (r := ratio(c, view)) is not None]
    return {
        "name": goal.name,
        "figure": fill(goal.figure, view),
        "spec": describe(goal.spec, view),
        "goal": describe(goal.ours, view),
        "measured": fill(goal.measured, view),
        "vs_spec": both(*(verdict(c, view) for c in goal.spec)) if goal.spec else "-",
        "vs_goal": both(*(verdict(c, view) for c in goal.ours)) if goal.ours else "-",
        "ratio": max(ratios, default=None),
    }


def goal_rows(summary: dict) -> list[dict[str, Any]]:
    return [row for goal in GOALS if (row := evaluate(goal, summary)) is not None]


# -- the views: what each goal reads from summary.json ---------------------------------


def bench(summary: dict, name: str) -> Any:
    return ((summary.get("benchmarks") or {}).get(name) or {}).get("figures")


def _worst(*values: float | None) -> float | None:
    return max((v for v in values if v is not None), default=None)


def locust_view(name: str) -> Callable[[dict], dict[str, Any] | None]:
    def view(summary: dict) -> dict[str, Any] | None:
        s = scenario(summary, name)
        if not s.get("stats"):
            return None
        figures = {
            "create_p95": stat(s, CREATE, "p95"),
            "depart_p95": stat(s, DEPART, "p95"),
            "e2e_create_p95": stat(s, E2E_CREATE, "p95"),
            "e2e_depart_p95": stat(s, E2E_DEPART, "p95"),
            "client_create_p95": stat(s, CLIENT_CREATE, "p95"),
            "client_depart_p95": stat(s, CLIENT_DEPART, "p95"),
            "create_per_s": stat(s, CREATE, "per_s"),
            "depart_per_s": stat(s, DEPART, "per_s"),
            "offered_create": offered(s, CREATE),
            "offered_depart": offered(s, DEPART),
            "http_errors": http_failures(s),
            "unfinished": job_failures(s),
        }
        figures["worst_p95"] = _worst(figures["create_p95"], figures["depart_p95"])
        figures["e2e_worst_p95"] = _worst(figures["e2e_create_p95"], figures["e2e_depart_p95"])
        return figures

    return view


def _transitions(summary: dict, at: Callable[[float], bool]) -> dict[str, Any] | None:
    return next((t for t in bench(summary, "transitions") or [] if at(t["offered_rate"])), None)


def open_loop_view(summary: dict) -> dict[str, Any] | None:
    create, t300 = bench(summary, "create"), _transitions(summary, lambda rate: rate >= 300)
    if not (create and t300):
        return None
    c95, t95 = create["accept_ms"]["p95"], t300["accept_ms"]["p95"]
    return {
        "create": create,
        "t300": t300,
        "worst_p95": max(c95 or 0, t95 or 0),
        "errors": sum(create["errors"].values()) + sum(t300["errors"].values()),
    }


def offered_text(burst: dict[str, Any]) -> str:
    """The burst benchmark's load: "100 creates/s + 300 updates/s"."""
    return " + ".join(f"{rate:g} {kind}s/s" for kind, rate in burst["offered"].items())


def burst_view(summary: dict) -> dict[str, Any] | None:
    burst = bench(summary, "burst")
    if not burst:
        return None
    jobs = burst["jobs"]
    failed = jobs["states"].get("failed", 0)
    drain = burst["drain_s"]
    return {
        **burst,
        "load": offered_text(burst),
        "errors": burst["unavailable"] + burst["other_errors"],
        "failed": failed,
        "succeeded": jobs["accepted"] - jobs["unfinished"] - failed,
        "drained": "not drained" if drain is None else f"drained {drain:.0f} s",
    }


def reservations_view(summary: dict) -> dict[str, Any] | None:
    f = bench(summary, "reservations")
    if not f:
        return None
    hot, spread = f["hot"], f["spread"]
    checks_failed = (not hot["check"]["ok"]) + (not spread["check"]["ok"])
    return {
        **f,
        "hot_p95": hot["flight_lock"]["acquire_ms"]["p95"],
        "spread_p95": spread["flight_lock"]["acquire_ms"]["p95"],
        "failed": hot["jobs"]["failed"] + spread["jobs"]["failed"],
        "checks_failed": checks_failed,
        "add_up": "DO NOT ADD UP" if checks_failed else "add up",
    }


def bulk_view(summary: dict) -> dict[str, Any] | None:
    bulk = bench(summary, "bulk")
    if not bulk:
        return None
    return {
        **bulk,
        "creates": statistics.median(bulk["bulk_create_items_per_s"]),
        "updates": statistics.median(bulk["bulk_update_items_per_s"]),
    }


def route_cache_view(summary: dict) -> dict[str, Any]:
    rate, hits, misses, names = route_hit_rate(summary)
    return {
        "hit_pct": None if rate is None else 100 * rate,
        "miss_pct": None if rate is None else 100 * (1 - rate),
        "hits": hits,
        "misses": misses,
        "scenarios": ", ".join(names) or "no scenario",
    }


VIEWS: dict[str, Callable[[dict], dict[str, Any] | None]] = {
    "mixed_x10": locust_view("mixed_x10"),
    "mixed_x1": locust_view("mixed_x1"),
    "open_loop": open_loop_view,
    "burst": burst_view,
    "accept": lambda summary: bench(summary, "accept"),
    "reads": lambda summary: bench(summary, "reads"),
    "create": lambda summary: bench(summary, "create"),
    "transitions_30": lambda summary: _transitions(summary, lambda rate: rate <= 30),
    "flights": lambda summary: bench(summary, "flights"),
    "bulk": bulk_view,
    "route_cache": route_cache_view,
    "reservations": reservations_view,
}


# -- the goals ---------------------------------------------------------------------------

FLOOR_MEASURED = (
    "{ingress.rps:.0f} / {floor.rps:.0f} = {rps_ratio:.2f} (CPU "
    "{ingress.cpu_ms_per_request:.2f} vs {floor.cpu_ms_per_request:.2f} ms per {unit})"
)
FLOOR_FIGURE = " / its floor app, requests/s (same gunicorn, alternating rounds)"
FLOOR_GOAL = (Check("rps_ratio", ">=", "goal_ratio", ""),)

GOALS: tuple[Goal, ...] = (
    Goal(
        "accept p95 at 10x peak (Locust)",
        "mixed_x10",
        "ingress accept p95 at 10x the spec's peak (100 creates/s + 300 updates/s), "
        "Locust mixed x10 (closed loop)",
        "create {create_p95!m} / update {depart_p95!m} ms; {http_errors} HTTP errors "
        "({unfinished} jobs failed or unfinished in the poll timeout); offered "
        "{offered_create!f} + {offered_depart!f}/s, achieved {create_per_s!f} + "
        "{depart_per_s!f}/s",
        spec=(Check("create_p95", "<=", 200), Check("depart_p95", "<=", 100)),
        ours=(Check("worst_p95", "<", 20), Check("http_errors", "==", 0, "HTTP errors")),
        absent="ingress accept p95 at 10x the spec's peak, Locust mixed x10",
    ),
    Goal(
        "accept p95 at 10x (open-loop benches)",
        "open_loop",
        "the same, open loop: bench_create at {create.offered_rate:.0f}/s, "
        "bench_transitions at {t300.offered_rate:.0f}/s (separately)",
        "create {create.accept_ms.p95!m} / update {t300.accept_ms.p95!m} ms; {errors} errors; "
        "achieved {create.achieved_rate:.0f} / {t300.achieved_rate:.0f}/s",
        spec=(Check("create.accept_ms.p95", "<=", 200), Check("t300.accept_ms.p95", "<=", 100)),
        ours=(Check("worst_p95", "<", 20), Check("errors", "==", 0, "errors")),
    ),
    Goal(
        "burst accept p95 at 10x peak (bench_burst)",
        "burst",
        "burst: {load} open loop for {seconds:g} s, then until drained (bench_burst): "
        "accept p95 from the due time, errors, jobs finished, CPU per job",
        "{accept_from_due_ms.p95!m} ms (send -> answer {accept_ms.p95!m} ms); {unavailable} "
        "503s, {other_errors} other errors; {succeeded} of {jobs.accepted} jobs succeeded, "
        "{drained} after the load; {stack_cpu_ms_per_job!m} CPU ms per job",
        spec=(
            Check("kinds.create.accept_from_due_ms.p95", "<=", 200),
            Check("kinds.update.accept_from_due_ms.p95", "<=", 100),
        ),
        ours=(
            Check("kinds.create.accept_from_due_ms.p95", "<=", 200),
            Check("kinds.update.accept_from_due_ms.p95", "<=", 100),
            Check("errors", "==", 0, "errors"),
            Check("jobs.unfinished", "==", 0, "jobs unfinished"),
            Check("failed", "==", 0, "jobs failed"),
            Check("drain_s", "<=", 5, "s to drain"),
            Check("stack_cpu_ms_per_job", "<=", 4.5, "CPU ms per job"),
        ),
    ),
    Goal(
        "accept path (bench_accept): POST /api/bookings",
        "accept",
        "accept path (bench_accept): POST /api/bookings" + FLOOR_FIGURE,
        FLOOR_MEASURED.replace("{unit}", "accept"),
        ours=FLOOR_GOAL,
    ),
    Goal(
        "cached route search (bench_reads)",
        "reads",
        "cached route search (bench_reads)" + FLOOR_FIGURE,
        FLOOR_MEASURED.replace("{unit}", "request"),
        ours=FLOOR_GOAL,
    ),
    Goal(
        "uncached route search p95 over HTTP",
        "reads",
        "uncached route search over HTTP, {flights} flights, dates outside the warm window "
        "(bench_reads): p95",
        "{uncached.latency_ms.p95!m} ms",
        spec=(Check("uncached.latency_ms.p95", "<", 500),),
        ours=(Check("uncached.latency_ms.p95", "<", 50),),
    ),
    Goal(
        "create throughput / no-op floor",
        "create",
        "end-to-end create throughput / no-op Celery task throughput, same run",
        "{create_throughput_per_s:.0f}/s / {noop_throughput_per_s:.0f}/s = {ratio_to_floor:.2f}",
        ours=(Check("ratio_to_floor", ">=", 0.6, ""),),
        absent="end-to-end create throughput / no-op Celery task throughput",
    ),
    Goal(
        "E2E p95 at the spec's peak (Locust)",
        "mixed_x1",
        "end-to-end p95 (accepted -> committed) at the spec's peak, Locust mixed x1",
        "create {e2e_create_p95!m} / update {e2e_depart_p95!m} ms (client-observed, polling: "
        "{client_create_p95!m} / {client_depart_p95!m} ms)",
        ours=(Check("e2e_worst_p95", "<", 50),),
        absent="end-to-end p95 at the spec's peak",
    ),
    Goal(
        "E2E p95, updates at 30/s (bench)",
        "transitions_30",
        "the same for updates alone, open loop: bench_transitions at {offered_rate:.0f}/s",
        "{end_to_end_ms.p95!m} ms",
        ours=(Check("end_to_end_ms.p95", "<", 50),),
    ),
    Goal(
        "flight import / raw insert_many",
        "flights",
        "bulk import items/s / raw insert_many into the same server ({count:,} flights)",
        "{import_per_s:.0f} / {raw_insert_per_s:.0f} docs/s = {import_vs_raw:.2f} (vs "
        "insert_many with the flights' indexes: {import_vs_raw_indexed:.2f})",
        spec=(Check("import_per_s", ">=", 50, "items/s"),),
        ours=(Check("import_vs_raw", ">=", 0.7, ""),),
        absent="bulk import items/s / raw insert_many",
    ),
    Goal(
        "bulk bookings and updates items/s",
        "bulk",
        "bulk bookings ({bookings_per_batch}) and status updates ({updates_per_batch}), "
        "POST to job finished",
        "{creates:.0f} / {updates:.0f} items/s",
        spec=(Check("creates", ">=", 50, "items/s"), Check("updates", ">=", 50, "items/s")),
    ),
    Goal(
        "route search p95 uncached / cached",
        "flights",
        "route search p95 over {count:,} flights, uncached / cached ({searches} searches)",
        "{uncached_ms.p95!m} / {cached_hit_ms.p95!m} ms",
        spec=(Check("uncached_ms.p95", "<=", 500), Check("cached_hit_ms.p95", "<=", 50)),
        ours=(Check("uncached_ms.p95", "<", 50), Check("cached_hit_ms.p95", "<", 5)),
        absent="route search p95, uncached / cached",
    ),
    Goal(
        "route cache hit rate (as miss rate / 5 %)",
        "route_cache",
        "route cache hit rate under the Zipf load with warming (Locust: {scenarios})",
        "{hit_pct:.1f} % ({hits} hits, {misses} misses)",
        spec=(Check("miss_pct", "<=", 15, "% misses"),),
        ours=(Check("miss_pct", "<", 5, "% misses"),),
    ),
    Goal(
        "lock acquisition p95",
        "transitions_30",
        "lock acquisition p95, uncontended (bench_transitions at {offered_rate:.0f}/s)",
        "{lock_acquire_ms.p95!m} ms (p50 {lock_acquire_ms.p50!m}, max {lock_acquire_ms.max!m})",
        spec=(Check("lock_acquire_ms.p95", "<=", 50),),
        ours=(Check("lock_acquire_ms.p95", "<", 5),),
        absent="lock acquisition p95, uncontended",
    ),
    Goal(
        "reservations hot / spread; flight lock p95",
        "reservations",
        "reservations/s through the create worker, {hot.bookings:,} bookings on one hot "
        "flight / spread over {spread.flights:,} flights (bench_reservations); flight lock "
        "acquisition p95",
        "{hot.reservations_per_s:.0f} / {spread.reservations_per_s:.0f}/s = {ratio:.2f}; "
        "flight lock p95 {hot_p95!m} ms hot, {spread_p95!m} ms spread; {failed} jobs failed; "
        "booked kg and m3 {add_up}",
        ours=(
            Check("ratio", ">=", 0.5, ""),
            Check("spread_p95", "<", 5),
            Check("failed", "==", 0, "jobs failed"),
            Check("checks_failed", "==", 0, "checks of booked kg and m3 failed"),
        ),
    ),
)
