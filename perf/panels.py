"""The Grafana dashboard's panels as PNGs, drawn from a `make perf` run, for
whoever has no Grafana at hand.

    python -m perf.panels [perf/results/<timestamp>]   # default: the latest run
    make panels RUN=perf/results/<timestamp>

The panels are the dashboard's (deploy/grafana/dashboards/radiantgo.json): the
same titles in the same order, the same alert thresholds drawn. A run has no
Prometheus, so each panel is drawn from what the run recorded: the Locust
phase's raw/<scenario>_stats_history.csv (per endpoint: requests/s, failures/s and
latency percentiles over a 10 s window; the scenarios ran one after the other
and share one time axis here), summary.json's per-scenario route cache and lock
figures and the lock figures of the benchmarks, and the burst benchmark's queue
depths and jobs finished per second. A panel the run has nothing for (locks
held, memory) is listed, not drawn. Writes <run>/panels/NN-<title>.png.
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from core import scaling
from perf.goals import offered_text
from perf.locust_stats import E2E_CREATE, E2E_DEPART, generated, read_history

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "radiantgo.json"
RESULTS = ROOT / "perf" / "results"
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
JOBS = {"create": E2E_CREATE, "depart": E2E_DEPART}
Series = dict[str, list[float | None]]

# -- the run's data ------------------------------------------------------------------------


@dataclass
class Scenario:
    name: str
    history: dict[str, Series]  # read_history: per "<type> <name>"
    figures: dict[str, Any]  # its entry in summary.json


@dataclass
class Run:
    path: Path
    summary: dict[str, Any]
    scenarios: list[Scenario]  # the Locust scenarios that left a history, in run order

    @property
    def t0(self) -> float:
        """When the first scenario's history starts: the Locust time axis' zero."""
        return min(t for s in self.scenarios for series in s.history.values() for t in series["t"])

    def bench(self, name: str) -> Any:
        return ((self.summary.get("benchmarks") or {}).get(name) or {}).get("figures")


def load_run(path: Path) -> Run:
    path = Path(path)
    summary = json.loads((path / "summary.json").read_text())
    scenarios = []
    for name, figures in ((summary.get("locust") or {}).get("scenarios") or {}).items():
        history = read_history(generated(path) / f"{name}_stats_history.csv")
        if any(series["t"] for series in history.values()):
            scenarios.append(Scenario(name, history, figures))
    return Run(path, summary, scenarios)


def latest_run(results: Path = RESULTS) -> Path:
    runs = sorted(p.parent for p in Path(results).glob("*/summary.json"))
    if not runs:
        sys.exit(f"no make perf run in {results}")
    return runs[-1]


def dashboard_titles(path: Path = DASHBOARD) -> list[str]:
    """The dashboard's panel titles in order, rows left out (and rows' folded panels in)."""
    titles = []
    for panel in json.loads(Path(path).read_text())["panels"]:
        inner = panel.get("panels") or [] if panel["type"] == "row" else [panel]
        titles += [p["title"] for p in inner]
    return titles


def slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


# -- figures from the run (pure) ------------------------------------------------------------


def http_endpoints(history: dict[str, Series]) -> list[str]:
    """The history's HTTP requests ("POST /api/bookings"), not E2E events nor the total."""
    return sorted(key for key in history if key.split(" ", 1)[0] in METHODS)


def failure_ratio(series: Series) -> list[float | None]:
    """Failures per request, window by window (None where nothing was answered)."""
    return [
        (failed or 0.0) / answered if answered else None
        for answered, failed in zip(series["per_s"], series["failures_per_s"], strict=True)
    ]


def succeeded_per_s(series: Series) -> list[float | None]:
    return [
        None if total is None else max(0.0, total - (failed or 0.0))
        for total, failed in zip(series["per_s"], series["failures_per_s"], strict=True)
    ]


def latency(series: Series, p: str) -> list[float | None]:
    """A percentile's values, None for Locust's 0 of a window without a request."""
    return [v if v else None for v in series[p]]


