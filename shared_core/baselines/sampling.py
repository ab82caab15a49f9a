"""Methods that sample whole responses: plain sampling, filter-after and Best-of-N."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import torch

from shared_core.baselines.base import DecodingMethod, MethodOutput, Prompt, timed
from shared_core.baselines.objectives import (
    Objective,
    augmented_scores,
    check_multiplier,
    check_objective,
    lagrangian_scores,
)
from shared_core.config import GuardConfig
from shared_core.lm import BlockSample
from shared_core.result import SearchStats
from shared_core.safety_state import SafetyState

if TYPE_CHECKING:
    from shared_core.engine import InferenceGuard

logger = logging.getLogger(__name__)


class PlainSampling(DecodingMethod):
    """Sample one response from the base model with the engine's temperature and top-p.

    No cost model or reward model is called.
    """

    name = "plain"

    def _decode(
        self, prompt: Prompt, generator: torch.Generator, stats: SearchStats
    ) -> MethodOutput:
        sample = sample_responses(self, prompt, generator, stats, count=1)
        return self.output(sample.texts[0], sample.finish_reasons[0], sample.new_tokens[0])


class FilterAfter(DecodingMethod):
    """Sample one response as `PlainSampling` does, then return it only if its cost is in budget.

    A response over the budget, or a failing cost model, gives the refusal fallback. Only the
    final text is checked, so a stream of this method would show unchecked prefixes.
    """

    name = "filter_after"

    def _decode(
        self, prompt: Prompt, generator: torch.Generator, stats: SearchStats
    ) -> MethodOutput:
        sample = sample_responses(self, prompt, generator, stats, count=1)
        text = sample.texts[0]
        try:
            (cost,) = self.costs(prompt, [text], stats)
        except Exception as error:  # any scorer failure must fail closed
            logger.warning("Filter-after falls back because the cost model failed: %r", error)
            return self.refusal()
        if cost > self.budget:
            return self.refusal()
        return self.output(text, sample.finish_reasons[0], sample.new_tokens[0], certified=True)


class BestOfN(DecodingMethod):
    """Sample `N = config.num_samples` responses and return the one with the highest score.

    The score is Lagrangian (`R - lambda * C`) or augmented (the reward of a response within
    the budget, else a penalty below every safe response); see `baselines.objectives`. Only
    final texts are scored, and the best response is returned even when it is over the budget,
    as in the Best-of-N baselines of the InferenceGuard paper.

    Args:
        guard: The engine; it needs a reward model.
        objective: `"lagrangian"` or `"augmented"`.
        lagrange_multiplier: `lambda` of the Lagrangian score.
        config: Settings; defaults to the engine's.

    Raises:
        ValueError: On an unknown objective, a negative multiplier or an engine without a
            reward model.
    """

    def __init__(
        self,
        guard: InferenceGuard,
        *,
        objective: Objective,
        lagrange_multiplier: float = 1.0,
        config: GuardConfig | None = None,
    ) -> None:
        super().__init__(guard, config)
        check_objective(objective)
        check_multiplier(lagrange_multiplier)
        require_reward_model(guard, f"best_of_n_{objective}")
        self.objective = objective
        self.lagrange_multiplier = float(lagrange_multiplier)
        self.name = f"best_of_n_{objective}"

    def _decode(
        self, prompt: Prompt, generator: torch.Generator, stats: SearchStats
    ) -> MethodOutput:
        count = self.config.num_samples
        sample = sample_responses(self, prompt, generator, stats, count=count)
        costs = self.costs(prompt, sample.texts, stats)
        rewards = self.rewards(prompt, sample.texts, stats)
        if self.objective == "lagrangian":
            scores = lagrangian_scores(rewards, costs, self.lagrange_multiplier)
        else:
            states = [SafetyState.initial(self.budget).advance(cost) for cost in costs]
            scores = augmented_scores(rewards, states, self.config.penalty)
        best = max(range(count), key=lambda index: scores[index])
        return self.output(sample.texts[best], sample.finish_reasons[best], sample.new_tokens[best])


def sample_responses(
    method: DecodingMethod,
    prompt: Prompt,
    generator: torch.Generator,
    stats: SearchStats,
    *,
    count: int,
) -> BlockSample:
    """Sample `count` whole responses in one batch, as one block of `max_new_tokens` steps.

    The prompt is run through the model once and its KV cache shared by every row.
    """
    lm = method.lm
    config = method.config
    with timed(stats, "prefill"):
        state = lm.prefill(prompt.ids)
    with timed(stats, "sampling"):
        sample = lm.sample_block(
            state.repeat(count) if count > 1 else state,
            [[] for _ in range(count)],
            num_steps=config.max_new_tokens,
            max_new_tokens=config.max_new_tokens,
            processors=method.processors(),
            generator=generator,
            stop_strings=method.stop_strings,
        )
    stats.blocks += 1
    stats.candidates_sampled += count
    return sample


def require_reward_model(guard: InferenceGuard, method_name: str) -> None:
    """Raise `ValueError` if `guard` has no reward model, naming the method that needs one."""
    if guard.reward_model is None:
        msg = (
            f"Method {method_name!r} needs a reward model, but the engine has none. Pass "
            "reward_model= to InferenceGuard."
        )
        raise ValueError(msg)
