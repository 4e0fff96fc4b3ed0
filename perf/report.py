"""report.md and PNG plots from a `make perf` results directory.

    python -m perf.report perf/results/<timestamp>     # (re)builds <dir>/report.md

Reads <dir>/summary.json (written by perf/run_perf.py) and Locust's
<scenario>_stats.csv / <scenario>_stats_history.csv in <dir>/raw/. Every figure
is set against the spec's target and our goal; a missed one says by how much.
The plots go to <dir>/raw/ too: a run commits summary.json and report.md only.
"""

from __future__ import annotations

import csv
import json
import math
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

# Locust's "<type> <name>" keys (_key): the HTTP requests, then the events
# perf/locustfile.py fires for each job (E2E, E2E-client), then the total.
CREATE, DEPART = "POST /api/bookings", "POST /api/bookings/[ref_id]/depart"
ROUTES, POLL = "GET /api/routes", "GET /api/jobs/[job_id]"
E2E_CREATE, E2E_DEPART = "E2E create", "E2E depart"
CLIENT_CREATE, CLIENT_DEPART = "E2E-client create", "E2E-client depart"
AGGREGATED = "Aggregated"
PLOTTED = (CREATE, DEPART, ROUTES, E2E_CREATE, E2E_DEPART)
USER_CLASS = {CREATE: "CreateBooking", DEPART: "DepartBooking", ROUTES: "RouteSearch"}

# -- Locust's CSV files -----------------------------------------------------------------


def generated(run: Path) -> Path:
    """A run's generated files: Locust's CSV, HTML and logs, the plots, py-spy's.
    Git-ignored (perf/results/*/raw/), so a run commits summary.json and report.md."""
    return Path(run) / "raw"


def _num(value: str | None) -> float | None:
    if value is None or value.strip() in ("", "N/A"):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return None if math.isnan(number) else number


def _key(row: dict[str, str]) -> str:
    return f"{row.get('Type') or ''} {row['Name']}".strip()


def read_stats(path: Path) -> dict[str, dict[str, float | None]]:
    """Locust's <prefix>_stats.csv: per "<type> <name>", counts, rates and percentiles (ms)."""
    if not Path(path).exists():
        return {}
    stats = {}
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            stats[_key(row)] = {
                "count": int(_num(row["Request Count"]) or 0),
                "failures": int(_num(row["Failure Count"]) or 0),
                "per_s": _num(row["Requests/s"]),
                "failures_per_s": _num(row["Failures/s"]),
                "avg": _num(row["Average Response Time"]),
                "min": _num(row["Min Response Time"]),
                "p50": _num(row["50%"]),
                "p95": _num(row["95%"]),
                "p99": _num(row["99%"]),
                "max": _num(row["Max Response Time"]),
            }
    return stats


def read_history(path: Path) -> dict[str, dict[str, list[float | None]]]:
    """Locust's <prefix>_stats_history.csv (--csv-full-history): series per "<type> <name>"."""
    series: dict[str, dict[str, list[float | None]]] = {}
    if not Path(path).exists():
        return series
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            s = series.setdefault(
                _key(row),
                {k: [] for k in ("t", "users", "per_s", "failures_per_s", "p50", "p95", "p99")},
            )
            s["t"].append(_num(row["Timestamp"]))
            s["users"].append(_num(row["User Count"]))
            s["per_s"].append(_num(row["Requests/s"]))
            s["failures_per_s"].append(_num(row["Failures/s"]))
            for p, column in (("p50", "50%"), ("p95", "95%"), ("p99", "99%")):
                s[p].append(_num(row[column]))
    return series


# -- verdicts -------------------------------------------------------------------------


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}" if value < 10 else f"{value:.0f}"


def _amount(x: float) -> str:
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:.3g}"


def below(value: float | None, limit: float, unit: str = "ms") -> str:
    """'met' if value < limit, else by how much it is over."""
    if value is None:
        return "not measured"
    if value < limit:
        return "met"
    return f"missed by {_amount(value - limit)} {unit} ({_amount(value / limit)}x the limit)"


def at_most(value: float | None, limit: float, unit: str = "ms") -> str:
    """'met' if value <= limit (the spec's targets are maxima)."""
    if value is None:
        return "not measured"
    if value <= limit:
        return "met"
    return f"missed by {_amount(value - limit)} {unit} ({_amount(value / limit)}x the target)"


def at_least(value: float | None, floor: float, fmt: Callable[[float], str] = str) -> str:
    if value is None:
        return "not measured"
    if value >= floor:
        return "met"
    return f"missed by {fmt(floor - value)} ({value / floor:.0%} of it)"


def above_rate(value: float | None, floor: float) -> str:
    if value is None:
        return "not measured"
    if value > floor:
        return "met"
    return f"missed by {100 * (floor - value):.1f} points"


def both(*verdicts: str) -> str:
    missed = [v for v in verdicts if v != "met"]
    return "met" if not missed else "; ".join(missed)


# -- the figures ------------------------------------------------------------------------


def _scenario(summary: dict, name: str) -> dict[str, Any]:
    return (summary.get("locust") or {}).get("scenarios", {}).get(name) or {}


def _stat(scenario: dict, key: str, field: str) -> float | None:
    return (scenario.get("stats") or {}).get(key, {}).get(field)


def _bench(summary: dict, name: str) -> Any:
    bench = (summary.get("benchmarks") or {}).get(name) or {}
    return bench.get("figures")


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _offered(scenario: dict, key: str) -> float | None:
    return (scenario.get("offered_per_s") or {}).get(USER_CLASS.get(key, ""))


def http_failures(scenario: dict) -> int:
    """Failed HTTP requests (not E2E events): non-2xx answers, timeouts, refused connections."""
    stats = scenario.get("stats") or {}
    return sum(
        int(st.get("failures") or 0)
        for key, st in stats.items()
        if key != AGGREGATED and not key.startswith("E2E")
    )


def job_failures(scenario: dict) -> int:
    """Jobs that failed or did not finish within the poll timeout."""
    stats = scenario.get("stats") or {}
    return sum(int((stats.get(key) or {}).get("failures") or 0) for key in (E2E_CREATE, E2E_DEPART))


def route_hit_rate(summary: dict) -> tuple[float | None, int, int, list[str]]:
    """Route cache hit rate over every Locust scenario that searched routes."""
    hits = misses = 0
    names = []
    for name, s in (summary.get("locust") or {}).get("scenarios", {}).items():
        rc = s.get("route_cache") or {}
        if rc.get("hits", 0) + rc.get("misses", 0):
            hits, misses = hits + rc["hits"], misses + rc["misses"]
            names.append(name)
    return (hits / (hits + misses) if hits + misses else None), hits, misses, names


