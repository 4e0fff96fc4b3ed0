"""perf/profiling.py's reading of py-spy's collapsed stacks and CPU figures, and
the report's "Where the time goes" (no services, no timing)."""

from __future__ import annotations

import json
import os

import pytest

from perf import profiling, report
from perf.profiling import aggregate, cpu_figures, frame_key, parse_raw
from perf.report_profiles import where_the_time_goes

# py-spy's raw format: 'outer;...;inner count', frames 'function (file:line)'.
RAW = "\n".join(
    [
        # 40 samples at work in storage, under the server loop
        "Thread._bootstrap (threading.py:1002);SecantusDBServer._handle_client "
        "(secantus/server.py:900);dispatch (secantus/commands.py:80);Storage.insert "
        "(secantus/storage.py:4700);Storage._insert_chunk (secantus/storage.py:4773) 30",
        "Thread._bootstrap (threading.py:1002);SecantusDBServer._handle_client "
        "(secantus/server.py:900);dispatch (secantus/commands.py:80);Storage.insert "
        "(secantus/storage.py:4700);Storage._insert_chunk (secantus/storage.py:4780) 10",
        # 10 samples finding, beside the inserts under dispatch
        "Thread._bootstrap (threading.py:1002);SecantusDBServer._handle_client "
        "(secantus/server.py:900);dispatch (secantus/commands.py:80);Storage.find_matching "
        "(secantus/storage.py:5000) 10",
        # 10 samples encoding, under our own code, with a recursive call
        "Thread._bootstrap (threading.py:1002);SecantusDBServer._handle_client "
        "(secantus/server.py:900);create_booking (core/bookings.py:10);encode "
        "(bson/__init__.py:1085);encode (bson/__init__.py:1085) 10",
        # 25 samples waiting: a socket read, and pymongo's monitor asleep
        "Thread._bootstrap (threading.py:1002);SecantusDBServer._handle_client "
        "(secantus/server.py:900);_recv_exactly (secantus/wire.py:109) 20",
        "Thread._bootstrap (threading.py:1002);PeriodicExecutor._run "
        "(pymongo/periodic_executor.py:293) 5",
        # 5 samples of the profiler itself (psutil at either end of a phase)
        "main (perf/bench_flights.py:300);profiled (perf/profiling.py:420);tree_cpu_s "
        "(perf/profiling.py:120);open_binary (psutil/_common.py:700) 5",
        "",
    ]
)


def pct(entries: list[dict], function: str) -> float | None:
    return next((e["pct"] for e in entries if e["function"] == function), None)


def test_frame_key_drops_the_line_and_keeps_the_qualified_name():
    assert frame_key("Storage.insert (secantus/storage.py:4700)") == (
        "secantus/storage.py:Storage.insert"
    )
    assert frame_key("<module> (<string>:6)") == "<string>:<module>"
    assert frame_key("no file here") == "no file here"


def test_parse_raw_merges_lines_of_one_function():
    stacks = parse_raw(RAW)
    assert sum(stacks.values()) == 90
    inserts = [s for s in stacks if s[-1] == "secantus/storage.py:Storage._insert_chunk"]
    assert len(inserts) == 1 and stacks[inserts[0]] == 40


def test_aggregate_leaves_out_waits_and_the_profiler_and_counts_percentages_of_the_rest():
    figures = aggregate(parse_raw(RAW))
    assert figures["samples"] == 90
    assert figures["idle_samples"] == 25
    assert figures["profiler_samples"] == 5
    # 60 samples at work: 40 inserting, 10 finding, 10 encoding
    assert figures["self"][0] == {
        "function": "secantus/storage.py:Storage._insert_chunk",
        "pct": 66.7,
    }
    assert pct(figures["self"], "secantus/storage.py:Storage.find_matching") == 16.7
    assert pct(figures["self"], "bson/__init__.py:encode") == 16.7
    assert len(figures["self"]) == 3
    functions = {e["function"] for e in figures["self"] + figures["inclusive"]}
    assert not any("_recv_exactly" in f or "PeriodicExecutor" in f for f in functions)
    assert not any("psutil" in f or "perf/profiling.py" in f for f in functions)


def test_inclusive_leaves_out_the_trunk_and_pass_throughs_and_counts_recursion_once():
    figures = aggregate(parse_raw(RAW))
    inclusive = figures["inclusive"]
    # in every sample at work: the thread bootstrap and the server loop say nothing
    assert pct(inclusive, "threading.py:Thread._bootstrap") is None
    assert pct(inclusive, "secantus/server.py:SecantusDBServer._handle_client") is None
    assert pct(inclusive, "secantus/commands.py:dispatch") == 83.3  # inserts and finds
    # every sample of Storage.insert is in _insert_chunk: the chain shows as the latter
    assert pct(inclusive, "secantus/storage.py:Storage.insert") is None
    assert pct(inclusive, "secantus/storage.py:Storage._insert_chunk") == 66.7
    assert pct(inclusive, "bson/__init__.py:encode") == 16.7  # not 33.3: once per sample
    # our code is ranked whole, pass-through or not
    assert figures["ours"] == [{"function": "core/bookings.py:create_booking", "pct": 16.7}]


