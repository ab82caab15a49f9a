"""Block beam search ranked by a Lagrangian or an augmented score.

The search decodes in blocks of `w = config.block_size` tokens. From each of the
`K = config.num_beams` beams it samples `N / K` continuations, scores every candidate's text with
the cost model and the reward model, and keeps the `K` best live candidates. Finished
candidates go to a pool, and the answer is the best one in it. Unlike InferenceGuard there is
no critic, no resampling of unsafe blocks, no final check and no fallback, so an unsafe
candidate is returned when it scores best.
"""

from __future__ import annotations

from dataclasses import dataclass
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
from shared_core.baselines.sampling import require_reward_model
from shared_core.config import GuardConfig
from shared_core.result import SearchStats
from shared_core.safety_state import SafetyState

if TYPE_CHECKING:
    from shared_core.engine import InferenceGuard


@dataclass
class _Beam:
    tokens: list[int]
    text: str
    safety: SafetyState
    finish_reason: str | None = None
    score: float = 0.0


class BlockBeamSearch(DecodingMethod):
    """Block beam search with the engine's block size, candidates and beams.

    Args:
        guard: The engine; it needs a reward model.
        objective: `"lagrangian"` (`R - lambda * C` at every block) or `"augmented"` (the
            reward while no block prefix was over the budget, else a penalty).
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
        require_reward_model(guard, f"beam_{objective}")
        self.objective = objective
        self.lagrange_multiplier = float(lagrange_multiplier)
        self.name = f"beam_{objective}"

    def _decode(
        self, prompt: Prompt, generator: torch.Generator, stats: SearchStats
    ) -> MethodOutput:
        config = self.config
        repeats = config.candidates_per_beam
        processors = self.processors()
        with timed(stats, "prefill"):
            state = self.lm.prefill(prompt.ids)
        beams = [_Beam(tokens=[], text="", safety=SafetyState.initial(self.budget))]
        pool: list[_Beam] = []

        while beams:
            parents = [beam for beam in beams for _ in range(repeats)]
            with timed(stats, "sampling"):
                sample = self.lm.sample_block(
                    state.repeat(repeats) if repeats > 1 else state,
                    [parent.tokens for parent in parents],
                    num_steps=min(config.block_size, config.max_new_tokens - state.position),
                    max_new_tokens=config.max_new_tokens,
                    processors=processors,
                    generator=generator,
                    stop_strings=self.stop_strings,
                )
            stats.blocks += 1
            stats.candidates_sampled += len(parents)

            candidates = [
                _Beam(
                    tokens=[*parent.tokens, *new],
                    text=text,
                    safety=parent.safety,
                    finish_reason=reason,
                )
                for parent, new, text, reason in zip(
                    parents, sample.new_tokens, sample.texts, sample.finish_reasons, strict=True
                )
            ]
            self._score(prompt, candidates, stats)

            live = [index for index, c in enumerate(candidates) if c.finish_reason is None]
            pool.extend(c for c in candidates if c.finish_reason is not None)
            kept = sorted(live, key=lambda index: -candidates[index].score)[: config.num_beams]
            beams = [candidates[index] for index in kept]
            if kept:
                state = sample.state.select(kept)

        best = max(pool, key=lambda beam: beam.score)
        return self.output(best.text, best.finish_reason, best.tokens)

    def _score(self, prompt: Prompt, candidates: list[_Beam], stats: SearchStats) -> None:
        texts = [c.text for c in candidates]
        costs = self.costs(prompt, texts, stats)
        rewards = self.rewards(prompt, texts, stats)
        for candidate, cost in zip(candidates, costs, strict=True):
            candidate.safety = candidate.safety.advance(cost)
        if self.objective == "lagrangian":
            scores = lagrangian_scores(rewards, costs, self.lagrange_multiplier)
        else:
            scores = augmented_scores(rewards, [c.safety for c in candidates], self.config.penalty)
        for candidate, score in zip(candidates, scores, strict=True):
            candidate.score = score
