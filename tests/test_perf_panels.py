"""perf/panels.py: the dashboard's panels from a make perf run's files (a
small run made up here; no services, no timing)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

from perf import panels
from perf.goals import offered_text

HISTORY_COLUMNS = ["Timestamp", "User Count", "Type", "Name", "Requests/s", "Failures/s"]
HISTORY_COLUMNS += ["50%", "95%", "99%"]


def write_history(path: Path, rows: list[tuple]) -> None:
    """rows: (t, type, name, per_s, failures_per_s, p50, p95)."""
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(HISTORY_COLUMNS)
        for t, kind, name, per_s, failed, p50, p95 in rows:
            writer.writerow([t, 10, kind, name, per_s, failed, p50, p95, p95])


def make_run(root: Path) -> Path:
    run = root / "20300101T000000Z"
    (run / "raw").mkdir(parents=True)
    write_history(
        run / "raw" / "create_x1_stats_history.csv",
        [
            (1000, "", "Aggregated", 0, 0, "N/A", "N/A"),
            (1001, "POST", "/api/bookings", 10, 0, 5, 0),  # Locust's 0: no answer in the window
            (1002, "POST", "/api/bookings", 20, 1, 6, 9),
            (1002, "E2E", "create", 8, 0, 40, 90),
        ],
    )
    write_history(
        run / "raw" / "routes_x1_stats_history.csv",
        [(1100, "GET", "/api/routes", 50, 0, 3, 1200), (1101, "GET", "/api/routes", 0, 0, 0, 0)],
    )
    summary = {
        "locust": {
            "scenarios": {
                "create_x1": {
                    "wall_s": 2.0,
                    "route_cache": {"hits": 0, "misses": 0},
                    "locks": {"acquired": 10, "failed": 2, "acquire_ms": {"p95": 1.5, "max": 9.0}},
                },
                "routes_x1": {
                    "wall_s": 4.0,
                    "route_cache": {"hits": 30, "misses": 10},
                    "locks": {"acquired": 0, "failed": 0, "acquire_ms": {"p95": None}},
                },
                "no_history_x1": {"wall_s": 1.0},
            }
        },
        "benchmarks": {
            "transitions": {"figures": [{"offered_rate": 30.0, "lock_acquire_ms": {"p95": 0.9}}]},
            "burst": {
                "figures": {
                    "seconds": 2.0,
                    "offered": {"create": 10.0, "update": 30.0},
                    "series": {
                        "depths": [
                            {"t": 0.0, "depths": {"bookings": 0, "status": 0}},
                            {"t": 0.5, "depths": {"bookings": 4, "status": 9}},
                        ],
                        "finished_per_second": [3, 5, 2],
                    },
                }
            },
        },
    }
    (run / "summary.json").write_text(json.dumps(summary))
    return run


def test_every_dashboard_panel_is_drawn_or_said_to_be_missing_from_a_run():
    titles = panels.dashboard_titles()
    assert set(titles) == set(panels.RENDERERS) | set(panels.NOT_IN_A_RUN)
    assert not set(panels.RENDERERS) & set(panels.NOT_IN_A_RUN)
    assert len(titles) == len(set(titles))


def test_the_scenarios_share_one_time_axis_with_a_gap_between_them(tmp_path):
    run = panels.load_run(make_run(tmp_path))
    assert [s.name for s in run.scenarios] == ["create_x1", "routes_x1"]  # no history, no scenario
    assert run.t0 == 1000
    assert panels.spans(run) == [("create_x1", 0, 2), ("routes_x1", 100, 101)]
    ts, vs = panels.joined(run, "POST /api/bookings", lambda s: s["per_s"])
    assert ts == [1, 2] and vs == [10, 20]
    ts, vs = panels.joined(run, "GET /api/routes", lambda s: panels.latency(s, "p95"))
    assert ts == [100, 101] and vs[0] == 1200 and math.isnan(vs[1])
    both = panels.joined(run, "Aggregated", lambda s: s["per_s"])
    assert both[0] == [0]


def test_series_from_locust_windows():
    series = {
        "per_s": [0.0, 20.0, 10.0, None],
        "failures_per_s": [0.0, 1.0, None, None],
        "p95": [0.0, 9.0, 12.0, None],
    }
    assert panels.failure_ratio(series) == [None, 0.05, 0.0, None]
    assert panels.succeeded_per_s(series) == [0.0, 19.0, 10.0, None]
    assert panels.latency(series, "p95") == [None, 9.0, 12.0, None]
    history = {"POST /api/bookings": {}, "E2E create": {}, "Aggregated": {}, "GET /x": {}}
    assert panels.http_endpoints(history) == ["GET /x", "POST /api/bookings"]
    assert panels.slug("P95 latency by endpoint") == "p95-latency-by-endpoint"


def test_cache_and_lock_figures_per_scenario_and_benchmark(tmp_path):
    run = panels.load_run(make_run(tmp_path))
    assert panels.route_cache(run) == [("routes_x1", 30, 10, 4.0)]
    assert panels.lock_times(run) == [
        ("create_x1 (all)", 1.5, 9.0),
        ("transitions 30/s (booking)", 0.9, None),
    ]
    assert panels.lock_rates(run) == [("create_x1", 5.0, 1.0)]
    assert offered_text(run.bench("burst")) == "10 creates/s + 30 updates/s"


@pytest.mark.slow(reason="draws every dashboard panel with matplotlib")
def test_render_writes_a_png_per_panel_the_run_has_figures_for(tmp_path):
    run = make_run(tmp_path)
    results = dict(panels.render(run))
    assert list(results) == panels.dashboard_titles()
    written = {t: p for t, p in results.items() if isinstance(p, Path)}
    assert set(results) - set(written) == set(panels.NOT_IN_A_RUN)
    for i, title in enumerate(panels.dashboard_titles(), start=1):
        if title in written:
            path = written[title]
            assert path == run / "panels" / f"{i:02d}-{panels.slug(title)}.png"
            assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_run_without_figures_for_a_panel_says_so(tmp_path):
    run = tmp_path / "empty"
    run.mkdir()
    (run / "summary.json").write_text("{}")
    results = dict(panels.render(run, tmp_path / "out"))
    assert all(isinstance(r, str) for r in results.values())
    assert results["Queue depth"] == "nothing for it in this run"
    assert list((tmp_path / "out").iterdir()) == []
