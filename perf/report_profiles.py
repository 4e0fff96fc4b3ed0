"""The report's "Where the time goes": the profiled phases of the benchmarks
(perf/profiling.py), each with the goal it explains."""

from __future__ import annotations

from typing import Any

from perf.markdown import table

# What each profiled phase is, and the goal (a goal's name) it explains.
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
    lines += table(["process group", "CPU s", "CPU ms per item", "share"], cpu_rows(profile))
    lines += [""]
    if profile.get("stacks"):
        lines += table(
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
    verdicts = {r["name"]: r["vs_goal"] for r in rows}
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
