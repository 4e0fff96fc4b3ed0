"""perf/bench_burst.py's figures from recorded answers, and the report's burst
section and plot (no services, no timing)."""

from __future__ import annotations

import pytest

from perf import bench_burst, report
from perf.bench_burst import ACCEPTED, CREATE, UPDATE, Answer


def answer(kind=CREATE, due=0.0, sent=None, ms=10.0, status=ACCEPTED, n=0, retry_after=False):
    sent = due if sent is None else sent
    job = f"/api/jobs/j{kind[0]}{n}" if status == ACCEPTED else None
    return Answer(kind, due, sent, ms, status, job, retry_after)


def test_schedule_spaces_each_kind_at_its_rate_and_orders_by_due_time():
    plan = bench_burst.schedule({CREATE: 2.0, UPDATE: 4.0}, 1.0)
    assert [due for due, _, _ in plan] == sorted(due for due, _, _ in plan)
    assert [(due, i) for due, kind, i in plan if kind == CREATE] == [(0.0, 0), (0.5, 1)]
    assert [due for due, kind, _ in plan if kind == UPDATE] == [0.0, 0.25, 0.5, 0.75]
    assert bench_burst.schedule({CREATE: 0.0}, 5.0) == []


def test_per_second_buckets_by_send_time_and_counts_503s_apart():
    answers = [
        answer(due=0.1, ms=10.0, n=1),
        answer(due=0.2, ms=30.0, n=2),
        answer(due=0.3, ms=5.0, status=503, retry_after=True),
        answer(due=2.0, sent=2.25, ms=20.0, n=3),
        answer(due=2.5, ms=1.0, status="ConnectionResetError"),
    ]
    rows = bench_burst.per_second(answers)
    assert [r["t"] for r in rows] == [0, 1, 2]
    first, empty, last = rows
    assert (first["sent"], first["accepted"], first["unavailable"], first["other_errors"]) == (
        3,
        2,
        1,
        0,
    )
    # core.stats' nearest rank, as /metrics computes it: the p50 of two is the larger.
    assert first["p50_ms"] == 30.0 and first["max_ms"] == 30.0
    assert empty == {
        "t": 1,
        "sent": 0,
        "accepted": 0,
        "p50_ms": None,
        "p95_ms": None,
        "max_ms": None,
        "unavailable": 0,
        "other_errors": 0,
        "max_lag_ms": 0,
    }
    assert (last["unavailable"], last["other_errors"], last["max_lag_ms"]) == (0, 1, 250.0)


def test_kind_figures_rates_errors_and_latency_from_the_due_time():
    answers = [answer(due=i / 10, n=i) for i in range(9)]
    answers.append(answer(due=0.9, sent=1.4, ms=100.0, n=9))  # sent 500 ms late
    answers.append(answer(due=1.0, status=503, retry_after=True))
    answers.append(answer(due=1.1, status=503))
    answers.append(answer(due=1.2, status=500))
    k = bench_burst.kind_figures(answers, 10.0)
    assert k["requests"] == 13 and k["accepted"] == 10
    assert k["sent_rate"] == round(13 / 1.5, 1)
    assert (k["unavailable"], k["unavailable_with_retry_after"], k["other_errors"]) == (2, 1, 1)
    assert k["errors_by_status"] == {"503": 2, "500": 1}
    assert k["accept_ms"]["max"] == 100.0
    assert k["accept_from_due_ms"]["max"] == 600.0


def test_peak_in_flight_counts_overlapping_requests():
    answers = [
        answer(sent=0.0, ms=1000.0),
        answer(sent=0.5, ms=1000.0),
        answer(sent=1.0, ms=100.0),  # the first has just been answered
        answer(sent=3.0, ms=10.0),
    ]
    assert bench_burst.peak_in_flight(answers) == 2
    assert bench_burst.peak_in_flight([]) == 0


