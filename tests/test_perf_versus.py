"""perf/bench_versus.py's figures, ratios and verdicts from recorded phases, and
the synchronous service's body validation against RadiantGo's (no services,
no timing)."""

from __future__ import annotations

import pytest
from marshmallow import ValidationError
from pydantic import ValidationError as PydanticError

from core.schemas.bookings import BookingCreateSchema, TransitionSchema
from perf import bench_versus
from perf.bench_versus import PHASES, RADIANTGO, SYNC
from perf.harness import BODY, TRANSITION
from perf.versus.app import BookingIn, TransitionIn


def phase(cpu_ms=10.0, per_s=100.0, stored=100):
    """A phase's figures as phase_figures gives them, reduced to what the summary reads."""
    return {
        "cpu_ms_per_result": cpu_ms,
        "cpu_ms_per_result_less_background": cpu_ms and cpu_ms - 1.0,
        "cpu_ms_per_result_by_group": {"a": cpu_ms},
        "results_per_s": per_s,
        "stored": stored,
        "errors": {},
    }


def rounds(ours: dict[str, list], theirs: dict[str, list]) -> list[dict]:
    """Rounds alternating, RadiantGo first: each system's phases, round by round."""
    measured = []
    for n in range(len(ours[PHASES[0]])):
        for system, values in ((RADIANTGO, ours), (SYNC, theirs)):
            measured.append(
                {
                    "system": system,
                    "round": n + 1,
                    "phases": {p: phase(*values[p][n]) for p in PHASES},
                }
            )
    return measured


def test_phase_figures_count_the_systems_processes_per_stored_result():
    f = bench_versus.phase_figures(
        cpu_s={"ingress": 0.5, "RabbitMQ": 0.3, "uvicorn": 0.2, "client": 0.1, "other": 1.0},
        own=["ingress", "RabbitMQ"],
        stored=100,
        requests=110,
        errors={"503": 10},
        wall_s=2.0,
        answer_ms={"p50": 1.0},
        background_cores={"RabbitMQ": 0.05},
        accepted=110,
    )
    assert f["cpu_ms_per_result"] == 8.0
    assert f["cpu_ms_per_result_by_group"] == {"ingress": 5.0, "RabbitMQ": 3.0}
    # 0.05 cores over 2 s: 0.1 s off the 0.8 s.
    assert f["cpu_ms_per_result_less_background"] == 7.0
    assert f["results_per_s"] == 50.0 and f["cores"] == 0.4
    assert f["cores_not_counted"] == {"uvicorn": 0.1, "client": 0.05, "other": 0.5}
    assert f["accepted"] == 110 and f["errors"] == {"503": 10}


def test_phase_figures_without_a_stored_result_have_no_cost_per_result():
    f = bench_versus.phase_figures(
        cpu_s={"uvicorn": 0.2},
        own=["uvicorn"],
        stored=0,
        requests=5,
        errors={"409": 5},
        wall_s=1.0,
        answer_ms={},
    )
    assert f["cpu_ms_per_result"] is None and f["results_per_s"] is None
    assert f["cpu_ms_per_result_by_group"] == {"uvicorn": None}


def test_medians_ratios_and_goals_met():
    steady = [(4.0, 60.0), (5.0, 60.0), (6.0, 60.0)]
    ours = {p: steady for p in PHASES}
    ours["saturation depart"] = [(4.0, 500.0), (5.0, 400.0), (6.0, 450.0)]
    theirs = {p: [(10.0, 60.0), (12.0, 60.0), (11.0, 60.0)] for p in PHASES}
    theirs["saturation depart"] = [(10.0, 200.0), (12.0, 220.0), (11.0, 210.0)]
    s = bench_versus.summary(rounds(ours, theirs))
    assert s["medians"][RADIANTGO]["steady create"]["cpu_ms_per_result"] == 5.0
    assert s["medians"][RADIANTGO]["steady create"]["cpu_ms_per_result_rounds"] == [4.0, 5.0, 6.0]
    assert s["medians"][SYNC]["saturation depart"]["results_per_s"] == 210.0
    assert s["ratios"]["steady depart"]["cpu_ms_per_result"] == round(5 / 11, 3)
    assert s["ratios"]["steady depart"]["cpu_ms_per_result_less_background"] == 0.4
    assert s["ratios"]["saturation depart"]["results_per_s"] == round(450 / 210, 3)
    assert set(s["goals"].values()) == {"met"}
    assert len(s["goals"]) == 5


