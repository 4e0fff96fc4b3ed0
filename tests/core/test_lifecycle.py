import itertools

import pytest

from core.lifecycle import (
    ACTIONS,
    MILESTONES,
    TRANSITIONS,
    InvalidTransition,
    MilestoneOutOfOrder,
    check_transition,
    event_code,
    next_status,
)

VALID = {
    ("BOOKED", "DEPARTED"),
    ("BOOKED", "CANCELLED"),
    ("DEPARTED", "ARRIVED"),
    ("DEPARTED", "CANCELLED"),
    ("ARRIVED", "DELIVERED"),
}
ALL_PAIRS = list(itertools.product(TRANSITIONS, ACTIONS.values()))


@pytest.mark.parametrize(("current", "target"), sorted(VALID))
def test_the_machine_allows_exactly_these(current, target):
    check_transition(current, target)


@pytest.mark.parametrize(("current", "target"), [p for p in ALL_PAIRS if p not in VALID])
def test_every_other_transition_is_refused_with_the_specs_words(current, target):
    with pytest.raises(InvalidTransition) as caught:
        check_transition(current, target)
    problem = caught.value.to_problem()
    assert problem["status"] == 409
    assert problem["title"] == "Invalid status transition"
    assert problem["detail"] == f"Cannot transition from {current} to {target}"


def test_terminal_states_have_no_way_out():
    assert TRANSITIONS["DELIVERED"] == TRANSITIONS["CANCELLED"] == frozenset()


# -- IATA milestones --------------------------------------------------------------

MILESTONE_PHASES = {("BOOKED", "RCS"), ("BOOKED", "MAN"), ("ARRIVED", "RCF"), ("ARRIVED", "NFD")}
MILESTONE_PAIRS = list(itertools.product(TRANSITIONS, MILESTONES))


@pytest.mark.parametrize(("current", "code"), sorted(MILESTONE_PHASES))
def test_a_milestone_keeps_the_status_in_its_own_phase(current, code):
    assert next_status(current, None, code) == current


@pytest.mark.parametrize(
    ("current", "code"), [p for p in MILESTONE_PAIRS if p not in MILESTONE_PHASES]
)
def test_a_milestone_out_of_its_phase_is_a_409_of_its_own_type(current, code):
    with pytest.raises(MilestoneOutOfOrder) as caught:
        next_status(current, None, code)
    problem = caught.value.to_problem()
    assert problem["status"] == 409 and problem["type"].endswith("/milestone-out-of-order")
    assert (
        problem["detail"]
        == f"{code} is recorded while a booking is {MILESTONES[code]}; this one is {current}."
    )


def test_a_transition_moves_to_its_target_through_the_same_function():
    assert next_status("BOOKED", "DEPARTED") == "DEPARTED"
    with pytest.raises(InvalidTransition):
        next_status("BOOKED", "DELIVERED")


@pytest.mark.parametrize(
    ("event", "code"),
    [
        ({"type": "BOOKING_CREATED", "status": "BOOKED"}, "BKD"),
        ({"type": "STATUS_DEPARTED", "status": "DEPARTED"}, "DEP"),
        ({"type": "STATUS_ARRIVED", "status": "ARRIVED"}, "ARR"),
        ({"type": "STATUS_DELIVERED", "status": "DELIVERED"}, "DLV"),
        ({"type": "STATUS_CANCELLED", "status": "CANCELLED"}, None),
        ({"type": "MILESTONE_RCF", "status": "ARRIVED", "code": "RCF"}, "RCF"),
    ],
)
def test_an_events_code_is_its_own_or_for_an_older_one_its_statuss(event, code):
    assert event_code(event) == code