def test_drain_runs_from_the_schedule_end_to_the_last_job_finished():
    d = bench_burst.drain_figures([1.0, 5.0, 12.0, 30.0], seconds=10.0, unfinished=0)
    assert d["drain_s"] == 20.0 and d["last_finished_s"] == 30.0
    assert d["finished_per_s_during_load"] == 0.2
    assert d["finished_per_s_during_drain"] == 0.1
    kept_up = bench_burst.drain_figures([1.0, 9.5], seconds=10.0, unfinished=0)
    assert kept_up["drain_s"] == 0.0 and kept_up["finished_per_s_during_drain"] is None
    assert bench_burst.drain_figures([1.0], seconds=10.0, unfinished=3)["drain_s"] is None
    assert bench_burst.finished_per_second([0.2, 0.7, 2.1]) == [2, 0, 1]


def figures(unavailable=0, unfinished=False):
    answers = [answer(CREATE, due=i / 4, ms=8.0, n=i) for i in range(8)]
    answers += [answer(UPDATE, due=i / 8, ms=12.0, n=i) for i in range(16)]
    answers += [answer(UPDATE, due=1.9, status=503, retry_after=True)] * unavailable
    states = {bench_burst.job_id(a.job): "succeeded" for a in answers if a.job}
    if unfinished:
        states["jc0"] = "queued"
    finished_at = {j: 2.5 for j in states}
    samples = [
        {"t": t / 2, "depths": {"bookings": t, "status": 2 * t, "bulk": 0, "maintenance": 0}}
        for t in range(6)
    ]
    cpu = {
        "cpus": 2,
        "cores_busy": 1.5,
        "cpu_ms_per_item_total": 20.0,
        "cpu": {"ingress": {"cpu_s": 0.1, "share": 0.5, "cpu_ms_per_item": 4.2}},
    }
    return bench_burst.burst_figures(
        rates={CREATE: 4.0, UPDATE: 8.0},
        seconds=2.0,
        answers=answers,
        states=states,
        finished_at=finished_at,
        samples=samples,
        cpu=cpu,
        client_cpu_s=0.01,
        load_end=2.0,
        extra={
            "stack": {"ingress": "gunicorn", "worker": "celery", "queue_settings": {}},
            "senders": 4,
            "drain_timeout_s": 60.0,
            "sampler_errors": {},
            "checked_over_http_in_drain": 0,
            "verify_s": 0.1,
        },
    )


def test_goals_met_and_missed():
    f = figures()
    assert f["jobs"] == {
        "accepted": 24,
        "states": {"succeeded": 24},
        "unfinished": 0,
        "finish_times_known": 24,
    }
    assert f["drain_s"] == 0.5 and f["peak_depths"]["status"] == {"depth": 10, "t": 2.5}
    assert set(bench_burst.goals(f).values()) == {"met"}
    missed = bench_burst.goals(figures(unavailable=2, unfinished=True))
    assert missed["0 errors"] == "missed: 2 503s, 0 other errors"
    assert missed["every job finished"] == "missed: 1 unfinished, 0 failed of 24"
    text = bench_burst.report(figures(unavailable=2))
    assert "503 2 (2 with Retry-After)" in text and "goal 0 errors: missed" in text


@pytest.mark.slow(reason="draws the burst plot with matplotlib")
def test_report_has_a_burst_section_with_its_plot(tmp_path):
    f = figures(unavailable=1)
    summary = {
        "mode": "quick",
        "benchmarks": {
            "burst": {"params": {}, "figures": f, "text": bench_burst.report(f), "seconds": 9}
        },
    }
    text = report.render(summary, tmp_path)
    assert "## Burst (perf.bench_burst)" in text and "![burst](burst.png)" in text
    assert (tmp_path / "burst.png").stat().st_size > 0
    row = next(r for r in report.goal_rows(summary) if r["figure"].startswith("burst"))
    assert row["vs_goal"] == "missed: 1 errors"


@pytest.mark.slow(reason="renders a report")
def test_a_failed_burst_says_so(tmp_path):
    summary = {"benchmarks": {"burst": {"params": {}, "error": "RuntimeError: boom"}}}
    assert "**Failed:** `RuntimeError: boom`" in report.render(summary, tmp_path)
