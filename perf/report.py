"""report.md from a `make perf` results directory.

    python -m perf.report perf/results/<timestamp>     # (re)builds <dir>/report.md

Reads <dir>/summary.json (written by perf/run_perf.py) and Locust's
<scenario>_stats_history.csv in <dir>/raw/. Every figure is set against the
spec's target and our goal (perf/goals.py); a missed one says by how much. The
plots (perf/plots.py) go to <dir>/raw/ too: a run commits summary.json and
report.md only.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from perf.goals import goal_rows, offered_text
from perf.locust_stats import (
    CLIENT_CREATE,
    CLIENT_DEPART,
    CREATE,
    DEPART,
    E2E_CREATE,
    E2E_DEPART,
    POLL,
    ROUTES,
    generated,
    http_failures,
    job_failures,
    read_history,
)
from perf.markdown import ms, per_s, table
from perf.plots import plot_burst, plot_goals, plot_scenario
from perf.report_profiles import where_the_time_goes

# -- report.md ----------------------------------------------------------------------------


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
                    per_s(offered),
                    per_s(st["per_s"]),
                    ms(st["p50"]),
                    ms(st["p95"]),
                    ms(st["p99"]),
                    ms(st["max"]),
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
            f"{ms(acquire.get('p50'))} / {ms(acquire.get('p95'))} / {ms(acquire.get('max'))}"
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
    return f"{ms(entry.get('p50'))} / {ms(entry.get('p95'))} / {ms(entry.get('max'))}"


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
                ms(k["accept_from_due_ms"]["p95"]),
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
    lines += table(
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
    lines += table(["figure", "value"], burst_side_rows(burst))
    lines += [""]
    if plot_burst(burst, generated(out) / "burst.png"):
        lines += ["![burst](raw/burst.png)", ""]
    lines += ["```", bench.get("text", ""), "```", ""]
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
    lines += table(
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
        lines += table(
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
        lines += table(
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
