"""perf/bench_burst.py's figures from recorded answers, and the report's burst
section and plot (no services, no timing)."""

from __future__ import annotations

import pytest

from perf import bench_burst, burst_report, report, scheduled_load
from perf.goals import goal_rows
from perf.scheduled_load import ACCEPTED, CREATE, UPDATE, Answer


def answer(
    kind=CREATE, due=0.0, sent=None, ms=10.0, status=ACCEPTED, n=0, retry_after=False, problem=None
):
    sent = due if sent is None else sent
    job = f"/api/jobs/j{kind[0]}{n}" if status == ACCEPTED else None
    return Answer(kind, due, sent, ms, status, job, retry_after, problem)


def test_schedule_spaces_each_kind_at_its_rate_and_orders_by_due_time():
    plan = scheduled_load.schedule({CREATE: 2.0, UPDATE: 4.0}, 1.0)
    assert [due for due, _, _ in plan] == sorted(due for due, _, _ in plan)
    assert [(due, i) for due, kind, i in plan if kind == CREATE] == [(0.0, 0), (0.5, 1)]
    assert [due for due, kind, _ in plan if kind == UPDATE] == [0.0, 0.25, 0.5, 0.75]
    assert scheduled_load.schedule({CREATE: 0.0}, 5.0) == []


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
        "answer_p95_ms": None,
        "unavailable": 0,
        "shed": 0,
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


def figures(unavailable=0, unfinished=False, sustainable=None, shed_ms=5.0, cpu_ms=4.0):
    answers = [answer(CREATE, due=i / 4, ms=8.0, n=i) for i in range(8)]
    answers += [answer(UPDATE, due=i / 8, ms=12.0, n=i) for i in range(16)]
    answers += [
        answer(UPDATE, due=1.9, ms=shed_ms, status=503, retry_after=True, problem="overloaded")
    ] * unavailable
    states = {scheduled_load.job_id(a.job): "succeeded" for a in answers if a.job}
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
        "cpu_ms_per_item_total": cpu_ms + 20.0,
        "cpu": {
            "ingress": {"cpu_s": 0.1, "share": 0.2, "cpu_ms_per_item": cpu_ms},
            "other": {"cpu_s": 0.4, "share": 0.8, "cpu_ms_per_item": 20.0},  # not the stack's
        },
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
            "sustainable": sustainable,
            "shedding": "on",
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
    assert set(burst_report.goals(f).values()) == {"met"}
    missed = burst_report.goals(figures(unavailable=2, unfinished=True, cpu_ms=9.0))
    assert missed["0 errors"] == "missed: 2 503s, 0 other errors"
    assert (
        missed["every job finished within 5 s of the load's end"]
        == "missed: 1 unfinished, 0 failed of 24"
    )
    assert missed["CPU per job <= 4.5 ms (end to end)"] == "missed: 9.0 ms"
    text = burst_report.report(figures(unavailable=2))
    assert "503 2 (2 shed as overloaded, 2 with Retry-After)" in text
    assert "goal 0 errors: missed" in text


def test_the_10x_goals_are_the_spec_targets_by_kind_from_the_due_time():
    f = figures()
    late = [answer(UPDATE, due=0.0, sent=0.15, ms=10.0, n=100 + i) for i in range(30)]
    f = bench_burst.burst_figures(
        **{**_inputs(), "answers": _inputs()["answers"] + late},
    )
    verdicts = burst_report.goals(f)
    assert verdicts["updates accept p95 < 100 ms (from the due time)"] == "missed: 160.0 ms"
    assert verdicts["creates accept p95 < 200 ms (from the due time)"] == "met"


def _inputs():
    answers = [answer(CREATE, due=i / 4, ms=8.0, n=i) for i in range(8)]
    answers += [answer(UPDATE, due=i / 8, ms=12.0, n=i) for i in range(16)]
    return {
        "rates": {CREATE: 4.0, UPDATE: 8.0},
        "seconds": 2.0,
        "answers": answers,
        "states": {},
        "finished_at": {},
        "samples": [],
        "cpu": {"cpus": 2, "cores_busy": 1.0, "cpu": {}},
        "client_cpu_s": 0.01,
        "load_end": 2.0,
        "extra": {"drain_timeout_s": 60.0, "senders": 4, "sampler_errors": {}},
    }


def test_overload_goals_judge_every_answer_goodput_and_retry_after():
    f = figures(unavailable=10, sustainable=10.0)
    # 24 jobs finished at 2.5 s, after the 2 s load: none during it.
    assert f["goodput_per_s"] == 0.0 and f["shed"] == 10
    verdicts = burst_report.goals(f)
    assert verdicts["answers p95 <= 50 ms (202 and 503, from the due time)"] == "met"
    assert verdicts["goodput >= 90% of 10 jobs/s"] == "missed: 0 jobs/s (0%)"
    assert verdicts["nothing accepted lost"] == "met"
    assert verdicts["Retry-After on every 503"] == "met"
    assert verdicts["every answer a 202 or a 503"] == "met"
    slow_sheds = burst_report.goals(figures(unavailable=40, sustainable=10.0, shed_ms=80.0))
    assert slow_sheds["answers p95 <= 50 ms (202 and 503, from the due time)"] == (
        "missed: 80.0 ms"
    )
    assert "2x a sustainable 10 jobs/s" in burst_report.report(f)


def test_answers_from_the_due_time_count_202s_and_503s_not_other_errors():
    answers = [
        answer(due=0.0, sent=0.1, ms=10.0),
        answer(due=0.0, ms=30.0, status=503),
        answer(due=0.0, ms=9000.0, status="ConnectionResetError"),
    ]
    assert bench_burst.answer_from_due_ms(answers)["max"] == 110.0
    assert bench_burst.answer_from_due_ms(answers)["p50"] == 110.0  # nearest rank of two


def test_goodput_counts_jobs_finished_during_the_load():
    assert bench_burst.goodput([0.5, 1.0, 1.9, 2.0, 2.1, 9.0], seconds=2.0) == 2.0
    assert bench_burst.goodput([], seconds=0.0) is None


def test_overload_rates_offer_twice_the_sustainable_rate_as_one_create_to_three_updates():
    assert bench_burst.overload_rates(160.0) == {CREATE: 80.0, UPDATE: 240.0}


def test_problem_type_is_the_last_segment_of_a_problem_documents_type():
    body = b'{"type": "https://radiantgo.dev/problems/overloaded", "status": 503}'
    assert scheduled_load.problem_type(body) == "overloaded"
    assert scheduled_load.problem_type(b"<html>") is None
    assert scheduled_load.problem_type(b"[]") is None


@pytest.mark.slow(reason="draws the burst plot with matplotlib")
def test_report_has_a_burst_section_with_its_plot(tmp_path):
    f = figures(unavailable=1)
    summary = {
        "mode": "quick",
        "benchmarks": {
            "burst": {"params": {}, "figures": f, "text": burst_report.report(f), "seconds": 9}
        },
    }
    text = report.render(summary, tmp_path)
    assert "## Burst (perf.bench_burst)" in text and "![burst](raw/burst.png)" in text
    assert (tmp_path / "raw" / "burst.png").stat().st_size > 0
    row = next(r for r in goal_rows(summary) if r["figure"].startswith("burst"))
    assert row["vs_goal"] == "missed: 1 errors"


@pytest.mark.slow(reason="renders a report")
def test_a_failed_burst_says_so(tmp_path):
    summary = {"benchmarks": {"burst": {"params": {}, "error": "RuntimeError: boom"}}}
    assert "**Failed:** `RuntimeError: boom`" in report.render(summary, tmp_path)