def goal_rows(summary: dict) -> list[dict[str, Any]]:
    rows = []

    # 1. ingress accept p95 at 10x the spec's peak, Locust (closed loop) and benchmarks (open loop)
    peak10 = _scenario(summary, "mixed_x10")
    c95, d95 = _stat(peak10, CREATE, "p95"), _stat(peak10, DEPART, "p95")
    worst = max((v for v in (c95, d95) if v is not None), default=None)
    errors, unfinished = http_failures(peak10), job_failures(peak10)
    if peak10.get("stats"):
        measured = (
            f"create {_ms(c95)} / update {_ms(d95)} ms; {errors} HTTP errors "
            f"({unfinished} jobs failed or unfinished in the poll timeout); "
            f"offered {_rate(_offered(peak10, CREATE))} + {_rate(_offered(peak10, DEPART))}/s, "
            f"achieved {_rate(_stat(peak10, CREATE, 'per_s'))} + "
            f"{_rate(_stat(peak10, DEPART, 'per_s'))}/s"
        )
        goal = both(below(worst, 20), "met" if not errors else f"missed: {errors} HTTP errors")
        spec = both(at_most(c95, 200), at_most(d95, 100))
    else:
        measured, goal, spec = "not run", "not measured", "not measured"
    rows.append(
        {
            "figure": "ingress accept p95 at 10x the spec's peak (100 creates/s + 300 "
            "updates/s), Locust mixed x10 (closed loop)",
            "spec": "200 / 100 ms",
            "goal": "< 20 ms, 0 errors",
            "measured": measured,
            "vs_spec": spec,
            "vs_goal": goal,
            "short": "accept p95 at 10x peak (Locust)",
            "ratio": _ratio(worst if peak10.get("stats") else None, 20),
        }
    )
    create = _bench(summary, "create")
    transitions = _bench(summary, "transitions") or []
    t300 = next((t for t in transitions if t["offered_rate"] >= 300), None)
    if create and t300:
        bc95, bt95 = create["accept_ms"]["p95"], t300["accept_ms"]["p95"]
        berrors = sum(create["errors"].values()) + sum(t300["errors"].values())
        rows.append(
            {
                "figure": "the same, open loop: bench_create at "
                f"{create['offered_rate']:.0f}/s, bench_transitions at "
                f"{t300['offered_rate']:.0f}/s (separately)",
                "spec": "200 / 100 ms",
                "goal": "< 20 ms, 0 errors",
                "measured": f"create {_ms(bc95)} / update {_ms(bt95)} ms; {berrors} errors; "
                f"achieved {create['achieved_rate']:.0f} / {t300['achieved_rate']:.0f}/s",
                "vs_spec": both(at_most(bc95, 200), at_most(bt95, 100)),
                "vs_goal": both(
                    below(max(bc95 or 0, bt95 or 0), 20),
                    "met" if not berrors else f"missed: {berrors} errors",
                ),
                "short": "accept p95 at 10x (open-loop benches)",
                "ratio": _ratio(max(bc95 or 0, bt95 or 0), 20),
            }
        )

    burst = _bench(summary, "burst")
    if burst:
        rows.append(burst_goal_row(burst))

    accept = _bench(summary, "accept")
    if accept:
        rows.append(
            floor_goal_row(accept, "accept path (bench_accept): POST /api/bookings", "accept")
        )
    reads = _bench(summary, "reads")
    if reads:
        rows.append(floor_goal_row(reads, "cached route search (bench_reads)", "request"))
        uncached = reads["uncached"]["latency_ms"]["p95"]
        rows.append(
            {
                "figure": f"uncached route search over HTTP, {reads['flights']} flights, "
                "dates outside the warm window (bench_reads): p95",
                "spec": "500 ms",
                "goal": "< 50 ms",
                "measured": f"{_ms(uncached)} ms",
                "vs_spec": below(uncached, 500),
                "vs_goal": below(uncached, 50),
                "short": "uncached route search p95 over HTTP",
                "ratio": _ratio(uncached, 50),
            }
        )

    # 2. create throughput against the no-op floor
    if create:
        rows.append(
            {
                "figure": "end-to-end create throughput / no-op Celery task throughput, same run",
                "spec": "-",
                "measured": f"{create['create_throughput_per_s']:.0f}/s / "
                f"{create['noop_throughput_per_s']:.0f}/s = {create['ratio_to_floor']:.2f}",
                "vs_spec": "-",
                "short": "create throughput / no-op floor",
                **_reaching(create["ratio_to_floor"], 0.6),
            }
        )
    else:
        rows.append(_not_run("end-to-end create throughput / no-op Celery task throughput", "-"))

    # 3. end-to-end p95 at the spec's peak
    peak = _scenario(summary, "mixed_x1")
    e95c, e95d = _stat(peak, E2E_CREATE, "p95"), _stat(peak, E2E_DEPART, "p95")
    if peak.get("stats"):
        worst = max((v for v in (e95c, e95d) if v is not None), default=None)
        rows.append(
            {
                "figure": "end-to-end p95 (accepted -> committed) at the spec's peak, "
                "Locust mixed x1",
                "spec": "-",
                "goal": "< 50 ms",
                "measured": f"create {_ms(e95c)} / update {_ms(e95d)} ms "
                f"(client-observed, polling: {_ms(_stat(peak, CLIENT_CREATE, 'p95'))} / "
                f"{_ms(_stat(peak, CLIENT_DEPART, 'p95'))} ms)",
                "vs_spec": "-",
                "vs_goal": below(worst, 50),
                "short": "E2E p95 at the spec's peak (Locust)",
                "ratio": _ratio(worst, 50),
            }
        )
    else:
        rows.append(_not_run("end-to-end p95 at the spec's peak", "-"))
    t30 = next((t for t in transitions if t["offered_rate"] <= 30), None)
    if t30:
        rows.append(
            {
                "figure": "the same for updates alone, open loop: bench_transitions at "
                f"{t30['offered_rate']:.0f}/s",
                "spec": "-",
                "goal": "< 50 ms",
                "measured": f"{_ms(t30['end_to_end_ms']['p95'])} ms",
                "vs_spec": "-",
                "vs_goal": below(t30["end_to_end_ms"]["p95"], 50),
                "short": "E2E p95, updates at 30/s (bench)",
                "ratio": _ratio(t30["end_to_end_ms"]["p95"], 50),
            }
        )

    # 4. bulk import against raw insert_many
    flights = _bench(summary, "flights")
    if flights:
        rows.append(
            {
                "figure": f"bulk import items/s / raw insert_many into the same server "
                f"({flights['count']:,} flights)",
                "spec": "50 items/s",
                "measured": f"{flights['import_per_s']:.0f} / {flights['raw_insert_per_s']:.0f}"
                f" docs/s = {flights['import_vs_raw']:.2f} (vs insert_many with the flights' "
                f"indexes: {flights['import_vs_raw_indexed']:.2f})",
                "vs_spec": at_least(flights["import_per_s"], 50, lambda x: f"{x:.0f} items/s"),
                "short": "flight import / raw insert_many",
                **_reaching(flights["import_vs_raw"], 0.7),
            }
        )
    else:
        rows.append(_not_run("bulk import items/s / raw insert_many", "50 items/s"))
    bulk = _bench(summary, "bulk")
    if bulk:
        bc = statistics.median(bulk["bulk_create_items_per_s"])
        bu = statistics.median(bulk["bulk_update_items_per_s"])
        rows.append(
            {
                "figure": f"bulk bookings ({bulk['bookings_per_batch']}) and status updates "
                f"({bulk['updates_per_batch']}), POST to job finished",
                "spec": "50 items/s",
                "goal": "-",
                "measured": f"{bc:.0f} / {bu:.0f} items/s",
                "vs_spec": both(
                    at_least(bc, 50, lambda x: f"{x:.0f} items/s"),
                    at_least(bu, 50, lambda x: f"{x:.0f} items/s"),
                ),
                "vs_goal": "-",
            }
        )

    # 5. route search latency
    if flights:
        u95, h95 = flights["uncached_ms"]["p95"], flights["cached_hit_ms"]["p95"]
        rows.append(
            {
                "figure": f"route search p95 over {flights['count']:,} flights, "
                f"uncached / cached ({flights['searches']} searches)",
                "spec": "500 / 50 ms",
                "goal": "< 50 / < 5 ms",
                "measured": f"{_ms(u95)} / {_ms(h95)} ms",
                "vs_spec": both(at_most(u95, 500), at_most(h95, 50)),
                "vs_goal": both(below(u95, 50), below(h95, 5)),
                "short": "route search p95 uncached / cached",
                "ratio": max(_ratio(u95, 50) or 0, _ratio(h95, 5) or 0) or None,
            }
        )
    else:
        rows.append(_not_run("route search p95, uncached / cached", "500 / 50 ms"))

    # 6. route cache hit rate under the Zipf load
    rate, hits, misses, names = route_hit_rate(summary)
    rows.append(
        {
            "figure": "route cache hit rate under the Zipf load with warming "
            f"(Locust: {', '.join(names) or 'no scenario'})",
            "spec": "85 %",
            "goal": "> 95 %",
            "measured": "-"
            if rate is None
            else f"{100 * rate:.1f} % ({hits} hits, {misses} misses)",
            "vs_spec": at_least(
                None if rate is None else 100 * rate, 85, lambda x: f"{x:.1f} points"
            ),
            "vs_goal": above_rate(rate, 0.95),
            "short": "route cache hit rate (as miss rate / 5 %)",
            "ratio": None if rate is None else _ratio(1 - rate, 0.05),
        }
    )

    # 7. lock acquisition
    if t30:
        lock = t30["lock_acquire_ms"]
        rows.append(
            {
                "figure": "lock acquisition p95, uncontended (bench_transitions at "
                f"{t30['offered_rate']:.0f}/s)",
                "spec": "50 ms",
                "goal": "< 5 ms",
                "measured": f"{_ms(lock['p95'])} ms (p50 {_ms(lock['p50'])}, "
                f"max {_ms(lock['max'])})",
                "vs_spec": at_most(lock["p95"], 50),
                "vs_goal": below(lock["p95"], 5),
                "short": "lock acquisition p95",
                "ratio": _ratio(lock["p95"], 5),
            }
        )
    else:
        rows.append(_not_run("lock acquisition p95, uncontended", "50 ms"))

    # 8. flight capacity: one hot flight against spread bookings
    reservations = _bench(summary, "reservations")
    if reservations:
        rows.append(reservations_goal_row(reservations))
    return rows