def joined(
    run: Run, key: str, values: Callable[[Series], list[float | None]]
) -> tuple[list[float], list[float]]:
    """`key`'s values over every scenario on one axis (seconds since the first
    scenario started), a gap (NaN) between scenarios so no line bridges them."""
    ts: list[float] = []
    vs: list[float] = []
    for scenario in run.scenarios:
        series = scenario.history.get(key)
        if series is None:
            continue
        if ts:
            ts.append(ts[-1])
            vs.append(math.nan)
        for t, v in zip(series["t"], values(series), strict=True):
            ts.append(t - run.t0)
            vs.append(math.nan if v is None else v)
    return ts, vs


def spans(run: Run) -> list[tuple[str, float, float]]:
    """(scenario, start, end) in seconds since the first scenario started."""
    found = []
    for scenario in run.scenarios:
        times = [t for series in scenario.history.values() for t in series["t"]]
        found.append((scenario.name, min(times) - run.t0, max(times) - run.t0))
    return found


def summary_scenarios(run: Run) -> dict[str, dict[str, Any]]:
    """Every Locust scenario's entry in summary.json, those without a history too."""
    return (run.summary.get("locust") or {}).get("scenarios") or {}


def route_cache(run: Run) -> list[tuple[str, int, int, float]]:
    """(scenario, hits, misses, wall seconds) of each scenario that searched routes."""
    rows = []
    for name, s in summary_scenarios(run).items():
        rc = s.get("route_cache") or {}
        if rc.get("hits", 0) + rc.get("misses", 0):
            rows.append((name, rc["hits"], rc["misses"], s.get("wall_s") or 0.0))
    return rows


def lock_times(run: Run) -> list[tuple[str, float | None, float | None]]:
    """(source, p95, max) of lock acquisition in ms: each Locust scenario that
    took locks (every kind together), bench_transitions' booking locks per rate,
    bench_reservations' flight lock on one hot flight and spread."""
    rows = []
    for name, s in summary_scenarios(run).items():
        acquire = (s.get("locks") or {}).get("acquire_ms") or {}
        if acquire.get("p95") is not None:
            rows.append((f"{name} (all)", acquire["p95"], acquire.get("max")))
    for t in run.bench("transitions") or []:
        acquire = t.get("lock_acquire_ms") or {}
        if acquire.get("p95") is not None:
            label = f"transitions {t['offered_rate']:g}/s (booking)"
            rows.append((label, acquire["p95"], acquire.get("max")))
    reservations = run.bench("reservations") or {}
    for case in ("hot", "spread"):
        acquire = ((reservations.get(case) or {}).get("flight_lock") or {}).get("acquire_ms") or {}
        if acquire.get("p95") is not None:
            rows.append((f"reservations {case} (flight)", acquire["p95"], acquire.get("max")))
    return rows


def lock_rates(run: Run) -> list[tuple[str, float, float]]:
    """(scenario, acquired/s, failed/s) over each Locust scenario that took locks."""
    rows = []
    for name, s in summary_scenarios(run).items():
        locks, wall = s.get("locks") or {}, s.get("wall_s") or 0.0
        if wall and locks.get("acquired", 0) + locks.get("failed", 0):
            rows.append((name, locks["acquired"] / wall, locks.get("failed", 0) / wall))
    return rows


# -- drawing ---------------------------------------------------------------------------------


def _figure(title: str, source: str, rows: int = 1) -> tuple[Figure, list]:
    height = 0.6 + 3.2 * rows  # inches: the title's and the source's lines, then the plots
    fig, axes = plt.subplots(rows, 1, figsize=(9, height), squeeze=False)
    fig.text(0.01, 1 - 0.06 / height, title, fontsize=11, va="top")  # no suptitle: tight_layout
    fig.text(0.01, 1 - 0.32 / height, source, fontsize=7.5, color="dimgrey", va="top")
    return fig, list(axes[:, 0])


def _threshold(ax, value: float, label: str) -> None:
    ax.axhline(value, color="tab:red", linewidth=1, linestyle="--", label=label)


