"""InferenceGuard itself as a benchmarked method: without the critic, with it, and the fast path."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from shared_core.baselines.base import DecodingMethod, MethodOutput, Prompt

if TYPE_CHECKING:
    from shared_core.config import GuardConfig
    from shared_core.engine import InferenceGuard
    from shared_core.result import SearchStats


class GuardSearch(DecodingMethod):
    """The InferenceGuard engine with one choice of critic and fast path.

    The method runs `InferenceGuard.generate` on an engine that shares the given engine's
    model, tokenizer, cost model and reward model, so the guarantee report and its timings are
    the engine's own.

    Args:
        guard: The engine to share the model and scorers with.
        use_critic: Whether the search uses the engine's critic.
        fast_path: Whether the search starts on the single-beam fast path.
        name: The method's name in results.
        config: Settings; defaults to the engine's.

    Raises:
        ValueError: If `use_critic` is set and the engine has no critic.
    """

    def __init__(
        self,
        guard: InferenceGuard,
        *,
        use_critic: bool,
        fast_path: bool,
        name: str,
        config: GuardConfig | None = None,
    ) -> None:
        super().__init__(guard, config)
        if use_critic and guard.critic is None:
            msg = (
                f"Method {name!r} needs a critic, but the engine has none. Pass "
                "critic=load_critic(...) to InferenceGuard."
            )
            raise ValueError(msg)
        from shared_core.engine import InferenceGuard

        self.name = name
        self.config = self.config.replace(fast_path=fast_path, fallback="refuse")
        self.engine = InferenceGuard(
            guard.model,
            guard.tokenizer,
            guard.cost_model,
            guard.reward_model,
            critic=guard.critic if use_critic else None,
            config=self.config,
            model_name=guard.model_name,
        )

    def _decode(
        self, prompt: Prompt, generator: torch.Generator, stats: SearchStats
    ) -> MethodOutput:
        raise NotImplementedError  # `generate` is overridden: the engine encodes and seeds.

    def generate(self, messages, *, seed: int) -> MethodOutput:  # type: ignore[no-untyped-def]
        """Answer `messages` with the engine and the request seed `seed`."""
        result = self.engine.generate(messages, seed=seed)
        report = result.report
        return MethodOutput(
            text=result.text,
            finish_reason=result.finish_reason,
            completion_tokens=result.usage.completion_tokens,
            fallback=report.fallback is not None,
            certified=report.certified,
            stats=report.stats,
        )
