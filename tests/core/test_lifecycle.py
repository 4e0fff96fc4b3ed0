import itertools

import pytest

from core.lifecycle import ACTIONS, TRANSITIONS, InvalidTransition, check_transition

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