def offered_text(burst: dict[str, Any]) -> str:
    """The burst benchmark's load: "100 creates/s + 300 updates/s"."""
    return " + ".join(f"{rate:g} {kind}s/s" for kind, rate in burst["offered"].items())


def _burst_errors(burst: dict[str, Any]) -> int:
    return burst["unavailable"] + burst["other_errors"]


def burst_goal_row(burst: dict[str, Any]) -> dict[str, Any]:
    """perf.bench_burst against issue 22's goals at 10x the spec's peak: accept p95
    from the due time within the spec's targets (creates < 200 ms, updates
    < 100 ms), 0 errors of any kind (503s included), every job finished within
    5 s of the load's end, at most 4.5 ms of CPU per job end to end."""
    p95 = burst["accept_from_due_ms"]["p95"]
    kinds = burst["kinds"]
    jobs = burst["jobs"]
    failed = jobs["states"].get("failed", 0)
    errors = _burst_errors(burst)
    drain = burst["drain_s"]
    drained = "not drained" if drain is None else f"drained {drain:.0f} s"
    cpu = burst.get("stack_cpu_ms_per_job")  # the stack's processes (not "other")
    spec = [
        at_most(kinds[kind]["accept_from_due_ms"]["p95"], limit)
        for kind, limit in (("create", 200), ("update", 100))
        if kinds.get(kind, {}).get("accept_from_due_ms")
    ]
    finished = not (jobs["unfinished"] or failed)
    return {
        "figure": f"burst: {offered_text(burst)} open loop for {burst['seconds']:g} s, then "
        "until drained (bench_burst): accept p95 from the due time, errors, jobs finished, "
        "CPU per job",
        "spec": "200 / 100 ms",
        "goal": "200 / 100 ms, 0 errors, drained within 5 s, <= 4.5 CPU ms per job",
        "measured": f"{_ms(p95)} ms (send -> answer {_ms(burst['accept_ms']['p95'])} ms); "
        f"{burst['unavailable']} 503s, {burst['other_errors']} other errors; "
        f"{jobs['accepted'] - jobs['unfinished'] - failed} of {jobs['accepted']} jobs "
        f"succeeded, {drained} after the load; {_ms(cpu)} CPU ms per job",
        "vs_spec": both(*spec) if spec else "not measured",
        "vs_goal": both(
            *(spec or ["not measured"]),
            "met" if not errors else f"missed: {errors} errors",
            "met"
            if finished and drain is not None and drain <= 5
            else f"missed: {jobs['unfinished']} unfinished, {failed} failed, {drained}",
            "not measured" if cpu is None else at_most(cpu, 4.5),
        ),
        "short": f"burst accept p95 at {offered_text(burst)}",
        "ratio": _ratio(p95, 200),
    }