def _scenario_bands(ax, run: Run) -> None:
    for i, (name, start, end) in enumerate(spans(run)):
        if i % 2:
            ax.axvspan(start, end, color="grey", alpha=0.08, linewidth=0)
        ax.text(
            (start + end) / 2, 1.0, name, fontsize=6.5, ha="center", va="bottom",
            transform=ax.get_xaxis_transform(),
        )  # fmt: skip


def _finish(fig: Figure, ax, ylabel: str, *, log: bool = False) -> Figure:
    ax.set_ylabel(ylabel)
    if log:
        ax.set_yscale("log")
    ax.grid(True, alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.6 / fig.get_figheight()))
    return fig


Line = tuple[str, str, Callable[[Series], list[float | None]]]  # label, history key, values


def _drawn(run: Run, lines: list[Line]) -> list[tuple[str, list[float], list[float]]]:
    drawn = [(label, *joined(run, key, values)) for label, key, values in lines]
    return [d for d in drawn if any(not math.isnan(v) for v in d[2])]


def _plot_timeline(ax, run: Run, drawn, *, scale: float = 1.0, log: bool = False) -> None:
    for label, ts, vs in drawn:
        ax.plot(ts, [scale * v for v in vs], linewidth=1, label=label)
    _scenario_bands(ax, run)
    ax.set_xlabel("seconds since the first Locust scenario started")
    if not log:
        ax.set_ylim(bottom=0)


def _timeline(
    run: Run,
    title: str,
    source: str,
    lines: list[Line],
    ylabel: str,
    *,
    threshold: tuple[float, str] | None = None,
    log: bool = False,
    percent: bool = False,
) -> Figure | None:
    """One line per (label, history key, values) over the Locust phase's time axis."""
    drawn = _drawn(run, lines)
    if not drawn:
        return None
    scale = 100.0 if percent else 1.0
    fig, (ax,) = _figure(title, source)
    _plot_timeline(ax, run, drawn, scale=scale, log=log)
    if threshold:
        _threshold(ax, scale * threshold[0], threshold[1])
        if not log:  # the line in view, with room above it
            ax.set_ylim(0, max(ax.get_ylim()[1], 1.5 * scale * threshold[0]))
    return _finish(fig, ax, ylabel, log=log)


LOCUST = "Locust phase of the run, per endpoint, 10 s windows"


def _endpoint_lines(run: Run, values) -> list:
    endpoints = sorted({e for s in run.scenarios for e in http_endpoints(s.history)})
    return [(e, e, values) for e in endpoints]


def requests_per_second(run: Run, title: str) -> Figure | None:
    lines = _endpoint_lines(run, lambda s: s["per_s"])
    return _timeline(run, title, f"{LOCUST}: requests/s", lines, "requests/s")


def p95_latency(run: Run, title: str) -> Figure | None:
    lines = _endpoint_lines(run, lambda s: latency(s, "p95"))
    limit = (scaling.P95_LIMIT_MS, f"alert: p95 > {scaling.P95_LIMIT_MS} ms")
    source = f"{LOCUST}: p95 as the client saw it (server time plus the network)"
    return _timeline(run, title, source, lines, "ms", threshold=limit, log=True)


def p50_latency(run: Run, title: str) -> Figure | None:
    lines = _endpoint_lines(run, lambda s: latency(s, "p50"))
    return _timeline(run, title, f"{LOCUST}: median as the client saw it", lines, "ms", log=True)


def error_rate(run: Run, title: str) -> Figure | None:
    lines = _endpoint_lines(run, failure_ratio)
    limit = (scaling.ERROR_RATE_LIMIT, f"alert: > {scaling.ERROR_RATE_LIMIT:.0%}")
    source = f"{LOCUST}: Locust's failures (any error answer, a timeout) per request"
    return _timeline(run, title, source, lines, "% of requests", threshold=limit, percent=True)


