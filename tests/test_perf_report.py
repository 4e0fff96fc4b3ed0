"""perf/report.py: what a `make perf` run leaves to commit (no services, no timing)."""

import json
import subprocess
from pathlib import Path

import pytest

from perf import report

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow(reason="renders a report")
def test_a_run_commits_its_summary_and_report_and_nothing_generated(tmp_path):
    run = tmp_path / "20300101T000000Z"
    run.mkdir()
    (run / "summary.json").write_text(json.dumps({"mode": "quick", "benchmarks": {}}))
    report.build(run)
    assert sorted(p.name for p in run.iterdir()) == ["raw", "report.md", "summary.json"]
    assert (run / "raw" / "goals.png").stat().st_size > 0
    assert "![goals](raw/goals.png)" in (run / "report.md").read_text()


def test_generated_files_are_git_ignored_and_the_summary_and_report_are_not():
    run = "perf/results/20300101T000000Z"
    paths = [f"{run}/raw/mixed_x1_stats.csv", f"{run}/raw/goals.png", f"{run}/panels/01-a.png"]
    paths += [f"{run}/summary.json", f"{run}/report.md"]
    ignored = subprocess.run(
        ["git", "check-ignore", "--no-index", *paths], cwd=ROOT, capture_output=True, text=True
    ).stdout.split()
    assert ignored == paths[:3]
