"""ARGS: reward-guided decoding at the token level (Khanov et al., "ARGS: Alignment as
Reward-Guided Search", ICLR 2024).

At every step the `k` most likely next tokens are scored: each candidate token `v` gets
`logit(v) + w * score(x, y + v)`, and the next token is sampled from the softmax of these
values divided by the temperature (the stochastic variant of ARGS). The guidance score is the
reward model's `R`, the Lagrangian `R - lambda * C`, or the negated cost `-C`. Every step costs
one scorer call on `k` texts, so ARGS is much slower than block-wise methods.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import torch
from transformers import SuppressTokensLogitsProcessor

from shared_core.baselines.base import DecodingMethod, MethodOutput, Prompt, timed
from shared_core.baselines.objectives import check_multiplier
from shared_core.baselines.sampling import require_reward_model
from shared_core.config import GuardConfig
from shared_core.result import SearchStats

if TYPE_CHECKING:
    from shared_core.engine import InferenceGuard

Guidance = Literal["reward", "lagrangian", "cost"]
GUIDANCES: tuple[str, ...] = ("reward", "lagrangian", "cost")


class ARGS(DecodingMethod):
    """Token-level decoding that adds a weighted guidance score to the top-`k` logits.

    Args:
        guard: The engine. `"reward"` and `"lagrangian"` guidance need its reward model.
        guidance: `"reward"` (`R`), `"lagrangian"` (`R - lambda * C`) or `"cost"` (`-C`).
        weight: `w`, the weight of the guidance score against the logits.
        top_k: `k`, the number of candidate tokens scored per step.
        lagrange_multiplier: `lambda` of the Lagrangian guidance.
        config: Settings (temperature, maximum new tokens, stop strings); defaults to the
            engine's. `top_p` is not used: the top-`k` candidates take its place.

    Raises:
        ValueError: On an unknown guidance, a negative weight or multiplier, `top_k < 1`, or a
            reward-guided variant without a reward model.
    """

    def __init__(
        self,
        guard: InferenceGuard,
        *,
        guidance: Guidance,
        weight: float = 1.0,
        top_k: int = 10,
        lagrange_multiplier: float = 1.0,
        config: GuardConfig | None = None,
    ) -> None:
        super().__init__(guard, config)
        if guidance not in GUIDANCES:
            msg = f"Invalid guidance {guidance!r}: use one of {GUIDANCES}."
            raise ValueError(msg)
        if not (isinstance(weight, int | float) and math.isfinite(weight) and weight >= 0):
            msg = f"Invalid weight={weight!r}: must be a finite number >= 0."
            raise ValueError(msg)
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            msg = f"Invalid top_k={top_k!r}: must be an integer >= 1."
            raise ValueError(msg)
        check_multiplier(lagrange_multiplier)
        if guidance != "cost":
            require_reward_model(guard, f"args_{guidance}")
        self.guidance = guidance
        self.weight = float(weight)
        self.top_k = top_k
        self.lagrange_multiplier = float(lagrange_multiplier)
        self.name = f"args_{guidance}"

    def _decode(
        self, prompt: Prompt, generator: torch.Generator, stats: SearchStats
    ) -> MethodOutput:
        lm = self.lm
        config = self.config
        stop_strings = self.stop_strings
        suppress = (
            SuppressTokensLogitsProcessor(sorted(lm.suppressed_token_ids))
            if (lm.suppressed_token_ids)
            else None
        )

        with timed(stats, "prefill"):
            state = lm.prefill(prompt.ids)
        cache, logits = state.cache, state.next_logits
        tokens: list[int] = []
        text = ""

        for _ in range(config.max_new_tokens):
            with torch.no_grad():
                scores = logits if suppress is None else suppress(None, logits)  # type: ignore[arg-type]
                top_logits, top_ids = torch.topk(scores[0], min(self.top_k, scores.shape[-1]))
            candidates = [int(token) for token in top_ids]
            texts = [
                text if token in lm.eos_token_ids else lm.decode([*tokens, token])
                for token in candidates
            ]
            guidance = self._guidance(prompt, texts, stats)
            combined = top_logits + self.weight * torch.tensor(guidance, dtype=top_logits.dtype)
            with torch.no_grad():
                probs = torch.softmax(combined / config.temperature, dim=-1)
                choice = int(torch.multinomial(probs, 1, generator=generator))
            token = candidates[choice]
            stats.blocks += 1
            stats.candidates_sampled += len(candidates)

            if token in lm.eos_token_ids:
                return self.output(text, "stop", tokens)
            tokens.append(token)
            text = texts[choice]
            if stop_strings:
                cut, stopped = stop_strings.truncate(text)
                if stopped:
                    return self.output(cut, "stop", tokens)
            if len(tokens) >= config.max_new_tokens:
                break
            with timed(stats, "sampling"):
                logits, _ = lm.forward_step(cache, torch.tensor([token]))
        return self.output(text, "length", tokens)

    def _guidance(self, prompt: Prompt, texts: Sequence[str], stats: SearchStats) -> list[float]:
        """Return the guidance score of each candidate text; one scorer call per model."""
        unique = list(dict.fromkeys(texts))
        if self.guidance == "cost":
            values = [-c for c in self.costs(prompt, unique, stats)]
        elif self.guidance == "reward":
            values = self.rewards(prompt, unique, stats)
        else:
            rewards = self.rewards(prompt, unique, stats)
            costs = self.costs(prompt, unique, stats)
            values = [r - self.lagrange_multiplier * c for r, c in zip(rewards, costs, strict=True)]
        by_text = dict(zip(unique, values, strict=True))
        return [by_text[text] for text in texts]
