"""The Sauté safety state: z = d - C, minimum z and the absorbing violation."""

from __future__ import annotations

import math

import pytest

from shared_core.safety_state import SafetyState


def test_safety_state_initial_has_full_budget():
    state = SafetyState.initial(0.5)
    assert state.z == 0.5
    assert state.min_z == 0.5
    assert state.cost is None
    assert not state.violated


def test_safety_state_advance_sets_z_and_cost():
    state = SafetyState.initial(0.5).advance(0.2)
    assert state.z == pytest.approx(0.3)
    assert state.cost == 0.2
    assert state.overshoot == pytest.approx(-0.3)


def test_safety_state_violation_is_absorbing():
    state = SafetyState.initial(0.5).advance(0.9)
    assert state.violated
    recovered = state.advance(0.0)
    assert recovered.z == 0.5
    assert recovered.violated


def test_safety_state_budget_boundary_is_safe():
    assert not SafetyState.initial(0.5).advance(0.5).violated


def test_safety_state_tracks_minimum_z():
    state = SafetyState.initial(1.0).advance(0.2).advance(0.7).advance(0.1)
    assert state.min_z == pytest.approx(0.3)
    assert state.z == pytest.approx(0.9)


def test_safety_state_is_immutable():
    state = SafetyState.initial(1.0)
    state.advance(2.0)
    assert not state.violated


@pytest.mark.parametrize("cost", [math.nan, math.inf])
def test_safety_state_rejects_non_finite_cost(cost):
    with pytest.raises(ValueError, match="finite"):
        SafetyState.initial(1.0).advance(cost)