def test_goals_missed_by_the_ratio_and_not_measured_without_results():
    ours = {p: [(11.0, 200.0)] for p in PHASES}
    theirs = {p: [(10.0, 200.0)] for p in PHASES}
    theirs["saturation create"] = [(None, None)]  # nothing stored
    s = bench_versus.summary(rounds(ours, theirs))
    goals = s["goals"]
    assert goals["CPU per create at steady <= 0.5x the sync service's"] == "missed: 1.10x"
    assert goals["CPU per create at saturation <= 0.5x the sync service's"] == "not measured"
    assert goals["departs/s at saturation >= 2x the sync service's"] == "missed: 1.00x"
    # Exactly at the goals: met.
    at = bench_versus.goals(
        {"steady create": {"cpu_ms_per_result": 0.5}, "saturation depart": {"results_per_s": 2.0}}
    )
    assert at["CPU per create at steady <= 0.5x the sync service's"] == "met"
    assert at["departs/s at saturation >= 2x the sync service's"] == "met"


def test_saturation_plan_is_every_request_due_at_once():
    assert bench_versus.saturation_plan("depart", 3) == [
        (0.0, "depart", 0),
        (0.0, "depart", 1),
        (0.0, "depart", 2),
    ]


# The synchronous service takes what RadiantGo takes and refuses what it refuses.
CREATES = [
    BODY,
    {**BODY, "origin": "del", "customer_name": "Acme", "customer_email": "a@acme.com"},
    {**BODY, "flight_ids": ["RG0001-20261128", "RG0002-20261128"], "awb": "17612345675"},
    {**BODY, "dimensions": [{"count": 5, "length_cm": 318, "width_cm": 244, "height_cm": 300}]},
    {**BODY, "pieces": 1000, "weight_kg": 10_000},
    {**BODY, "weight_kg": 0.001},
]
BAD_CREATES = [
    {**BODY, "destination": "del"},
    {**BODY, "pieces": 0},
    {**BODY, "pieces": 1001},
    {**BODY, "pieces": 5.0},
    {**BODY, "pieces": True},
    {**BODY, "weight_kg": "125"},
    {**BODY, "weight_kg": 0.0009},
    {**BODY, "weight_kg": 10_000.5},
    {**BODY, "origin": "DE"},
    {**BODY, "customer_name": ""},
    {**BODY, "customer_name": "x" * 101},
    {**BODY, "customer_name": "a\x00b"},
    {**BODY, "flight_ids": []},
    {**BODY, "flight_ids": ["RG1-1", "RG0001-20261128"]},
    {**BODY, "flight_ids": ["RG0001-20261128"] * 3},
    {**BODY, "dimensions": [{"count": 4, "length_cm": 1, "width_cm": 1, "height_cm": 1}]},
    {**BODY, "dimensions": [{"count": 5, "length_cm": 319, "width_cm": 1, "height_cm": 1}]},
    {**BODY, "awb": "176-12345676"},  # check digit
    {**BODY, "unknown": 1},
]


@pytest.mark.parametrize("body", CREATES)
def test_the_sync_service_takes_the_creates_radiantgo_takes(body):
    expected = BookingCreateSchema().load(body)
    taken = BookingIn.model_validate(body)
    assert (taken.origin, taken.destination, taken.awb) == (
        expected["origin"],
        expected["destination"],
        expected.get("awb"),
    )


@pytest.mark.parametrize("body", BAD_CREATES)
def test_the_sync_service_refuses_the_creates_radiantgo_refuses(body):
    with pytest.raises(ValidationError):
        BookingCreateSchema().load(body)
    with pytest.raises(PydanticError):
        BookingIn.model_validate(body)


@pytest.mark.parametrize(
    ("body", "valid"),
    [
        (TRANSITION, True),
        ({"flight_number": "rg001"}, True),
        ({"location": ""}, False),
        ({"notes": "x" * 501}, False),
        ({"flight_number": "R-1"}, False),
        ({"reason": "why"}, False),
    ],
)
def test_the_sync_service_judges_a_depart_body_as_radiantgo(body, valid):
    refused = bool(TransitionSchema().validate(body))
    assert refused is not valid
    try:
        TransitionIn.model_validate(body)
    except PydanticError:
        assert not valid
    else:
        assert valid
