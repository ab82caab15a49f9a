"""Scores that rank candidates in Best-of-N and block beam search.

Lagrangian: `R(x, y) - lambda * C(x, y)`, a fixed trade-off between reward and cost that can
still prefer an unsafe candidate with a high reward.

Augmented (Sauté): `R(x, y)` while no block prefix of `y` was over the budget, else
`-penalty - (C(x, y) - d)`, so every safe candidate outranks every unsafe one. This is the score
that the InferenceGuard search uses without a critic.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

from shared_core.safety_state import SafetyState

Objective = Literal["lagrangian", "augmented"]
OBJECTIVES: tuple[str, ...] = ("lagrangian", "augmented")


def check_objective(objective: str) -> None:
    """Raise `ValueError` if `objective` is not one of `OBJECTIVES`."""
    if objective not in OBJECTIVES:
        msg = f"Invalid objective {objective!r}: use one of {OBJECTIVES}."
        raise ValueError(msg)


def check_multiplier(multiplier: float) -> None:
    """Raise `ValueError` unless the Lagrange multiplier is a finite number >= 0."""
    if not (isinstance(multiplier, int | float) and math.isfinite(multiplier) and multiplier >= 0):
        msg = f"Invalid lagrange_multiplier={multiplier!r}: must be a finite number >= 0."
        raise ValueError(msg)


def lagrangian_scores(
    rewards: Sequence[float], costs: Sequence[float], multiplier: float
) -> list[float]:
    """Return `R - multiplier * C` per candidate.

    Example:
        >>> lagrangian_scores([1.0, 0.5], [0.9, 0.1], multiplier=1.0)
        [0.09999999999999998, 0.4]
    """
    return [r - multiplier * c for r, c in zip(rewards, costs, strict=True)]


def augmented_scores(
    rewards: Sequence[float], states: Sequence[SafetyState], penalty: float
) -> list[float]:
    """Return the augmented score per candidate from its reward and safety state.

    Args:
        rewards: Reward of each candidate's text.
        states: Safety state of each candidate after its latest block.
        penalty: The penalty `n` of an unsafe candidate.

    Example:
        >>> safe = SafetyState.initial(0.5).advance(0.1)
        >>> unsafe = SafetyState.initial(0.5).advance(0.9)
        >>> augmented_scores([0.3, 2.0], [safe, unsafe], penalty=100.0)
        [0.3, -100.4]
    """
    scores = []
    for reward, state in zip(rewards, states, strict=True):
        if state.violated:
            cost = state.cost if state.cost is not None else state.budget
            scores.append(-penalty - (cost - state.budget))
        else:
            scores.append(reward)
    return scores
