"""core.sizing: cores and processes a load needs, from the measured costs."""

import itertools

from core import sizing


def test_cores_add_up_the_operations_costs():
    busy = sizing.cores(sizing.Load(creates=100, transitions=0, searches=0))
    assert busy["mongodb"] == 100 * sizing.COST_MS["create"]["mongodb"] / 1000
    assert busy["ingress"] == 100 * sizing.COST_MS["create"]["ingress"] / 1000


def test_more_load_never_needs_fewer_processes_or_machines():
    plans = [sizing.plan(sizing.SPEC_PEAK.scaled(f)) for f in (1, 10, 100)]
    for smaller, larger in itertools.pairwise(plans):
        assert all(larger[k] >= smaller[k] for k in smaller)
    assert plans[0]["machines"] == 1  # the spec's peak fits one small machine


def test_workers_to_add_covers_the_growth():
    per_process = sizing.JOBS_PER_PROCESS_S["status"]
    assert sizing.workers_to_add("status", 0.5) == 1
    assert sizing.workers_to_add("status", per_process * 2.5) == 3


def test_the_operations_docs_table_is_the_models():
    from pathlib import Path

    operations = (Path(__file__).resolve().parents[2] / "docs" / "operations.md").read_text()
    assert sizing.table() in operations