def reservations_goal_row(f: dict[str, Any]) -> dict[str, Any]:
    """perf.bench_reservations against issue 13's goals: one hot flight at >= 0.5x
    the reservations/s of bookings spread over many, the flight lock's p95 < 5 ms
    when spread, every job succeeded and every flight's booked weight and volume
    adding up."""
    hot, spread, ratio = f["hot"], f["spread"], f["ratio"]
    hot95 = hot["flight_lock"]["acquire_ms"]["p95"]
    spread95 = spread["flight_lock"]["acquire_ms"]["p95"]
    failed = hot["jobs"]["failed"] + spread["jobs"]["failed"]
    correct = hot["check"]["ok"] and spread["check"]["ok"]
    return {
        "figure": f"reservations/s through the create worker, {hot['bookings']:,} bookings on "
        f"one hot flight / spread over {spread['flights']:,} flights (bench_reservations); "
        "flight lock acquisition p95",
        "spec": "-",
        "goal": ">= 0.5; p95 < 5 ms spread; booked kg and m3 add up",
        "measured": f"{hot['reservations_per_s']:.0f} / {spread['reservations_per_s']:.0f}/s = "
        + ("-" if ratio is None else f"{ratio:.2f}")
        + f"; flight lock p95 {_ms(hot95)} ms hot, {_ms(spread95)} ms spread; "
        f"{failed} jobs failed; booked kg and m3 {'add up' if correct else 'DO NOT ADD UP'}",
        "vs_spec": "-",
        "vs_goal": both(
            at_least(ratio, 0.5, lambda x: f"{x:.2f}"),
            below(spread95, 5),
            "met" if not failed else f"missed: {failed} jobs failed",
            "met" if correct else "missed: booked kg or m3 do not add up",
        ),
        "short": "reservations hot / spread; flight lock p95",
        "ratio": max(_ratio(0.5, ratio) or 0, _ratio(spread95, 5) or 0) or None,
    }


def floor_goal_row(f: dict, figure: str, unit: str) -> dict[str, Any]:
    """A benchmark against a floor app of its own (perf.harness.against_floor):
    requests/s over the floor's, goal >= the benchmark's goal_ratio."""
    ingress, floor = f["ingress"], f["floor"]
    return {
        "figure": f"{figure} / its floor app, requests/s (same gunicorn, alternating rounds)",
        "spec": "-",
        "goal": f">= {f['goal_ratio']:g}",
        "measured": f"{ingress['rps']:.0f} / {floor['rps']:.0f} = {f['rps_ratio']:.2f} "
        f"(CPU {ingress['cpu_ms_per_request']:.2f} vs {floor['cpu_ms_per_request']:.2f} "
        f"ms per {unit})",
        "vs_spec": "-",
        "vs_goal": "met" if f["goal_met"] else f"missed ({f['rps_ratio']:.2f})",
        "short": figure,
        "ratio": f["goal_ratio"] / f["rps_ratio"] if f["rps_ratio"] else None,
    }


def _reaching(value: float | None, goal: float) -> dict[str, Any]:
    """A goal row's goal, verdict and plotted ratio for a ratio that must reach
    `goal` (a throughput against its floor)."""
    return {
        "goal": f">= {goal}",
        "vs_goal": at_least(value, goal, lambda x: f"{x:.2f}"),
        "ratio": _ratio(goal, value),
    }


def _ratio(value: float | None, limit: float | None) -> float | None:
    """value / limit: below 1 meets an upper limit (a floor is passed as limit / value)."""
    if value is None or not limit:
        return None
    return value / limit


def _not_run(figure: str, spec: str) -> dict[str, Any]:
    return {
        "short": figure,
        "ratio": None,
        "figure": figure,
        "spec": spec,
        "goal": "",
        "measured": "not run",
        "vs_spec": "not measured",
        "vs_goal": "not measured",
    }


# -- plots ------------------------------------------------------------------------------


