"""Locust's files from a `make perf` run and the figures summary.json keeps of them.

run_perf has Locust write <scenario>_stats.csv, _stats_history.csv and .html
into the run's raw/ (generated()), and keeps each scenario's stats in
summary.json under locust.scenarios.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

# Locust's "<type> <name>" keys (_key): the HTTP requests, then the events
# perf/locustfile.py fires for each job (E2E, E2E-client), then the total.
CREATE, DEPART = "POST /api/bookings", "POST /api/bookings/[ref_id]/depart"
ROUTES, POLL = "GET /api/routes", "GET /api/jobs/[job_id]"
E2E_CREATE, E2E_DEPART = "E2E create", "E2E depart"
CLIENT_CREATE, CLIENT_DEPART = "E2E-client create", "E2E-client depart"
AGGREGATED = "Aggregated"
PLOTTED = (CREATE, DEPART, ROUTES, E2E_CREATE, E2E_DEPART)
USER_CLASS = {CREATE: "CreateBooking", DEPART: "DepartBooking", ROUTES: "RouteSearch"}


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


# -- a scenario's figures in summary.json ----------------------------------------------


def scenario(summary: dict, name: str) -> dict[str, Any]:
    return (summary.get("locust") or {}).get("scenarios", {}).get(name) or {}


def stat(scenario: dict, key: str, field: str) -> float | None:
    return (scenario.get("stats") or {}).get(key, {}).get(field)


def offered(scenario: dict, key: str) -> float | None:
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