def _bar_panel(
    title: str, source: str, rows: list, draw: Callable[[Any], Any], ylabel: str, *, log=False
) -> Figure | None:
    """Bars, a group per row labelled by the row's first field, drawn by draw(ax);
    None without rows."""
    if not rows:
        return None
    fig, (ax,) = _figure(title, source)
    ax.set_xticks(range(len(rows)), [row[0] for row in rows], fontsize=7, rotation=20, ha="right")
    draw(ax)
    return _finish(fig, ax, ylabel, log=log)


def _stacked_panel(
    title: str, source: str, rows: list, bars: tuple[list, list], labels: tuple[str, str], ylabel
) -> Figure | None:
    """_bar_panel with the good outcome (green) and the bad one (red) stacked on it."""
    good, bad = bars

    def draw(ax) -> None:
        ax.bar(range(len(rows)), good, color="tab:green", label=labels[0])
        ax.bar(range(len(rows)), bad, bottom=good, color="tab:red", label=labels[1])

    return _bar_panel(title, source, rows, draw, ylabel)


def cache_hit_rate(run: Run, title: str) -> Figure | None:
    rows = route_cache(run)
    rates = [100 * hits / (hits + misses) for _, hits, misses, _ in rows]

    def draw(ax) -> None:
        ax.bar(range(len(rows)), rates, color="tab:green", label="routes")
        for i, (rate, (_, hits, misses, _)) in enumerate(zip(rates, rows, strict=True)):
            label = f"{rate:.1f} %\n{hits:,} / {misses:,}"
            ax.text(i, rate, label, ha="center", va="bottom", fontsize=7)
        floor = scaling.CACHE_HIT_RATE_FLOOR
        _threshold(ax, 100 * floor, f"alert: < {floor:.0%}")
        ax.set_ylim(0, 115)

    source = "route cache (kind routes), over each Locust scenario that searched routes"
    return _bar_panel(title, source, rows, draw, "% of lookups that hit")


def cache_lookups(run: Run, title: str) -> Figure | None:
    rows = [r for r in route_cache(run) if r[3]]
    hits = [h / wall for _, h, _, wall in rows]
    misses = [m / wall for _, _, m, wall in rows]
    source = "route cache lookups per second, averaged over each Locust scenario that searched"
    labels = ("routes hit", "routes miss")
    return _stacked_panel(title, source, rows, (hits, misses), labels, "lookups/s")


def lock_time(run: Run, title: str) -> Figure | None:
    rows = lock_times(run)

    def draw(ax) -> None:
        x = range(len(rows))
        ax.bar([i - 0.2 for i in x], [p95 for _, p95, _ in rows], width=0.4, label="p95")
        ax.bar([i + 0.2 for i in x], [mx or math.nan for *_, mx in rows], width=0.4, label="max")
        limit = scaling.LOCK_ACQUIRE_LIMIT_MS
        _threshold(ax, limit, f"alert: p95 > {limit} ms")

    source = "lock acquisition per Locust scenario (every kind together) and per benchmark"
    return _bar_panel(title, source, rows, draw, "ms", log=True)


def lock_acquisitions(run: Run, title: str) -> Figure | None:
    rows = lock_rates(run)
    bars = ([a for _, a, _ in rows], [f for *_, f in rows])
    source = "lock acquisitions per second (every kind together), over each Locust scenario"
    return _stacked_panel(title, source, rows, bars, ("acquired", "failed"), "per s")


def _burst_axis(ax, burst: dict[str, Any]) -> None:
    """The burst benchmark's time axis, the end of its load marked."""
    ax.axvline(
        burst["seconds"], color="black", linewidth=0.8, linestyle=":", label="end of the load"
    )
    ax.set_xlabel("seconds since the burst's first request")
    ax.set_ylim(bottom=0)


def queue_depth(run: Run, title: str) -> Figure | None:
    burst = run.bench("burst") or {}
    depths = (burst.get("series") or {}).get("depths") or []
    if not depths:
        return None
    load = f"{offered_text(burst)} for {burst['seconds']:g} s"
    source = f"the burst benchmark ({load}), sampled every 0.5 s"
    fig, (ax,) = _figure(title, source)
    t = [s["t"] for s in depths]
    for queue in depths[0]["depths"]:
        ax.plot(t, [s["depths"][queue] for s in depths], linewidth=1, label=queue)
    _burst_axis(ax, burst)
    return _finish(fig, ax, "ready messages")