def test_aggregate_of_nothing_but_waits():
    figures = aggregate(parse_raw("a (x.py:1);Condition.wait (threading.py:320) 7\n"))
    assert figures["idle_samples"] == 7
    assert figures["self"] == figures["inclusive"] == figures["ours"] == []


def test_cpu_figures_per_item_and_the_rest_of_the_machine():
    before = {"SecantusDB": 10.0, "worker": 5.0, "client": 1.0, "py-spy": 0.0, "machine": 100.0}
    after = {"SecantusDB": 12.0, "worker": 6.0, "client": 1.5, "py-spy": 0.5, "machine": 105.0}
    figures = cpu_figures(before, after, wall_s=2.5, items=500)
    cpu = figures["cpu"]
    assert cpu["SecantusDB"] == {"cpu_s": 2.0, "share": 0.4, "cpu_ms_per_item": 4.0}
    assert cpu["other"]["cpu_s"] == 1.0  # 5 s busy, 4 s of them accounted
    assert figures["cpu_total_s"] == 5.0
    assert figures["cpu_ms_per_item_total"] == 10.0
    assert figures["cores_busy"] == 2.0


def test_profiled_without_py_spy_keeps_the_cpu_figures(tmp_path, monkeypatch):
    monkeypatch.setattr(profiling, "PY_SPY", tmp_path / "no-py-spy")
    with profiling.profiled("phase", {"self": [os.getpid()]}, tmp_path, items=10) as result:
        sum(range(1000))
    assert result["errors"] == [f"py-spy not found at {tmp_path / 'no-py-spy'}"]
    assert result["stacks"] == {}
    assert set(result["cpu"]) == {"self", "client", "py-spy", "other"}
    assert "cpu_ms_per_item" in result["cpu"]["self"]
    assert json.loads((tmp_path / "profile_phase.json").read_text()) == result


def test_maybe_profiled_without_a_directory_does_nothing(tmp_path):
    with profiling.maybe_profiled(None, "phase", stack=None) as result:
        pass
    assert result == {}


# -- the report ---------------------------------------------------------------------------


def a_profile(name: str) -> dict:
    stacks = aggregate(parse_raw(RAW))
    return {
        "name": name,
        "rate_hz": 100,
        "wall_s": 4.4,
        "items": 500,
        "cpus": 2,
        "cpu_total_s": 8.0,
        "cores_busy": 1.82,
        "cpu_ms_per_item_total": 16.0,
        "cpu": {
            "SecantusDB": {"cpu_s": 2.28, "share": 0.285, "cpu_ms_per_item": 4.56},
            "worker": {"cpu_s": 1.79, "share": 0.224, "cpu_ms_per_item": 3.58},
        },
        "stacks": {"SecantusDB": {"processes": 1, **stacks}},
        "errors": ["ingress pid 7: Error: Permission denied"],
    }


def test_where_the_time_goes_renders_each_profiled_phase():
    summary = {
        "benchmarks": {
            "create": {"figures": {"profile": {"create_drain": a_profile("create_drain")}}},
            "transitions": {
                "figures": [
                    {"offered_rate": 30},
                    {"profile": {"transitions_300": a_profile("transitions_300")}},
                ]
            },
            "flights": {"figures": {"cprofile": "text", "profile": "old cProfile text"}},
        }
    }
    rows = [{"name": "create throughput / no-op floor", "vs_goal": "missed by 0.31"}]
    text = "\n".join(where_the_time_goes(summary, rows))
    assert text.startswith("## Where the time goes")
    assert "### create_drain (perf.bench_create)" in text
    assert "### transitions_300 (perf.bench_transitions)" in text
    assert 'for the goal "create throughput / no-op floor": missed by 0.31' in text
    assert "| SecantusDB | 2.28 | 4.56 | 28 % |" in text
    assert "| **all** | 8.00 | 16.00 | 1.82 cores busy of 2 |" in text
    assert "`storage.py:Storage._insert_chunk` 67 %" in text
    assert "`bson/__init__.py:encode` 17 %" in text
    assert "`bookings.py:create_booking` 17 %" in text  # our code, inclusive
    assert "| SecantusDB (1 process) | 60 (~0.6 s) |" in text
    assert "- py-spy: ingress pid 7: Error: Permission denied" in text


def test_where_the_time_goes_is_absent_without_profiles():
    summary = {"benchmarks": {"create": {"figures": {"ratio_to_floor": 0.5}}, "bulk": {}}}
    assert where_the_time_goes(summary, []) == []
    assert where_the_time_goes({}, []) == []


@pytest.mark.slow(reason="renders a report")
def test_render_puts_the_section_between_the_goals_and_the_benchmarks(tmp_path):
    profiled = {"figures": {"profile": {"create_drain": a_profile("create_drain")}}}
    text = report.render({"benchmarks": {"extra": profiled}}, tmp_path)
    goals = text.index("## Figures against the spec's targets and our goals")
    assert goals < text.index("## Where the time goes") < text.index("## Benchmarks")
    assert "Where the time goes" not in report.render({"benchmarks": {}}, tmp_path)
