"""perf/goals.py: the goal table judged by one function (no services, no timing)."""

from perf.goals import GOALS, VIEWS, Check, Goal, describe, evaluate, ratio, verdict

VIEW = {"p95": 30.0, "errors": 2, "rate": {"ratio": 0.5, "goal": 0.7}, "missing": None}


def test_a_check_is_met_missed_by_how_much_or_not_measured():
    assert verdict(Check("p95", "<", 50), VIEW) == "met"
    assert verdict(Check("p95", "<", 20), VIEW) == "missed by 10 ms (1.5x the limit)"
    assert verdict(Check("p95", "<=", 20), VIEW) == "missed by 10 ms (1.5x the target)"
    assert verdict(Check("rate.ratio", ">=", 0.8, ""), VIEW) == "missed by 0.30 (62% of it)"
    assert verdict(Check("errors", "==", 0, "errors"), VIEW) == "missed: 2 errors"
    assert verdict(Check("missing", "<", 1), VIEW) == "not measured"
    assert verdict(Check("no.such.path", "<", 1), VIEW) == "not measured"


def test_a_threshold_may_be_a_figure_the_benchmark_recorded():
    check = Check("rate.ratio", ">=", "rate.goal", "")
    assert verdict(check, VIEW) == "missed by 0.20 (71% of it)"
    assert describe((check,), VIEW) == ">= 0.7"


def test_the_plotted_ratio_is_below_one_when_met_floors_inverted():
    assert ratio(Check("p95", "<", 60), VIEW) == 0.5
    assert ratio(Check("rate.ratio", ">=", 0.25, ""), VIEW) == 0.5
    assert ratio(Check("errors", "==", 0, "errors"), VIEW) is None


def test_the_targets_are_written_from_the_checks():
    checks = (Check("p95", "<", 20), Check("errors", "==", 0, "HTTP errors"))
    assert describe(checks) == "< 20 ms, 0 HTTP errors"
    assert describe(()) == "-"


def test_evaluate_fills_the_row_and_a_goal_not_run_says_so_or_is_left_out():
    VIEWS["test"] = lambda summary: summary.get("test")
    goal = Goal(
        "p95",
        "test",
        "p95 at {rate.ratio:.1f}",
        "{p95!m} ms, {missing!m}",
        spec=(Check("p95", "<=", 100),),
        ours=(Check("p95", "<", 20), Check("errors", "==", 0, "errors")),
    )
    try:
        row = evaluate(goal, {"test": VIEW})
        assert row == {
            "name": "p95",
            "figure": "p95 at 0.5",
            "spec": "<= 100 ms",
            "goal": "< 20 ms, 0 errors",
            "measured": "30 ms, -",
            "vs_spec": "met",
            "vs_goal": "missed by 10 ms (1.5x the limit); missed: 2 errors",
            "ratio": 1.5,
        }
        assert evaluate(goal, {}) is None
        absent = Goal("p95", "test", "", "", ours=goal.ours, absent="p95 somewhere")
        assert evaluate(absent, {})["measured"] == "not run"
    finally:
        del VIEWS["test"]


def test_every_goal_reads_a_view_and_has_a_name_of_its_own():
    assert all(goal.view in VIEWS for goal in GOALS)
    assert len({goal.name for goal in GOALS}) == len(GOALS)
