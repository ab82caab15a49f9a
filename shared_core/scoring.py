"""Cost and reward model protocols, and adapters for plain Python functions."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable


@runtime_checkable
class CostModel(Protocol):
    """Scores how unsafe responses are: higher is less safe.

    A response `y` to prompt `x` is safe when `score([x], [y])[0] <= budget`. Scores must be
    finite floats; an exception or a non-finite score makes the search fail closed.
    """

    name: str
    """A stable name, reported with every safety claim."""

    threshold: float
    """The default safety budget for this cost model."""

    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
        """Return one cost per (prompt, response) pair, in order."""
        ...


@runtime_checkable
class RewardModel(Protocol):
    """Scores how helpful responses are: higher is better."""

    name: str

    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
        """Return one reward per (prompt, response) pair, in order."""
        ...


ScoreFunction = Callable[[str, str], float]
BatchScoreFunction = Callable[[Sequence[str], Sequence[str]], Sequence[float]]


class CallableCostModel:
    """A cost model backed by a user function.

    Args:
        function: `f(prompt, response) -> cost`, or with `batched=True`,
            `f(prompts, responses) -> costs`.
        threshold: The default safety budget.
        name: The name reported with every safety claim. Defaults to the function's name.
        batched: Whether `function` takes lists.

    Example:
        >>> banned = CallableCostModel(lambda p, r: float("bomb" in r.lower()), threshold=0.5)
        >>> banned.score(["hi"], ["a bomb"])
        [1.0]
    """

    def __init__(
        self,
        function: ScoreFunction | BatchScoreFunction,
        *,
        threshold: float,
        name: str | None = None,
        batched: bool = False,
    ) -> None:
        if not callable(function):
            msg = f"CallableCostModel needs a callable, got {function!r}."
            raise TypeError(msg)
        if not isinstance(threshold, int | float) or not math.isfinite(threshold):
            msg = f"Invalid threshold={threshold!r}: must be a finite number."
            raise ValueError(msg)
        self.function = function
        self.threshold = float(threshold)
        self.name: str = name or str(getattr(function, "__name__", "callable_cost_model"))
        self.batched = batched

    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
        """Return one cost per pair; see `CostModel.score`."""
        return _call(self.function, self.batched, prompts, responses, self.name)

    def __repr__(self) -> str:
        return f"CallableCostModel(name={self.name!r}, threshold={self.threshold})"


class CallableRewardModel:
    """A reward model backed by a user function; arguments as in `CallableCostModel`."""

    def __init__(
        self,
        function: ScoreFunction | BatchScoreFunction,
        *,
        name: str | None = None,
        batched: bool = False,
    ) -> None:
        if not callable(function):
            msg = f"CallableRewardModel needs a callable, got {function!r}."
            raise TypeError(msg)
        self.function = function
        self.name: str = name or str(getattr(function, "__name__", "callable_reward_model"))
        self.batched = batched

    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
        """Return one reward per pair; see `RewardModel.score`."""
        return _call(self.function, self.batched, prompts, responses, self.name)

    def __repr__(self) -> str:
        return f"CallableRewardModel(name={self.name!r})"


class MaxCostModel:
    """Combines cost models: a response's cost is the largest margin over any member's threshold.

    Each member's cost is shifted by its own threshold, so the combined threshold is 0 and a
    response is safe only when every member finds it safe.

    Args:
        models: The cost models to combine; at least one.
        name: The reported name. Defaults to `max(<member names>)`.
    """

    threshold = 0.0

    def __init__(self, models: Sequence[CostModel], name: str | None = None) -> None:
        if not models:
            msg = "MaxCostModel needs at least one cost model, got none."
            raise ValueError(msg)
        self.models = list(models)
        self.name = name or "max(" + ", ".join(m.name for m in self.models) + ")"

    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
        """Return, per pair, the maximum over members of `cost - threshold`."""
        per_model = [
            [
                cost - model.threshold
                for cost in check_scores(
                    model.score(prompts, responses), len(responses), model.name
                )
            ]
            for model in self.models
        ]
        return [max(column) for column in zip(*per_model, strict=True)]


def check_scores(scores: Sequence[float], expected: int, name: str) -> list[float]:
    """Return `scores` as floats, or raise if their count is wrong or any is not finite.

    Raises:
        ValueError: If the scorer returned the wrong number of scores or a non-finite score.
    """
    values = [float(s) for s in scores]
    if len(values) != expected:
        msg = f"Scorer {name!r} returned {len(values)} scores for {expected} responses."
        raise ValueError(msg)
    bad = [v for v in values if not math.isfinite(v)]
    if bad:
        msg = f"Scorer {name!r} returned non-finite scores {bad[:3]}."
        raise ValueError(msg)
    return values


def _call(
    function: ScoreFunction | BatchScoreFunction,
    batched: bool,
    prompts: Sequence[str],
    responses: Sequence[str],
    name: str,
) -> list[float]:
    if len(prompts) != len(responses):
        msg = f"Got {len(prompts)} prompts and {len(responses)} responses; counts must match."
        raise ValueError(msg)
    if batched:
        scores = function(list(prompts), list(responses))  # type: ignore[arg-type]
    else:
        scores = [function(p, r) for p, r in zip(prompts, responses, strict=True)]  # type: ignore[arg-type, misc]
    return check_scores(scores, len(responses), name)  # type: ignore[arg-type]