def jobs_per_second(run: Run, title: str) -> Figure | None:
    """Jobs finished per second: as the Locust users saw theirs finish, over
    the Locust phase; below, every job of the burst benchmark."""
    lines: list[Line] = []
    for kind, key in JOBS.items():
        lines.append((f"{kind} succeeded", key, succeeded_per_s))
        lines.append((f"{kind} failed", key, lambda s: [f or None for f in s["failures_per_s"]]))
    drawn = _drawn(run, lines)
    burst = run.bench("burst") or {}
    finished = (burst.get("series") or {}).get("finished_per_second") or []
    if not drawn and not finished:
        return None
    source = "Locust phase: jobs finished per second as their users saw them (E2E)" + (
        f"; below, the burst benchmark ({offered_text(burst)})" if finished else ""
    )
    fig, axes = _figure(title, source, rows=bool(drawn) + bool(finished))
    if drawn:
        _plot_timeline(axes[0], run, drawn)
        _finish(fig, axes[0], "jobs/s")
    if finished:
        ax = axes[-1]
        ax.plot([i + 0.5 for i in range(len(finished))], finished, linewidth=1, label="all jobs")
        _burst_axis(ax, burst)
        _finish(fig, ax, "jobs finished/s")
    return fig


def job_times(run: Run, title: str) -> Figure | None:
    lines = [(kind, key, lambda s: latency(s, "p95")) for kind, key in JOBS.items()]
    source = (
        "Locust phase: p95 of accepted -> committed (queue wait and run together), 10 s windows"
    )
    return _timeline(run, title, source, lines, "ms", log=True)


RENDERERS: dict[str, Callable[[Run, str], Figure | None]] = {
    "Requests per second by endpoint": requests_per_second,
    "P95 latency by endpoint": p95_latency,
    "P50 latency by endpoint": p50_latency,
    "Server error rate by endpoint": error_rate,
    "Cache hit rate by kind": cache_hit_rate,
    "Cache lookups per second by kind": cache_lookups,
    "Lock acquisition time by kind": lock_time,
    "Lock acquisitions per second by kind and outcome": lock_acquisitions,
    "Queue depth": queue_depth,
    "Jobs per second by type and outcome": jobs_per_second,
    "Job queue wait and run time p95 by type": job_times,
}
NOT_IN_A_RUN = {
    "Locks held by kind": "a run records no locks held over time",
    "Memory used by host": "a run records no memory figures",
    **dict.fromkeys(
        (
            "Webhook deliveries per second by endpoint and outcome",
            "Webhook failed attempts per second by endpoint",
            "Webhook backlog by endpoint",
            "Webhook lag p95",
        ),
        "a run records no webhook figures over time (make bench-webhooks prints its own)",
    ),
}


def render(run_path: Path, out: Path | None = None) -> Iterator[tuple[str, Path | str]]:
    """(title, PNG written) for every dashboard panel the run has figures for,
    (title, why not) for the others."""
    run = load_run(run_path)
    out = Path(out or Path(run_path) / "panels")
    out.mkdir(parents=True, exist_ok=True)
    for i, title in enumerate(dashboard_titles(), start=1):
        if title in NOT_IN_A_RUN:
            yield title, NOT_IN_A_RUN[title]
            continue
        fig = RENDERERS[title](run, title)
        if fig is None:
            yield title, "nothing for it in this run"
            continue
        path = out / f"{i:02d}-{slug(title)}.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        yield title, path


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) > 1:
        sys.exit("usage: python -m perf.panels [perf/results/<timestamp>]")
    run_path = Path(args[0]) if args else latest_run()
    for title, result in render(run_path):
        print(
            f"{title}: {result}" if isinstance(result, Path) else f"{title}: not drawn ({result})"
        )


if __name__ == "__main__":
    main()