def plot_scenario(history: dict[str, dict[str, list]], title: str, path: Path) -> bool:
    names = [n for n in PLOTTED if n in history and any(history[n]["p50"])]
    if not names:
        return False
    t0 = min(t for s in history.values() for t in s["t"] if t is not None)
    fig, axes = plt.subplots(
        len(names) + 1, 1, figsize=(9, 2.1 * (len(names) + 1)), sharex=True, squeeze=False
    )
    axes = axes[:, 0]
    for ax, name in zip(axes, names, strict=False):
        s = history[name]
        t = [x - t0 for x in s["t"]]
        for p, style in (("p50", "-"), ("p95", "--"), ("p99", ":")):
            ax.plot(t, [v if v else math.nan for v in s[p]], style, label=p)
        ax.set_ylabel("ms")
        ax.set_yscale("log")
        ax.set_title(name, fontsize=9, loc="left")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
    ax = axes[-1]
    for name in [*names, POLL]:
        if name in history:
            s = history[name]
            t = [x - t0 for x in s["t"]]
            ax.plot(t, [math.nan if v is None else v for v in s["per_s"]], label=name)
    ax.set_ylabel("per s")
    ax.set_xlabel("seconds since start")
    ax.set_title("throughput (completed per second)", fontsize=9, loc="left")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    if AGGREGATED in history:
        twin = ax.twinx()
        s = history[AGGREGATED]
        twin.plot([x - t0 for x in s["t"]], s["users"], color="grey", alpha=0.4, label="users")
        twin.set_ylabel("users", color="grey")
    fig.suptitle(f"{title}: latency percentiles (10 s window) and throughput", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


def plot_burst(figures: dict[str, Any], path: Path) -> bool:
    """perf.bench_burst over time: each queue's ready depth, accept latency per
    second, and requests and jobs finished per second; the schedule's end marked."""
    series = figures.get("series") or {}
    depths, seconds = series.get("depths") or [], series.get("per_second") or []
    if not depths and not seconds:
        return False
    fig, (ax_depth, ax_latency, ax_rate) = plt.subplots(3, 1, figsize=(9, 7.5), sharex=True)
    t = [s["t"] for s in depths]
    for queue in depths[0]["depths"] if depths else []:
        ax_depth.plot(t, [s["depths"][queue] for s in depths], label=queue)
    ax_depth.set_ylabel("ready messages")
    ax_depth.set_title("queue depth (sampled every 0.5 s)", fontsize=9, loc="left")
    ax_depth.legend(fontsize=7, loc="upper left")
    sent_t = [row["t"] + 0.5 for row in seconds]  # a second's figures at its middle
    for key, style in (("p50_ms", "-"), ("p95_ms", "--"), ("max_ms", ":")):
        values = [math.nan if row[key] is None else row[key] for row in seconds]
        ax_latency.plot(sent_t, values, style, label=f"{key.removesuffix('_ms')}, 202")
    if any(row.get("unavailable") for row in seconds):
        answered = [
            math.nan if row.get("answer_p95_ms") is None else row["answer_p95_ms"]
            for row in seconds
        ]
        ax_latency.plot(sent_t, answered, "-.", label="p95, 202 and 503")
    lag = [row["max_lag_ms"] or math.nan for row in seconds]
    ax_latency.plot(sent_t, lag, color="grey", alpha=0.6, label="client's max lag")
    if figures.get("sustainable"):  # graceful overload: every answer within 50 ms
        ax_latency.axhline(50, color="tab:red", linewidth=0.8, label="goal p95 50 ms")
    else:  # 10x: the spec's targets
        ax_latency.axhline(200, color="tab:red", linewidth=0.8, label="creates p95 200 ms")
        ax_latency.axhline(100, color="tab:orange", linewidth=0.8, label="updates p95 100 ms")
    ax_latency.set_yscale("log")
    ax_latency.set_ylabel("ms")
    ax_latency.set_title("answer latency, per second of sending", fontsize=9, loc="left")
    ax_latency.legend(fontsize=7, loc="lower right")  # the drain, right, has no requests
    ax_rate.plot(sent_t, [row["accepted"] for row in seconds], label="accepted (202)")
    errors = [row["unavailable"] + row["other_errors"] for row in seconds]
    if any(errors):
        ax_rate.plot(sent_t, [row["unavailable"] for row in seconds], label="503")
        shed = [row.get("shed", 0) for row in seconds]
        if any(shed):
            ax_rate.plot(sent_t, shed, ":", label="of which shed (overloaded)")
        ax_rate.plot(sent_t, [row["other_errors"] for row in seconds], label="other errors")
    finished = series.get("finished_per_second") or []
    ax_rate.plot([i + 0.5 for i in range(len(finished))], finished, label="jobs finished")
    ax_rate.set_ylabel("per s")
    ax_rate.set_xlabel("seconds since the first request")
    ax_rate.set_title("requests and jobs per second", fontsize=9, loc="left")
    ax_rate.legend(fontsize=7, loc="upper right")
    for ax in (ax_depth, ax_latency, ax_rate):
        ax.axvline(figures["seconds"], color="black", linewidth=0.8, linestyle="--")
        ax.grid(True, alpha=0.3)
    ax_depth.set_ylim(bottom=0)
    ax_rate.set_ylim(bottom=0)
    ax_depth.text(
        figures["seconds"],
        0.98,
        " end of the open loop",
        fontsize=7,
        va="top",
        transform=ax_depth.get_xaxis_transform(),
    )
    load = f"{offered_text(figures)} for {figures['seconds']:g} s"
    if figures.get("sustainable"):
        load += f" (twice a sustainable {figures['sustainable']:g} jobs/s)"
    fig.suptitle(f"burst: {load}, then the drain", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


PLOT_FLOOR = 0.01


def plot_goals(rows: list[dict[str, Any]], path: Path) -> None:
    """How far each figure is from our goal: measured / goal, where below 1 meets it
    (floors inverted: goal / measured; the hit rate as miss rate / allowed 5 %)."""
    judged = [r for r in rows if r["vs_goal"] != "-"]
    fig, ax = plt.subplots(figsize=(9, 0.4 * len(judged) + 1.2))
    for i, row in enumerate(judged):
        ratio = row.get("ratio")
        if ratio is None:
            ax.text(1, i, " not measured", va="center", fontsize=7, color="grey")
            continue
        met = row["vs_goal"] == "met"
        # A log axis has no 0 (a miss rate of 0 %): drawn at the axis' floor.
        shown = max(ratio, PLOT_FLOOR)
        ax.barh(i, shown, color="tab:green" if met else "tab:red")
        label = f" {_amount(ratio)}x" if ratio >= PLOT_FLOOR else f" {ratio:g}x (0 on a log axis)"
        ax.text(shown, i, label, va="center", fontsize=7)
    ax.axvline(1, color="black", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_yticks(range(len(judged)), [r["short"] for r in judged], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("measured / goal (log scale; < 1 meets the goal)")
    ax.set_title("our goals: green met, red missed", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


# -- report.md ----------------------------------------------------------------------------


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c).replace("|", "/") for c in row) + " |" for row in rows]
    return lines


def scenario_rows(summary: dict) -> list[list[str]]:
    rows = []
    for name, s in (summary.get("locust") or {}).get("scenarios", {}).items():
        stats = s.get("stats") or {}
        for key, users_of in (
            (CREATE, "CreateBooking"),
            (E2E_CREATE, None),
            (CLIENT_CREATE, None),
            (DEPART, "DepartBooking"),
            (E2E_DEPART, None),
            (CLIENT_DEPART, None),
            (ROUTES, "RouteSearch"),
        ):
            st = stats.get(key)
            if not st:
                continue
            offered = (s.get("offered_per_s") or {}).get(users_of) if users_of else None
            rows.append(
                [
                    name,
                    key,
                    str((s.get("users") or {}).get(users_of, "")) if users_of else "",
                    _rate(offered),
                    _rate(st["per_s"]),
                    _ms(st["p50"]),
                    _ms(st["p95"]),
                    _ms(st["p99"]),
                    _ms(st["max"]),
                    f"{st['failures']} / {st['count']}",
                ]
            )
    return rows


def scenario_side_rows(summary: dict) -> list[list[str]]:
    rows = []
    for name, s in (summary.get("locust") or {}).get("scenarios", {}).items():
        stats = s.get("stats") or {}
        rc = s.get("route_cache") or {}
        cache = (
            f"{100 * rc['hit_rate']:.1f} % ({rc['hits']} / {rc['misses']})"
            if rc.get("hit_rate") is not None
            else "-"
        )
        warm = s.get("warm")
        warm_text = (
            f"{warm.get('routes')} routes, {warm.get('keys')} keys, {warm.get('seconds')} s"
            if warm
            else "-"
        )
        locks = s.get("locks") or {}
        acquire = locks.get("acquire_ms") or {}
        lock_text = (
            f"{_ms(acquire.get('p50'))} / {_ms(acquire.get('p95'))} / {_ms(acquire.get('max'))}"
            f" ({locks.get('acquired', 0)}, {locks.get('failed', 0)} failed)"
            if acquire.get("p50") is not None
            else "-"
        )
        jobs = sum((stats.get(k) or {}).get("count", 0) for k in (CREATE, DEPART))
        polls = (stats.get(POLL) or {}).get("count", 0)
        rows.append(
            [
                name,
                cache,
                warm_text,
                lock_text,
                f"{polls / jobs:.1f}" if jobs else "-",
                f"{http_failures(s)} / {job_failures(s)}",
                _drain_text(s.get("drain")),
                str(s.get("locust_exit", "-")),
            ]
        )
    return rows


def _drain_text(drain: dict | None) -> str:
    if not drain:
        return "-"
    return f"{drain['seconds']} ({drain['purged']})"


# -- the burst (perf/bench_burst.py) ------------------------------------------------------


def _p(entry: dict[str, Any]) -> str:
    return f"{_ms(entry.get('p50'))} / {_ms(entry.get('p95'))} / {_ms(entry.get('max'))}"


def burst_kind_rows(burst: dict[str, Any]) -> list[list[str]]:
    rows = []
    for kind, k in burst["kinds"].items():
        if not k.get("requests"):
            continue
        others = k["errors_by_status"].copy()
        others.pop("503", None)
        rows.append(
            [
                kind,
                f"{k['offered_rate']:g}",
                f"{k['sent_rate']:g}",
                f"{k['accepted_rate']:g} ({k['accepted']:,})",
                _p(k["accept_ms"]),
                _ms(k["accept_from_due_ms"]["p95"]),
                f"{k['unavailable']} ({k['unavailable_with_retry_after']})",
                f"{k['other_errors']}" + (f" {others}" if others else ""),
            ]
        )
    return rows


def burst_side_rows(burst: dict[str, Any]) -> list[list[str]]:
    jobs, client, cpu = burst["jobs"], burst["client"], burst["cpu"]
    lag = client["lag_ms"]
    peaks = ", ".join(
        f"{q} {p['depth']:,} at {p['t']:g} s" for q, p in burst["peak_depths"].items() if p["depth"]
    )
    per_group = ", ".join(
        f"{group} {c['cpu_ms_per_item']:.2f}"
        for group, c in cpu["cpu"].items()
        if c.get("cpu_ms_per_item")
    )
    drain = burst["drain_s"]
    return [
        ["peak queue depth (ready messages)", peaks or "never above 0"],
        [
            "drain: schedule end -> last job finished",
            f"{drain:.1f} s"
            if drain is not None
            else f"not drained within {burst['drain_timeout_s']:g} s",
        ],
        [
            "jobs finished per s, during the load / the drain",
            f"{burst['finished_per_s_during_load']} / "
            f"{burst['finished_per_s_during_drain'] or '-'}",
        ],
        [
            "jobs (states read over HTTP at the end)",
            f"{jobs['accepted']:,} accepted: {jobs['states']}, {jobs['unfinished']} unfinished",
        ],
        [
            "CPU ms per accepted job, end to end",
            f"{cpu.get('cpu_ms_per_item_total', '-')} ({per_group}); "
            f"{cpu['cores_busy']} cores busy of {cpu['cpus']}",
        ],
        [
            "client: lag behind the schedule p50 / p95 / max ms",
            f"{_p(lag)}; at most {client['peak_in_flight']} of {burst['senders']} "
            f"connections awaiting an answer; {client['cores']} cores",
        ],
    ]


def burst_lines(summary: dict, out: Path) -> list[str]:
    """The "Burst" section: nothing for a run without the burst."""
    bench = (summary.get("benchmarks") or {}).get("burst")
    if bench is None:
        return []
    lines = ["## Burst (perf.bench_burst)", ""]
    if bench.get("error"):
        return [*lines, f"**Failed:** `{bench['error']}`", ""]
    burst = bench["figures"]
    lines += [
        f"Issue 12's burst: {offered_text(burst)} on a fixed schedule (open loop) for "
        f"{burst['seconds']:g} s, then measured on until every accepted job had finished "
        f"({bench.get('seconds')} s in all). Under a burst the backlog should show as queue "
        "depth, not as accept latency: goals accept p95 < 50 ms, 0 errors (a 503 with "
        "Retry-After is backpressure, counted apart, but at 10x the bound should not be "
        "reached), every job finished. Accept latency is send -> answer, and from the "
        "due time (the client's lag included: a lag with every connection awaiting an "
        "answer is the ingress answering slower than the schedule sends); the goal is "
        "judged on the latter. CPU is every process group's from the first request to "
        "the last job finished (RabbitMQ and Redis are the machine's own; other is "
        "whatever else ran).",
        "",
    ]
    lines += _table(
        [
            "request",
            "offered/s",
            "sent/s",
            "accepted/s (count)",
            "accept p50 / p95 / max ms",
            "p95 from due time",
            "503 (with Retry-After)",
            "other errors",
        ],
        burst_kind_rows(burst),
    )
    lines += [""]
    lines += _table(["figure", "value"], burst_side_rows(burst))
    lines += [""]
    if plot_burst(burst, generated(out) / "burst.png"):
        lines += ["![burst](raw/burst.png)", ""]
    lines += ["```", bench.get("text", ""), "```", ""]
    return lines


# -- where the time goes (perf/profiling.py) -------------------------------------------

# What each profiled phase is, and the goal (goal_rows' "short") it explains.
PHASES = {
    "create_drain": ("queued create jobs worked off", "create throughput / no-op floor"),
    "noop_drain": ("queued no-op tasks worked off: the floor", "create throughput / no-op floor"),
    "transitions_": (
        "depart requests at the highest rate, until their jobs finished",
        "accept p95 at 10x (open-loop benches)",
    ),
    "route_search_uncached": (
        "uncached route searches (search_routes runs in the benchmark's own process: client)",
        "route search p95 uncached / cached",
    ),
}
TOP_IN_REPORT = 6


def phase_profiles(summary: dict) -> list[tuple[str, dict[str, Any]]]:
    """(benchmark, profile) of every profiled phase, in the benchmarks' order."""
    found = []
    for bench_name, bench in (summary.get("benchmarks") or {}).items():
        figures = bench.get("figures")
        for entry in figures if isinstance(figures, list) else [figures]:
            profiles = (entry or {}).get("profile")
            if isinstance(profiles, dict):  # (an older bench_flights kept cProfile text here)
                found += [(bench_name, p) for p in profiles.values() if isinstance(p, dict)]
    return found


def _phase(name: str) -> tuple[str, str | None]:
    for prefix, (what, goal) in PHASES.items():
        if name.startswith(prefix):
            return what, goal
    return name, None


def short_function(key: str) -> str:
    """'secantus/storage.py:Storage.insert' -> 'storage.py:Storage.insert' (a package's
    __init__.py keeps its package: 'bson/__init__.py:decode')."""
    path, _, function = key.rpartition(":")
    if not path:
        return key
    parts = path.split("/")
    kept = parts[-2:] if parts[-1] == "__init__.py" else parts[-1:]
    return f"{'/'.join(kept)}:{function}"


def _ranked(entries: list[dict[str, Any]]) -> str:
    """In backticks: a name such as 'f.<locals>.g' is no HTML tag there."""
    shown = entries[:TOP_IN_REPORT]
    return "; ".join(f"`{short_function(e['function'])}` {e['pct']:.0f} %" for e in shown) or "-"


def _cpu_ms(entry: dict[str, Any]) -> str:
    ms = entry.get("cpu_ms_per_item")
    return "-" if ms is None else f"{ms:.2f}"


def cpu_rows(profile: dict[str, Any]) -> list[list[str]]:
    rows = [
        [group, f"{c['cpu_s']:.2f}", _cpu_ms(c), f"{100 * c['share']:.0f} %"]
        for group, c in (profile.get("cpu") or {}).items()
    ]
    total = profile.get("cpu_ms_per_item_total")
    rows.append(
        [
            "**all**",
            f"{profile.get('cpu_total_s', 0):.2f}",
            "-" if total is None else f"{total:.2f}",
            f"{profile.get('cores_busy')} cores busy of {profile.get('cpus')}",
        ]
    )
    return rows


def stack_rows(profile: dict[str, Any]) -> list[list[str]]:
    rows = []
    for group, st in (profile.get("stacks") or {}).items():
        working = st["samples"] - st["idle_samples"] - st.get("profiler_samples", 0)
        rows.append(
            [
                f"{group} ({st['processes']} process{'es' if st['processes'] > 1 else ''})",
                f"{working} (~{working / profile.get('rate_hz', 100):.1f} s)",
                _ranked(st["self"]),
                _ranked(st.get("ours") or []),
            ]
        )
    return rows


def profile_lines(profile: dict[str, Any], bench: str, verdicts: dict[str, str]) -> list[str]:
    what, goal = _phase(profile.get("name", ""))
    items = profile.get("items")
    lines = [
        f"### {profile.get('name')} (perf.bench_{bench}): {what}",
        "",
        (f"{items:,} items in " if items else "")
        + f"{profile.get('wall_s', 0):.1f} s"
        + (f'; for the goal "{goal}": {verdicts.get(goal, "not judged")}.' if goal else "."),
        "",
    ]
    lines += _table(["process group", "CPU s", "CPU ms per item", "share"], cpu_rows(profile))
    lines += [""]
    if profile.get("stacks"):
        lines += _table(
            [
                "py-spy samples of",
                "samples not waiting (~ CPU s)",
                "top self time (% of those samples)",
                "our code, inclusive",
            ],
            stack_rows(profile),
        )
        lines += [""]
    lines += [f"- py-spy: {error}" for error in profile.get("errors") or []]
    return [*lines, ""] if profile.get("errors") else lines


def where_the_time_goes(summary: dict, rows: list[dict[str, Any]]) -> list[str]:
    """The section: nothing at all for a run without profiles."""
    profiles = phase_profiles(summary)
    if not profiles:
        return []
    verdicts = {r["short"]: r["vs_goal"] for r in rows if r.get("short")}
    lines = [
        "## Where the time goes",
        "",
        "Profiled phases of the benchmarks (perf/profiling.py). CPU: user + system seconds "
        "of each process group over the phase (psutil; a group's child processes included: "
        "the worker's prefork children, gunicorn's workers). RabbitMQ and Redis are the "
        "machine's own; client is the benchmark's process; py-spy is what the profile "
        "itself cost; other is the rest of the machine's busy time (anything else "
        "running). Stacks: py-spy --gil samples of the Python processes, i.e. of the "
        "thread running Python; waits are left out. Time in C code that releases the GIL "
        "(socket I/O, the kernel) is in the CPU figures but in no stack. Our code: "
        "core/, workers/, ingress/. The drains and the uncached searches are profiled on "
        "a second pass of the same work, so the figures in the tables above are free of "
        "py-spy's cost; the transitions are profiled while measured (their highest rate "
        "is past saturation either way). py-spy's raw files and each profile's JSON are "
        "in raw/.",
        "",
    ]
    for bench, profile in profiles:
        lines += profile_lines(profile, bench, verdicts)
    return lines


def _minutes(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds / 60:.1f} min"


def render(summary: dict, out: Path) -> str:
    """report.md's text; its plots are written to generated(out)."""
    generated(out).mkdir(parents=True, exist_ok=True)
    rows = goal_rows(summary)
    plot_goals(rows, generated(out) / "goals.png")
    met = sum(1 for r in rows if r["vs_goal"] == "met")
    judged = sum(1 for r in rows if r["vs_goal"] not in ("-", "not measured"))
    locust = summary.get("locust") or {}
    durations = summary.get("durations_s") or {}
    machine = summary.get("machine") or {}
    lines = [
        f"# RadiantGo performance run {summary.get('started_at', '')}",
        "",
        f"`make perf` ({summary.get('mode')} run), started {summary.get('started_at')}, "
        f"finished {summary.get('finished_at', '(unfinished)')}: "
        f"{_minutes(durations.get('total'))} in all (load scenarios "
        f"{_minutes(durations.get('locust_phase'))}, benchmarks "
        f"{_minutes(durations.get('benchmarks'))}). Machine: {machine.get('cpus')} CPUs, "
        f"load average at start {machine.get('load_average_at_start')}, at the end "
        f"{machine.get('load_average_at_end')}; Locust, the ingress, the worker, "
        "SecantusDB, RabbitMQ and Redis all share them (as does anything else running: "
        "RabbitMQ and Redis are the machine's own).",
        "",
        "## Figures against the spec's targets and our goals",
        "",
        f"{met} of {judged} goals met.",
        "",
    ]
    lines += _table(
        ["figure", "spec target", "our goal", "measured", "vs spec", "vs our goal"],
        [
            [r["figure"], r["spec"], r["goal"], r["measured"], r["vs_spec"], r["vs_goal"]]
            for r in rows
        ],
    )
    lines += ["", "![goals](raw/goals.png)", ""]
    lines += where_the_time_goes(summary, rows)

    lines += ["## Load scenarios (Locust)", ""]
    if locust.get("error"):
        lines += [f"**The Locust phase failed:** `{locust['error']}`", ""]
    for name, why in (locust.get("failed_scenarios") or {}).items():
        lines += [f"**Locust failed in `{name}`** (its figures are missing): `{why}`", ""]
    if locust.get("scenarios"):
        stack = locust.get("stack") or {}
        fl = locust.get("flights") or {}
        zipf = locust.get("zipf") or {}
        lines += [
            f"Stack as `make run` starts it: {stack.get('ingress')}, {stack.get('worker')}, "
            f"{stack.get('database')} (no beat, no Flower); every RATE_LIMIT_* raised to "
            f"1,000,000. {fl.get('count', 0):,} flights from {fl.get('start_date')} "
            f"(stored in {fl.get('seconds')} s); "
            f"{(locust.get('bookings_seeded') or {}).get('count', 0):,} BOOKED bookings "
            "inserted for the depart users (none departed twice). "
            f"Each scenario ran {locust.get('run_time_s')} s, then up to "
            f"{locust.get('stop_timeout_s')} s for the users to finish their task.",
            "",
            f"Users are closed-loop: each runs at most one task per {locust.get('period_s')} s "
            "(constant_throughput), so **offered** = users / period; a task that outlasts the "
            "period (a slow 202, a job still running: users poll their job to its end) "
            "delays the user's next one, and **achieved** (Locust's requests/s) falls below. "
            "`E2E` is accepted -> committed from the job's own timestamps; `E2E-client` is "
            "the POST sent -> the poll that saw the job finished (jobs polled "
            + (
                "after each answer's Retry-After, as the API asks"
                if locust.get("poll_interval_s") in (None, "Retry-After")
                else f"every {locust.get('poll_interval_s')} s"
            )
            + "). A job whose user was stopped at the end of the run before it finished "
            "is in no E2E row, so under a backlog the E2E rows count the faster jobs only; "
            "a job unfinished after the poll timeout is an E2E failure. Latencies in ms; "
            "Locust rounds them (to 1 ms below 100 ms, to 2 significant digits above).",
            "",
            f"Route searches draw (route, day) from {zipf.get('pairs')} pairs (today and "
            f"tomorrow UTC) with weight rank^-{zipf.get('exponent')}, the configured "
            f"POPULAR_ROUTES ranked first; the top 12 pairs carry "
            f"{100 * zipf.get('mass_of_top_12', 0):.0f} % of the searches, the top 52 "
            f"{100 * zipf.get('mass_of_top_52', 0):.0f} %, the top 200 "
            f"{100 * zipf.get('mass_of_top_200', 0):.0f} %. Before each scenario that "
            "searches, POST /api/admin/cache/warm warms today and tomorrow of "
            "POPULAR_ROUTES, the most searched routes and those searched lately, up to "
            "WARM_MAX_ROUTES (what beat does every CACHE_WARM_INTERVAL; the warm "
            "column gives its keys and time); a pair left out is a miss on its first "
            "search, then cached for CACHE_TTL_ROUTES.",
            "",
        ]
        lines += _table(
            [
                "scenario",
                "request",
                "users",
                "offered/s",
                "achieved/s",
                "p50",
                "p95",
                "p99",
                "max",
                "failures / count",
            ],
            scenario_rows(summary),
        )
        lines += [""]
        lines += _table(
            [
                "scenario",
                "route cache hit rate (hits / misses)",
                "warmed before",
                "lock acquisition p50 / p95 / max ms (acquired)",
                "polls per job",
                "HTTP failures / jobs failed or unfinished",
                "after: drained s (purged)",
                "Locust exit",
            ],
            scenario_side_rows(summary),
        )
        lines += [""]
        raw = generated(out)
        for name in locust["scenarios"]:
            history = read_history(raw / f"{name}_stats_history.csv")
            if plot_scenario(history, name, raw / f"{name}.png"):
                lines += [f"![{name}](raw/{name}.png)", ""]
        lines += [
            "Locust's own report per scenario: "
            + ", ".join(f"[{n}](raw/{n}.html)" for n in locust["scenarios"]),
            "",
        ]

    lines += burst_lines(summary, out)
    lines += ["## Benchmarks", ""]
    titles = {
        "create": "Booking creation (perf.bench_create)",
        "transitions": "Status transitions and locks (perf.bench_transitions)",
        "flights": "Flight import and route search (perf.bench_flights)",
        "bulk": "Bulk operations (perf.bench_bulk)",
        "auth": "API key lookup at the HTTP boundary (perf.bench_auth)",
        "reservations": "Flight capacity reservations (perf.bench_reservations)",
    }
    for name, title in titles.items():
        bench = (summary.get("benchmarks") or {}).get(name)
        if bench is None:
            continue
        lines += [
            f"### {title}",
            "",
            f"Parameters {bench.get('params')}, {bench.get('seconds')} s.",
            "",
        ]
        if bench.get("error"):
            lines += [f"**Failed:** `{bench['error']}`", ""]
        else:
            lines += ["```", bench.get("text", ""), "```", ""]
    return "\n".join(lines) + "\n"


def build(out: Path) -> Path:
    out = Path(out)
    summary = json.loads((out / "summary.json").read_text())
    path = out / "report.md"
    path.write_text(render(summary, out))
    return path


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        sys.exit("usage: python -m perf.report perf/results/<timestamp>")
    print(build(Path(args[0])))


if __name__ == "__main__":
    main()
